import path from 'node:path';
import { bpfdCommand, defineCommand, outputOption, parseId, parsePairs, type OptionSpec, type Parsed } from './command.js';
import { dryRunText, pendingTable, printJson, programDetail, programsTable, table, writeOut } from './output.js';
import { parseXdpAttach } from '../core/attach-options.js';
import { failed, invalidInput } from '../base/errors.js';
import type { Paths } from '../base/paths.js';
import type { Context } from '../core/context.js';
import type { ProgramType } from '../state/records.js';
import type { KernelOnlyProgram } from '../core/kernel-programs.js';
import type { PendingView, ProgramView } from '../core/view.js';
import { goesRemote, remoteOption } from './remote-option.js';
import { PULL_POLICIES, type PullPolicy } from '../base/bpfman-proto.js';

/** The client side loads only when a command goes to the service. */
const remote = () => import('./remote.js');

const attachOptions: Record<string, OptionSpec> = {
  iface: { type: 'string', description: 'interface to attach the XDP program to', valueHint: 'IF' },
  priority: { type: 'string', description: 'order on the interface, 0..1000, lower runs first (default 50)', valueHint: 'N' },
  'proceed-on': {
    type: 'string',
    multiple: true,
    description: 'XDP results after which the next program runs: aborted, drop, pass, tx, redirect, dispatcher_return (default pass,dispatcher_return)',
    valueHint: 'ACTION,…',
  },
  mode: { type: 'string', description: 'skb (generic) or drv (native); default drv, falling back to skb', valueHint: 'skb|drv' },
  netns: { type: 'string', description: 'network namespace file (e.g. /var/run/netns/NAME) in which to find --iface', valueHint: 'PATH' },
};

export const lockOption: Record<string, OptionSpec> = {
  'lock-timeout': { type: 'string', description: 'seconds to wait for another bpfd command to finish (default 30)', valueHint: 'SECONDS' },
};

const loadOptions: Record<string, OptionSpec> = {
  name: { type: 'string', description: 'function name of the program in the object (required)', valueHint: 'FUNC' },
  type: { type: 'string', description: 'program type when the section does not say (xdp, tc, tracepoint, uprobe)', valueHint: 'TYPE' },
  metadata: { type: 'string', multiple: true, description: 'a KEY=VALUE label kept with the program', valueHint: 'K=V' },
  global: { type: 'string', multiple: true, description: 'set a .data/.rodata/.bss variable before load, value in hex bytes', valueHint: 'NAME=HEX' },
  'map-owner-id': { type: 'string', description: 'share the maps of this earlier program instead of creating new ones', valueHint: 'ID' },
  application: { type: 'string', description: 'application the program belongs to (used by policy ordering rules)', valueHint: 'NAME' },
  persist: { type: 'boolean', description: 'load and attach it again at boot (bpfd system restore)' },
  'dry-run': { type: 'boolean', description: 'print the policy decision and the resulting order; change nothing' },
};

/** The core (koffi, lmdb) loads only when a command needs it: `version` and `--help` stay light. */
const createContext = async (opts: Parameters<typeof import('../core/context.js').createContext>[0]) =>
  (await import('../core/context.js')).createContext(opts);

/** Under sudo, the user who ran it (env overrides refused); otherwise the process itself. */
async function delegatedSubject() {
  const { refuseDelegatedEnv, sudoCaller, sudoSubject } = await import('../core/caller.js');
  const sudo = sudoCaller();
  if (!sudo) return undefined;
  refuseDelegatedEnv(process.env, 'sudo');
  return sudoSubject(sudo);
}

export async function ctxFor(p: Parsed, what: string) {
  const lt = p.values['lock-timeout'];
  let lockTimeoutMs: number | undefined;
  if (typeof lt === 'string') {
    const s = Number(lt);
    if (!Number.isFinite(s) || s < 0) throw invalidInput(`--lock-timeout ${lt}: give a number of seconds`);
    lockTimeoutMs = s * 1000;
  }
  return createContext({ lockTimeoutMs, what, subject: await delegatedSubject() });
}

/**
 * A load, attach, detach or unload consults the policy after reading the object, pulling the
 * image, taking the lock, checking the store against the kernel: its module compiles on background threads meanwhile (policy/engine.ts prepareEngine). Once the
 * context exists, so that the paths are the ones the gate will use (under sudo, BPFD_* overrides
 * have been refused by then).
 */
export async function startPolicyCompile(paths: Pick<Paths, 'policy' | 'policyData'>): Promise<void> {
  (await import('../policy/engine.js')).prepareEngine(paths);
}

/** The context of a change the policy decides, its module already compiling. */
async function changeContext(p: Parsed, what: string): Promise<Context> {
  const ctx = await ctxFor(p, what);
  await startPolicyCompile(ctx.paths);
  return ctx;
}

const isJson = (p: Parsed) => p.values.output === 'json';

function attachFrom(p: Parsed, required: boolean) {
  const v = p.values;
  const given = ['iface', 'priority', 'proceed-on', 'mode', 'netns'].some((k) => v[k] !== undefined);
  if (!given && !required) return undefined;
  if (!v.iface) throw invalidInput(`--iface is required${given ? ' with --priority, --proceed-on, --mode or --netns' : ''}`);
  return parseXdpAttach({
    iface: v.iface as string,
    priority: v.priority as string | undefined,
    proceedOn: v['proceed-on'] as string[] | undefined,
    mode: v.mode as string | undefined,
    netns: v.netns as string | undefined,
  });
}

function parseGlobals(list: string[] | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(parsePairs(list, '--global'))) {
    const hex = v.replace(/^0x/i, '');
    if (!/^([0-9a-f]{2})+$/i.test(hex)) throw invalidInput(`--global ${k}=${v}: the value must be hex bytes, e.g. ${k}=01000000`);
    out[k] = Buffer.from(hex, 'hex');
  }
  return out;
}

/** The load and attach options `load file` and `load image` share, as a request. */
function loadRequestOf(p: Parsed) {
  const v = p.values;
  return {
    name: v.name as string,
    type: v.type as ProgramType | undefined,
    metadata: parsePairs(v.metadata as string[] | undefined, '--metadata'),
    globals: parseGlobals(v.global as string[] | undefined),
    mapOwnerId: v['map-owner-id'] !== undefined ? parseId(v['map-owner-id'] as string, '--map-owner-id') : undefined,
    application: (v.application as string | undefined) ?? null,
    persist: v.persist === true,
    attach: attachFrom(p, false),
    dryRun: v['dry-run'] === true,
  };
}

function printLoaded(p: Parsed, view: Awaited<ReturnType<typeof import('../core/programs.js').loadFile>>): void {
  if (isJson(p)) printJson(view);
  else if ('dry_run' in view) writeOut(dryRunText(view));
  else writeOut(programDetail(view));
}

const loadFile = bpfdCommand({
  name: 'load file',
  description: 'Load a program from a BPF object file; with --iface, attach it too',
  options: { path: { type: 'string', description: 'the compiled BPF object (.o) (required)', valueHint: 'OBJ' }, ...loadOptions, ...attachOptions, ...lockOption, ...outputOption, ...remoteOption },
  async run(p) {
    const v = p.values;
    if (!v.path) throw invalidInput('--path is required: the BPF object file to load');
    if (!v.name) throw invalidInput('--name is required: the function name of the program in the object');
    if (goesRemote(p, true)) {
      const view = await (await remote()).remoteLoad(p, {
        path: v.path as string,
        name: v.name as string,
        type: (v.type as string | undefined) ?? (await sectionType(v.path as string, v.name as string)),
        ...remoteLoadOptions(p),
      });
      return printLoaded(p, view);
    }
    const { loadFile: load } = await import('../core/programs.js');
    const ctx = await changeContext(p, `bpfd load file --path ${v.path as string} --name ${v.name as string}`);
    const view = await load(ctx, {
      path: v.path as string,
      ...loadRequestOf(p),
    });
    printLoaded(p, view);
  },
});

/** What a Load through the service carries besides its bytecode, name and type: as loadRequestOf in-process. */
function remoteLoadOptions(p: Parsed) {
  const v = p.values;
  return {
    metadata: parsePairs(v.metadata as string[] | undefined, '--metadata'),
    globals: parseGlobals(v.global as string[] | undefined),
    mapOwnerId: v['map-owner-id'] !== undefined ? parseId(v['map-owner-id'] as string, '--map-owner-id') : undefined,
    attach: attachFrom(p, false),
    application: (v.application as string | undefined) ?? null,
    persist: v.persist === true,
    dryRun: v['dry-run'] === true,
  };
}

/** The type the section gives the program, as the in-process load derives it; the service checks the rest. */
async function sectionType(file: string, name: string): Promise<string> {
  try {
    const { readBpfElf, programTypeOfSection } = await import('../loader/elf.js');
    const fn = readBpfElf(path.resolve(file)).programs.find((x) => x.name === name);
    return fn ? programTypeOfSection(fn.section) : 'xdp';
  } catch {
    return 'xdp'; // unreadable here: the service says what is wrong with it
  }
}

const loadImage = bpfdCommand({
  name: 'load image',
  description: [
    "Load a program from an OCI image in bpfman's bytecode image format; with --iface, attach it too.",
    'The image is pulled (or taken from the cache, per --pull-policy) and its blobs checked against their',
    'digests; the object in its first layer goes through the same checks and policy as load file, with the',
    "image's reference, digest, labels and cosign signature (against the keys in /etc/bpfd/keys, BPFD_KEYS_DIR)",
    'as facts for the policy. As with pull, a layer over 16 MiB is refused unless root raises BPFD_MAX_LAYER_BYTES.',
    'Example: bpfd load image --image-url quay.io/org/prog:v1 --name xdp_pass --iface eth0',
  ].join(' '),
  options: {
    'image-url': { type: 'string', description: 'image reference, e.g. quay.io/org/prog:v1 or REGISTRY/REPO@sha256:DIGEST (required)', valueHint: 'REF' },
    'pull-policy': {
      type: 'string',
      description: 'Always (pull every time), IfNotPresent (default: the cache, unless the tag now names another digest; one HEAD request) or Never (the cache only)',
      valueHint: 'POLICY',
    },
    'registry-auth': { type: 'string', description: 'base64 of user:password (default: BPFD_REGISTRY_AUTH, then containers/docker auth files)', valueHint: 'B64' },
    ...loadOptions,
    ...attachOptions,
    ...lockOption,
    ...outputOption,
    ...remoteOption,
  },
  async run(p) {
    const v = p.values;
    if (!v['image-url']) throw invalidInput('--image-url is required: the image to load from, e.g. quay.io/org/prog:v1');
    if (!v.name) throw invalidInput('--name is required: the function name of the program in the image');
    const policy = (v['pull-policy'] as string | undefined) ?? 'IfNotPresent';
    if (!PULL_POLICIES.includes(policy as PullPolicy)) throw invalidInput(`--pull-policy ${policy}: give Always, IfNotPresent or Never`);
    if (goesRemote(p, true)) {
      // the image's program type is in its labels, which the client has not read: XDP unless --type says
      const view = await (await remote()).remoteLoad(p, {
        image: { url: v['image-url'] as string, pullPolicy: policy as PullPolicy, registryAuth: v['registry-auth'] as string | undefined },
        name: v.name as string,
        type: (v.type as string | undefined) ?? 'xdp',
        ...remoteLoadOptions(p),
      });
      return printLoaded(p, view);
    }
    const { loadImage: load } = await import('../core/images.js');
    const ctx = await ctxFor(p, `bpfd load image --image-url ${v['image-url'] as string} --name ${v.name as string}`);
    // the load looks the image up and sends IfNotPresent's HEAD request before the policy module is
    // read: it compiles while the registry answers (the load consults it only after that answer)
    const loading = load(ctx, {
      image: v['image-url'] as string,
      pullPolicy: policy as PullPolicy,
      registryAuth: v['registry-auth'] as string | undefined,
      ...loadRequestOf(p),
    });
    loading.catch(() => undefined);
    await startPolicyCompile(ctx.paths);
    printLoaded(p, await loading);
  },
});

export const loadCommand = defineCommand({
  meta: { name: 'load', description: 'Load an eBPF program (from a file or an OCI image)' },
  subCommands: { file: loadFile, image: loadImage },
});

export const unloadCommand = bpfdCommand({
  name: 'unload',
  description: 'Detach every link of a program, then unload it',
  positionals: [{ name: 'id', description: 'program id (from bpfd list)' }],
  options: { ...lockOption, ...remoteOption },
  async run(p) {
    const id = parseId(p.positionals[0]);
    if (goesRemote(p, true)) return (await remote()).remoteUnload(p, id);
    const { unload } = await import('../core/programs.js');
    await unload(await changeContext(p, `bpfd unload ${id}`), id);
  },
});

export const attachCommand = bpfdCommand({
  name: 'attach',
  description: 'Attach a loaded program to (another) interface',
  positionals: [{ name: 'id', description: 'program id (from bpfd list)' }],
  options: { ...attachOptions, ...lockOption, ...outputOption, ...remoteOption },
  async run(p) {
    const id = parseId(p.positionals[0]);
    let view;
    if (goesRemote(p, true)) {
      view = await (await remote()).remoteAttach(p, id, attachFrom(p, true)!);
    } else {
      const { attach } = await import('../core/programs.js');
      view = await attach(await changeContext(p, `bpfd attach ${id}`), id, attachFrom(p, true)!);
    }
    if (isJson(p)) printJson(view);
    else writeOut(programDetail(view));
  },
});

export const detachCommand = bpfdCommand({
  name: 'detach',
  description: 'Remove one link of a program; the program stays loaded',
  positionals: [{ name: 'link_id', description: 'link id (from bpfd get ID)' }],
  options: { ...lockOption, ...remoteOption },
  async run(p) {
    const id = parseId(p.positionals[0], 'LINK_ID');
    if (goesRemote(p, true)) return (await remote()).remoteDetach(p, id);
    const { detach } = await import('../core/programs.js');
    await detach(await changeContext(p, `bpfd detach ${id}`), id);
  },
});

export const listCommand = bpfdCommand({
  name: 'list',
  description: 'List the programs bpfd manages, by interface and position',
  options: {
    type: { type: 'string', description: 'only programs of this type', valueHint: 'TYPE' },
    iface: { type: 'string', description: 'only programs attached to this interface', valueHint: 'IF' },
    metadata: { type: 'string', multiple: true, description: 'only programs with this label', valueHint: 'K=V' },
    all: { type: 'boolean', description: 'also list kernel programs bpfd does not manage' },
    pending: {
      type: 'boolean',
      description: 'list instead the programs loaded with --persist in an earlier boot that wait for bpfd system restore (not loaded now)',
    },
    ...outputOption,
    ...remoteOption,
  },
  async run(p) {
    const filter = {
      type: p.values.type as string | undefined,
      iface: p.values.iface as string | undefined,
      metadata: parsePairs(p.values.metadata as string[] | undefined, '--metadata'),
    };
    if (p.values.pending && p.values.all) throw invalidInput('--pending and --all do not go together: --pending lists programs that are not loaded');
    const printPending = (pending: PendingView[]) => (isJson(p) ? printJson(pending) : void writeOut(pendingTable(pending)));
    if (goesRemote(p, false)) {
      const r = await remote();
      if (p.values.pending) return printPending(await r.remoteListPending(p, filter));
      const { views, others } = await r.remoteList(p, filter, p.values.all === true);
      return printList(p, views, p.values.all === true ? others : null);
    }
    const { list, listPending, dispatcherProgIds } = await import('../core/read.js');
    const ctx = await createContext({ what: 'bpfd list' });
    if (p.values.pending) return printPending(await listPending(ctx, filter));
    const views = await list(ctx, filter);
    if (p.values.all) {
      const { unmanagedPrograms } = await import('../core/kernel-programs.js');
      return printList(p, views, unmanagedPrograms(new Set([...views.map((v) => v.id), ...(await dispatcherProgIds(ctx))])));
    }
    printList(p, views, null);
  },
});

/** What list prints, in-process or from the service: bpfd's programs, then (--all) the others. */
function printList(p: Parsed, views: ProgramView[], others: KernelOnlyProgram[] | null): void {
  if (isJson(p)) return printJson(others ? [...views, ...others] : views);
  writeOut(programsTable(views));
  if (others?.length) {
    writeOut('\nNot managed by bpfd:\n' + table(['ID', 'NAME', 'TYPE', 'TAG'], others.map((o) => [String(o.id), o.name, o.type, o.kernel.tag])));
  }
}

export const getCommand = bpfdCommand({
  name: 'get',
  description: 'Show one program with its links and kernel details',
  positionals: [{ name: 'id', description: 'program id (from bpfd list)' }],
  options: { ...outputOption, ...remoteOption },
  async run(p) {
    const id = parseId(p.positionals[0]);
    const { get } = await import('../core/read.js');
    const view = goesRemote(p, false) ? await (await remote()).remoteGet(p, id) : await get(await createContext({ what: `bpfd get ${id}` }), id);
    if (isJson(p)) printJson(view);
    else writeOut(programDetail(view));
  },
});
