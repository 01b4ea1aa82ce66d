import { fstatSync } from 'node:fs';
import { bpfdCommand, outputOption, type Parsed } from './command.js';
import { printJson, table, writeErr, writeOut } from './output.js';
import { invalidInput } from '../base/errors.js';
import type { ImageView } from '../core/images.js';
import { ctxFor, startPolicyCompile } from './programs.js';

const authOption = {
  'registry-auth': { type: 'string' as const, description: 'base64 of user:password (default: BPFD_REGISTRY_AUTH, then the containers/docker auth files)', valueHint: 'B64' },
};

const createContext = async (what: string) => (await import('../core/context.js')).createContext({ what });
const isJson = (p: Parsed) => p.values.output === 'json';

const human = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

function signatureText(s: ImageView['signature']): string {
  return s.verified ? `signed (${s.key})` : 'unverified';
}

function imagesTable(images: ImageView[]): string {
  if (!images.length) return 'No images cached (bpfd pull REF)\n';
  return table(
    ['REFERENCE', 'DIGEST', 'SIZE', 'PROGRAMS', 'MAPS', 'SIGNATURE', 'PULLED'],
    images.map((i) => [
      i.references.join(', ') || '-',
      i.digest.slice(0, 19),
      human(i.size),
      Object.entries(i.programs).map(([k, v]) => `${k} (${v})`).join(', ') || '-',
      Object.keys(i.maps).join(', ') || '-',
      signatureText(i.signature),
      i.pulled_at,
    ]),
  );
}

function imageDetail(i: ImageView): string {
  return [
    `Reference: ${i.references.join(', ') || '-'}`,
    `Digest:    ${i.digest}${i.index_digest ? ` (from index ${i.index_digest})` : ''}`,
    `Size:      ${human(i.size)}`,
    `Programs:  ${Object.entries(i.programs).map(([k, v]) => `${k} (${v})`).join(', ') || '-'}`,
    `Maps:      ${Object.entries(i.maps).map(([k, v]) => `${k} (${v})`).join(', ') || '-'}`,
    `Signature: ${i.signature.verified ? `verified by ${i.signature.key} (sha256 ${i.signature.fingerprint})` : `not verified: ${i.signature.reason}`}`,
    '',
  ].join('\n');
}

/**
 * Whether stderr is a terminal. A terminal is a character device: anything else (a pipe, a file)
 * is told without touching process.stderr, whose stream costs ~2 ms to build (node:stream).
 */
function stderrIsTerminal(): boolean {
  try {
    if (!fstatSync(2).isCharacterDevice()) return false;
  } catch {
    return false;
  }
  return process.stderr.isTTY === true;
}

/** A progress line on a terminal for blobs over 1 MiB; nothing otherwise. */
function progressReporter(): ((what: string, got: number, total: number) => void) | undefined {
  if (!stderrIsTerminal()) return undefined;
  let last = 0;
  return (what, got, total) => {
    if (total < 1 << 20) return;
    const now = Date.now();
    if (got < total && now - last < 100) return;
    last = now;
    const width = 30;
    const done = Math.round((got / total) * width);
    writeErr(`\r${what} [${'#'.repeat(done)}${' '.repeat(width - done)}] ${human(got)}/${human(total)}${got >= total ? '\n' : ''}`);
  };
}

export const pullCommand = bpfdCommand({
  name: 'pull',
  description: [
    'Fetch a bytecode image into the cache: the tag is resolved to a digest, an index is followed to the',
    'linux/amd64 manifest, and config, layer and cosign signatures are checked against their sha256 and size',
    'while they stream, before anything is stored. A layer over 16 MiB (packed or unpacked) is refused;',
    'root may raise the cap with BPFD_MAX_LAYER_BYTES (refused under sudo, not settable by service clients).',
    'On a terminal a progress bar shows a layer over 1 MiB being fetched. The policy decides it (action pull). Example:',
    'bpfd pull quay.io/org/prog:v1',
  ].join(' '),
  positionals: [{ name: 'ref', description: 'image reference: REGISTRY/REPOSITORY:TAG or @sha256:DIGEST' }],
  options: {
    ...authOption,
    ...outputOption,
    remote: { type: 'boolean', description: 'pull through the bpfd service (BPFD_SOCKET, default unix:///var/run/bpfd.sock), into its cache, instead of in-process' },
  },
  async run(p) {
    const ref = p.positionals[0];
    if (p.values.remote === true) {
      const view = await (await import('./remote.js')).remotePull(p, ref, p.values['registry-auth'] as string | undefined);
      return isJson(p) ? printJson(view) : void writeOut(imageDetail(view));
    }
    const o = { auth: p.values['registry-auth'] as string | undefined, progress: progressReporter() };
    // the registry's round trips start now, overlapping the start-up of store and policy (not under
    // sudo); the pull uses nothing of them before the policy allows it
    const early = (await import('../core/image-fetch.js')).prefetchImage(ref, o);
    try {
      // without sudo the context will have the paths of the environment: the compile starts now too
      if (early) await startPolicyCompile((await import('../base/paths.js')).resolvePaths());
      const { pull, imageView } = await import('../core/images.js');
      // as every command that acts: under sudo, judged as the user who ran it, with their credentials
      const ctx = await ctxFor(p, `bpfd pull ${ref}`);
      if (!early) await startPolicyCompile(ctx.paths);
      const rec = await pull(ctx, ref, o, early);
      if (isJson(p)) printJson(imageView(rec));
      else writeOut(imageDetail(imageView(rec)));
    } catch (e) {
      await early?.stop();
      throw e;
    }
  },
});

export const imagesCommand = bpfdCommand({
  name: 'images',
  description: [
    'List the cached images: reference, digest, size, the programs and maps its labels name, signature status',
    'and when it was pulled. `bpfd images rm REF|DIGEST` removes one, refused while a loaded (or persisted)',
    'program uses it.',
  ].join(' '),
  positionals: [
    { name: 'rm', description: 'rm, to remove an image', required: false },
    { name: 'image', description: 'REF or DIGEST of the image to remove', required: false },
  ],
  options: { ...outputOption },
  async run(p) {
    const [verb, target] = p.positionals;
    const images = await import('../core/images.js');
    if (verb === undefined) {
      const all = images.listImages(await createContext('bpfd images'));
      return isJson(p) ? printJson(all) : void writeOut(imagesTable(all));
    }
    if (verb !== 'rm') throw invalidInput(`unknown images command '${verb}': use bpfd images, or bpfd images rm REF|DIGEST`);
    if (!target) throw invalidInput('bpfd images rm needs the REF or DIGEST of the image to remove (see: bpfd images)');
    const removed = await images.removeCachedImage(await ctxFor(p, `bpfd images rm ${target}`), target);
    if (isJson(p)) printJson(removed);
    else writeOut(`removed ${removed.digest}\n`);
  },
});

const buildCommand = bpfdCommand({
  name: 'image build',
  description: [
    "Make a bytecode image in bpfman's format from a BPF object, without a container engine: one gzip tar",
    'layer holding the object, and config labels io.ebpf.programs and io.ebpf.maps read from the object.',
    'It goes into the cache under --tag; with --push it is sent to the registry too. Example:',
    'bpfd image build --tag 127.0.0.1:5000/net/xdp_pass:v1 xdp_pass.o --push',
  ].join(' '),
  positionals: [{ name: 'obj', description: 'the compiled BPF object (.o)' }],
  options: {
    tag: { type: 'string', description: 'the reference to give the image, REGISTRY/REPOSITORY:TAG (required)', valueHint: 'REF' },
    push: { type: 'boolean', description: 'push it to the registry of --tag' },
    ...authOption,
    ...outputOption,
  },
  async run(p) {
    if (!p.values.tag) throw invalidInput('--tag is required: the reference to give the image, e.g. 127.0.0.1:5000/net/prog:v1');
    const { buildImageOf } = await import('../core/images.js');
    const tag = p.values.tag as string;
    const view = await buildImageOf(await ctxFor(p, `bpfd image build --tag ${tag}`), p.positionals[0], tag, {
      push: p.values.push === true,
      auth: p.values['registry-auth'] as string | undefined,
    });
    if (isJson(p)) printJson(view);
    else writeOut(`${p.values.push ? 'pushed' : 'built'} ${tag}\n${imageDetail(view)}`);
  },
});

export const imageCommand = { meta: { name: 'image', description: "Bytecode images in bpfman's format (build)" }, subCommands: { build: buildCommand } };
