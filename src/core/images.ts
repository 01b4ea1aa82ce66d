import { existsSync } from 'node:fs';
import path from 'node:path';
import { type Context, requireRoot } from './context.js';
import { BpfdError, failed, invalidInput, notFound } from '../base/errors.js';
import type { ProgramView } from './view.js';
import type { DryRunResult, LoadFileRequest } from './programs.js';
import { mark, timed, timedSync } from '../base/timings.js';
import { checkpoint } from '../base/test-hooks.js';
import { parseBpfElf, type BpfElf } from '../loader/elf.js';
import { keySetId, keysDir, trustedKeys, verifySignatures } from '../oci/cosign.js';
import { checkListed } from '../oci/labels.js';
import { MAX_LAYER_BYTES, objectFromLayer } from '../oci/layer.js';
import { currentDigest, pullImage, type PulledImage, type RegistryOptions } from '../oci/pull.js';
import { credentialScope, startFetch, type EarlyFetch } from './image-fetch.js';
import { parseReference, pinned, type ImageReference } from '../oci/reference.js';
import { sha256Digest } from '../oci/verified.js';
import type { PolicyImage } from '../policy/input.js';
import { allImages, blobPath, digestOfReference, discardStaged, imageByDigest, readBlob, recordImage, removeImage, stageBlob, updateSignature, type ImageRecord, type StagedBlob } from '../state/images.js';

export { PULL_POLICIES, type PullPolicy } from '../base/bpfman-proto.js';
import type { PullPolicy } from '../base/bpfman-proto.js';

/** What `bpfd images` shows for one image (shared/CLI.md). */
export interface ImageView {
  references: string[];
  digest: string;
  index_digest: string | null;
  size: number;
  programs: Record<string, string>;
  maps: Record<string, string>;
  signature: { verified: boolean; key: string | null; fingerprint: string | null; reason: string | null };
  pulled_at: string;
}

const gate: typeof import('./policy-gate.js').gate = async (...args) => (await import('./policy-gate.js')).gate(...args);

const nowIso = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export const imageView = (r: ImageRecord): ImageView => ({
  references: r.references,
  digest: r.digest,
  index_digest: r.index_digest,
  size: r.size,
  programs: r.programs,
  maps: r.maps,
  signature: { verified: r.signature.verified, key: r.signature.key, fingerprint: r.signature.fingerprint, reason: r.signature.reason },
  pulled_at: r.pulled_at,
});

/** The policy's view of an image. */
export function policyImage(ref: ImageReference, rec: ImageRecord | null): PolicyImage {
  return {
    reference: ref.canonical,
    registry: ref.registry,
    repository: ref.repository,
    digest: rec?.digest ?? ref.digest,
    labels: rec?.labels ?? {},
    ...(rec ? { signature: imageView(rec).signature } : {}),
  };
}

/** The cached image a reference names, by digest or by the tag as last pulled. */
export function cachedImage(ctx: Context, ref: ImageReference): ImageRecord | null {
  const store = ctx.store();
  const digest = ref.digest ?? digestOfReference(store, ref.canonical);
  if (!digest) return null;
  const direct = imageByDigest(store, digest);
  if (direct) return direct;
  // a digest reference may name the index an image was picked from
  return allImages(store).find((r) => r.index_digest === digest) ?? null;
}

/**
 * The verification result for the trusted keys configured now: a result made against another
 * key set (a key added, removed or replaced) is made again from the signatures kept with the
 * image, without the network.
 */
export function currentSignature(ctx: Context, rec: ImageRecord): ImageRecord {
  const { keys } = trustedKeys(keysDir());
  const keyset = keySetId(keys);
  if (rec.signature.keyset === keyset) return rec;
  const facts = verifySignatures([rec.digest, rec.index_digest].filter((d): d is string => !!d), rec.signatures, keys);
  const signature = { ...facts, keyset };
  updateSignature(ctx.store(), rec.digest, signature);
  return { ...rec, signature };
}

/**
 * Whether a pull may ask the registry while the policy decides: only in the caller's own process
 * (`via: cli`, root or not), which could ask the registry itself anyway. Under sudo and through
 * the service, bpfd acts for someone else with privileges of its own, and asks the registry only
 * once the policy has allowed the pull: a caller it denies makes it connect nowhere.
 */
const fetchWhileDeciding = (ctx: Context) => ctx.subject.via === 'cli';

/**
 * Fetches and verifies an image for a pull, the policy's decision first. In the caller's own
 * process (fetchWhileDeciding) the requests go out before it (`early`, sent by the command before
 * the store loaded, or sent here), and the policy decides once the blobs are asked for, while they
 * come (their requests wait on the manifest's answer, which the decision would hold up). Either
 * way the decision is logged before anything is written to the cache, and a deny stops the
 * requests in flight and is the error reported, whatever the registry answered.
 */
async function decideAndFetch(ctx: Context, ref: ImageReference, o: RegistryOptions, early?: EarlyFetch): Promise<PulledImage> {
  const decide = () => gate(ctx, { action: 'pull', image: policyImage(ref, null), application: null, metadata: {} });
  if (!fetchWhileDeciding(ctx)) {
    await early?.stop();
    await decide();
    return timed('pull', () => pullImage(ref, o));
  }
  const f = early ?? startFetch(ref, o);
  try {
    // a manifest already answered asks for the blobs first; one still on its way does not hold
    // the decision up (a registry that does not answer must not delay a deny)
    await Promise.race([f.blobsRequested, new Promise((resolve) => setImmediate(resolve))]);
    await decide();
  } catch (e) {
    await f.stop();
    throw e;
  }
  mark('pull decided');
  f.allow();
  return f.fetching;
}

/**
 * Pulls (policy action `pull`), verifies and caches an image; the index commits last. `early`:
 * the fetch of the same reference that `bpfd pull` started before the context (prefetchImage).
 */
export async function pull(ctx: Context, refText: string, given: RegistryOptions = {}, early?: EarlyFetch): Promise<ImageRecord> {
  const o = credentialScope(ctx.subject.uid, given);
  const ref = early?.ref ?? parseReference(refText);
  mark('pull');
  const img = await decideAndFetch(ctx, ref, o, early);
  const object = { digest: sha256Digest(img.object), size: img.object.length };
  const dir = ctx.paths.stateDir;
  const staged: StagedBlob[] = [];
  try {
    timedSync('cache blobs', () => {
      staged.push(stageBlob(dir, img.layer.descriptor.digest, img.layer.bytes));
      // a pull killed here, its layer half-way to the cache, must leave nothing that looks cached
      checkpoint('pull:staging');
      // the object can be unpacked from the layer again: it needs no fsync of its own
      staged.push(stageBlob(dir, object.digest, img.object, false));
      staged.push(stageBlob(dir, img.config.descriptor.digest, img.config.bytes));
      staged.push(stageBlob(dir, img.digest, img.manifest.bytes));
      if (img.index && img.indexDigest) staged.push(stageBlob(dir, img.indexDigest, img.index.bytes));
    });
    mark('staged');
    return timedSync('cache index', () => recordImage(ctx.store(), dir, staged, imageRecordOf(ref, img, object), ref.canonical));
  } catch (e) {
    discardStaged(staged);
    throw e;
  }
}

/** The index record of a pulled image, its signatures verified against the keys configured now. */
function imageRecordOf(ref: ImageReference, img: PulledImage, object: { digest: string; size: number }): ImageRecord {
  const { keys } = timedSync('signature check', () => trustedKeys(keysDir()));
  const facts = verifySignatures([img.digest, img.indexDigest].filter((d): d is string => !!d), img.signatures, keys);
  return {
    digest: img.digest,
    index_digest: img.indexDigest,
    references: [],
    registry: ref.registry,
    repository: ref.repository,
    manifest_media_type: img.manifest.mediaType,
    config_digest: img.config.descriptor.digest,
    layer: { digest: img.layer.descriptor.digest, size: img.layer.descriptor.size, media_type: img.layer.descriptor.mediaType },
    size: img.manifest.bytes.length + img.config.bytes.length + img.layer.bytes.length,
    programs: img.labels.programs,
    maps: img.labels.maps,
    labels: img.labels.all,
    entry: img.entry,
    object,
    signatures: img.signatures,
    signature: { ...facts, keyset: keySetId(keys) },
    pulled_at: nowIso(),
  };
}

/** What the one HEAD request of IfNotPresent answered: the tag's digest now, or why there is none. */
type TagAnswer = { digest: string | null } | { error: unknown };

/**
 * The cached image for a reference under a pull policy, and, for IfNotPresent on a tag, the HEAD
 * request asking for the tag's current digest, already sent: the caller does its local work
 * while the registry answers, and uses the cache only once stillCurrent says so.
 */
function lookUp(ctx: Context, ref: ImageReference, policy: PullPolicy, o: RegistryOptions): { cached: ImageRecord | null; tag: Promise<TagAnswer> | null } {
  const cached = policy === 'Always' ? null : cachedImage(ctx, ref);
  if (policy === 'Never' && !cached) throw notFound(`image ${ref.canonical} is not in the cache and --pull-policy is Never (pull it first: bpfd pull ${ref.canonical})`);
  const tag = policy === 'IfNotPresent' && cached && !ref.digest ? currentDigest(ref, o).then((digest) => ({ digest }), (error: unknown) => ({ error })) : null;
  return { cached, tag };
}

/**
 * Whether the cached image is what the tag names now. A registry that does not answer (offline,
 * down, too slow) leaves the cached image in use, which is what IfNotPresent promises; refused
 * credentials are an error.
 */
async function stillCurrent(cached: ImageRecord, tag: Promise<TagAnswer>): Promise<boolean> {
  const answer = await timed('tag check', () => tag);
  if ('error' in answer) {
    const e = answer.error;
    if (!(e instanceof BpfdError) || e.kind === 'denied') throw e;
    return true;
  }
  return answer.digest === null || answer.digest === cached.digest || answer.digest === cached.index_digest;
}

/**
 * The image to load under a pull policy. IfNotPresent asks the registry for the tag's current
 * digest with one HEAD request, so a moved tag is pulled again; when the registry does not
 * answer, the cached image is used. Never uses only the cache.
 */
export async function ensureImage(ctx: Context, refText: string, policy: PullPolicy, given: RegistryOptions = {}): Promise<{ ref: ImageReference; rec: ImageRecord }> {
  const o = credentialScope(ctx.subject.uid, given);
  const ref = parseReference(refText);
  const { cached, tag } = lookUp(ctx, ref, policy, o);
  if (cached && (!tag || (await stillCurrent(cached, tag)))) return { ref, rec: cached };
  return { ref, rec: await pull(ctx, refText, o) };
}

/** A cached blob, checked against its digest again; null when it is missing or damaged. */
function cachedBlob(ctx: Context, digest: string): Buffer | null {
  const bytes = readBlob(ctx.paths.stateDir, digest);
  return bytes && sha256Digest(bytes) === digest ? bytes : null;
}

/**
 * The object in a cached image: the object blob the pull unpacked, or, when that is missing or
 * damaged (it is written without an fsync, and records from before it was kept have none), the
 * layer, checked against its digest and unpacked again; then through the ELF gate.
 */
export function objectOfImage(ctx: Context, rec: ImageRecord): BpfElf {
  const name = `${rec.registry}/${rec.repository}@${rec.digest}`;
  const object = rec.object && cachedBlob(ctx, rec.object.digest);
  if (object) return parseBpfElf(name, object);
  const layer = cachedBlob(ctx, rec.layer.digest);
  if (!layer) {
    const why = existsSync(blobPath(ctx.paths.stateDir, rec.layer.digest)) ? 'is damaged (its bytes no longer match its digest)' : 'is missing';
    throw failed(`the cached layer ${rec.layer.digest} of image ${rec.digest} ${why}`, ['remove it with bpfd images rm, then pull again']);
  }
  return parseBpfElf(name, objectFromLayer(layer, rec.layer.media_type, Math.max(MAX_LAYER_BYTES, layer.length)).object);
}

export interface LoadImageRequest extends Omit<LoadFileRequest, 'path'> {
  image: string;
  pullPolicy: PullPolicy;
  registryAuth?: string;
}

/**
 * `bpfd load image`: the image under its pull policy, then the same load as a file. Under
 * IfNotPresent the HEAD request is in flight while the cached object is read, checked against
 * its digest and gated, so that a cached load costs about what a load file does; nothing of it
 * is used before the registry's answer says the tag still names the cached image (a moved tag
 * is pulled, and the new image prepared, before policy and kernel see anything).
 */
export async function loadImage(ctx: Context, req: LoadImageRequest): Promise<ProgramView | DryRunResult> {
  requireRoot('bpfd load');
  const o = credentialScope(ctx.subject.uid, { auth: req.registryAuth });
  const ref = parseReference(req.image);
  const { cached, tag } = lookUp(ctx, ref, req.pullPolicy, o);
  mark('image looked up');
  const { programIn, loadObject } = await import('./programs.js');
  const { reconcile } = await import('./reconcile.js');
  const prepare = (found: ImageRecord) => {
    const rec = currentSignature(ctx, found);
    checkListed({ programs: rec.programs, maps: rec.maps, filename: null, all: rec.labels }, req.name, ref.canonical);
    const elf = objectOfImage(ctx, rec);
    return { rec, elf, program: programIn(elf, req.name, req.type, req.attach !== undefined) };
  };
  let ready: ReturnType<typeof prepare> | null = null;
  if (cached) {
    // an image the tag no longer names may fail where the new one does not: its error waits for the answer
    let refused: unknown = null;
    try {
      ready = prepare(cached);
    } catch (e) {
      refused = e;
    }
    if (tag && !(await stillCurrent(cached, tag))) ready = null;
    else if (refused) throw refused;
    mark('tag checked');
  }
  ready ??= prepare(await pull(ctx, req.image, o));
  const { rec, elf, program } = ready;
  return ctx.exclusive(async () =>
    loadObject(ctx, reconcile(ctx, true), {
      ...req,
      elf,
      program,
      bytecode: { image: ref.canonical, digest: rec.digest },
      image: policyImage(ref, rec),
    }),
  );
}

/** For restore: the object and image facts of a program loaded from an image, from the cache only. */
export function restoreSource(ctx: Context, bytecode: { image: string; digest: string }, name: string): { elf: BpfElf; image: PolicyImage } {
  const ref = parseReference(bytecode.image);
  const found = imageByDigest(ctx.store(), bytecode.digest);
  if (!found) throw failed(`image ${bytecode.image} (${bytecode.digest}) is no longer in the cache`, [`pull it again (bpfd pull ${pinned(ref, bytecode.digest)}) and run bpfd system restore`]);
  const rec = currentSignature(ctx, found);
  return { elf: objectOfImage(ctx, rec), image: policyImage(ref, rec) };
}

export function listImages(ctx: Context): ImageView[] {
  return allImages(ctx.store()).map((r) => imageView(currentSignature(ctx, r))).sort((a, b) => a.pulled_at.localeCompare(b.pulled_at) || a.digest.localeCompare(b.digest));
}

/** `bpfd images rm`: refused while a loaded program, or one waiting for restore, uses the image. */
export async function removeCachedImage(ctx: Context, refOrDigest: string): Promise<ImageView> {
  const store = ctx.store();
  let rec: ImageRecord | null = null;
  if (/^sha256:[0-9a-f]{64}$/.test(refOrDigest)) rec = imageByDigest(store, refOrDigest) ?? allImages(store).find((r) => r.index_digest === refOrDigest) ?? null;
  else rec = cachedImage(ctx, parseReference(refOrDigest));
  if (!rec) throw notFound(`no cached image ${refOrDigest} (see: bpfd images)`);
  const found = rec;
  return ctx.exclusive(async () => {
    const { reconcile } = await import('./reconcile.js');
    const state = reconcile(ctx, true);
    const users = state.programs.filter((p) => 'digest' in p.bytecode && p.bytecode.digest === found.digest);
    const waiting = store.pendingRestores().filter((e) => 'digest' in e.program.bytecode && e.program.bytecode.digest === found.digest);
    if (users.length || waiting.length) {
      throw failed(`image ${found.digest} is in use and stays cached`, [
        ...users.map((p) => `program ${p.id} (${p.name}) is loaded from it: unload it first`),
        ...waiting.map((e) => `program ${e.program.name} (persisted, key ${e.key}) waits to be restored from it`),
      ]);
    }
    removeImage(store, ctx.paths.stateDir, found.digest);
    return imageView(found);
  });
}

/**
 * `bpfd image build`: a bpfman-format image of an object, its labels read from the object (each
 * program's type from its section, each map's type), cached as if pulled and, with push, sent
 * to the registry. No container engine is involved.
 */
export async function buildImageOf(ctx: Context, objPath: string, tag: string, o: { push: boolean } & RegistryOptions): Promise<ImageView> {
  const ref = parseReference(tag);
  if (ref.digest) throw invalidInput(`--tag ${tag}: give a tag, not a digest (the digest comes from the build)`);
  const { readBpfElf, programTypeOfSection } = await import('../loader/elf.js');
  const { objectMaps } = await import('../loader/object.js');
  const elf = readBpfElf(path.resolve(objPath));
  const programs = Object.fromEntries(elf.programs.map((p) => [p.name, programTypeOfSection(p.section)]));
  if (!Object.keys(programs).length) throw invalidInput(`${objPath} has no programs to put in an image`);
  // internal maps (.bss, .data, .rodata) are the object's globals, not maps a user names
  const maps = Object.fromEntries(objectMaps(elf).filter((m) => !/^(bss|data|rodata|kconfig)(_|$)/.test(m.name)).map((m) => [m.name, m.type]));
  const { buildImage, pushImage } = await import('../oci/build.js');
  const img = buildImage({ object: elf.bytes, filename: path.basename(objPath), programs, maps });
  if (o.push) {
    const { clientFor } = await import('../oci/pull.js');
    await pushImage(clientFor(ref, o), img, ref.tag ?? 'latest');
  }
  const dir = ctx.paths.stateDir;
  const object = { digest: sha256Digest(elf.bytes), size: elf.bytes.length };
  const staged: StagedBlob[] = [];
  try {
    staged.push(stageBlob(dir, img.layer.descriptor.digest, img.layer.bytes));
    staged.push(stageBlob(dir, object.digest, elf.bytes, false));
    staged.push(stageBlob(dir, img.config.descriptor.digest, img.config.bytes));
    staged.push(stageBlob(dir, img.digest, img.manifest));
  } catch (e) {
    discardStaged(staged);
    throw e;
  }
  const { keys } = trustedKeys(keysDir());
  const rec = recordImage(ctx.store(), dir, staged, {
    digest: img.digest,
    index_digest: null,
    references: [],
    registry: ref.registry,
    repository: ref.repository,
    manifest_media_type: 'application/vnd.oci.image.manifest.v1+json',
    config_digest: img.config.descriptor.digest,
    layer: { digest: img.layer.descriptor.digest, size: img.layer.descriptor.size, media_type: img.layer.descriptor.mediaType },
    size: img.manifest.length + img.config.bytes.length + img.layer.bytes.length,
    programs,
    maps,
    labels: JSON.parse(img.config.bytes.toString()).config.Labels,
    entry: path.basename(objPath),
    object,
    signatures: [],
    signature: { ...verifySignatures([img.digest], [], keys), keyset: keySetId(keys) },
    pulled_at: nowIso(),
  }, ref.canonical);
  return imageView(rec);
}
