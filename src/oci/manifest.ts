import { failed, invalidInput } from '../base/errors.js';
import type { RegistryClient } from './client.js';
import { readVerified, sha256Digest } from './verified.js';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

const MANIFEST_TYPES = [MediaType.ociManifest, MediaType.dockerManifest];
const INDEX_TYPES = [MediaType.ociIndex, MediaType.dockerList];
export const ACCEPT = [...MANIFEST_TYPES, ...INDEX_TYPES];
/** manifests and configs are small JSON; anything larger is not a bytecode image */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string; variant?: string };
}

export interface ImageManifest {
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  /** the index it was picked from, when the reference named one */
  index?: { digest: string; mediaType: string; bytes: Buffer };
  manifest: ImageManifest;
}

/** The platform bpfd runs on, in OCI's words. */
export const hostPlatform = () => ({ os: 'linux', architecture: process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : process.arch });

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(bytes.toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* reported below */
  }
  throw failed(`${what} is not a JSON object`);
}

function descriptor(v: unknown, what: string): Descriptor {
  const d = v as Descriptor;
  if (!d || typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw failed(`${what} is not a valid descriptor (mediaType, digest, size)`);
  }
  return d;
}

/** GETs a manifest by tag or digest and checks its bytes against the digest it is known by. */
async function getOne(client: RegistryClient, ref: string): Promise<{ digest: string; mediaType: string; bytes: Buffer }> {
  const { res, touch, done } = await client.request(`manifests/${ref}`, { accept: ACCEPT });
  try {
    const len = Number(res.headers.get('content-length') ?? NaN);
    const header = res.headers.get('docker-content-digest');
    const what = `manifest ${ref} of ${client.registry}/${client.repository}`;
    if (Number.isFinite(len) && len > MAX_JSON_BYTES) throw failed(`${what} is ${len} bytes, over the ${MAX_JSON_BYTES}-byte limit for manifests`);
    touch();
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > MAX_JSON_BYTES) throw failed(`${what} is over the ${MAX_JSON_BYTES}-byte limit for manifests`);
    const digest = sha256Digest(bytes);
    if (ref.startsWith('sha256:') && digest !== ref) throw failed(`${what}: its bytes hash to ${digest}; refused`);
    if (header && header !== digest) throw failed(`${what}: the registry says its digest is ${header}, its bytes hash to ${digest}; refused`);
    const doc = parseJson(bytes, what);
    const mediaType = (doc.mediaType as string | undefined) ?? res.headers.get('content-type')?.split(';')[0] ?? '';
    return { digest, mediaType, bytes };
  } finally {
    done();
  }
}

/**
 * Resolves a tag or digest to an image manifest: an index or manifest list is followed to the
 * entry for this host's platform.
 */
export async function fetchManifest(client: RegistryClient, ref: string): Promise<FetchedManifest> {
  const top = await getOne(client, ref);
  const name = `${client.registry}/${client.repository}`;
  if (INDEX_TYPES.includes(top.mediaType as (typeof INDEX_TYPES)[number])) {
    const doc = parseJson(top.bytes, `index ${top.digest}`);
    const entries = ((doc.manifests as unknown[]) ?? []).map((m, i) => descriptor(m, `entry ${i} of index ${top.digest}`));
    const plat = hostPlatform();
    const pick = entries.find((m) => m.platform?.os === plat.os && m.platform?.architecture === plat.architecture && MANIFEST_TYPES.includes(m.mediaType as never));
    if (!pick) {
      const have = entries.map((m) => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ') || 'none';
      throw failed(`${name}:${ref} has no image for ${plat.os}/${plat.architecture}`, [`platforms in the index: ${have}`]);
    }
    const inner = await getOne(client, pick.digest);
    return { ...inner, index: top, manifest: imageManifest(inner.bytes, inner.mediaType, inner.digest) };
  }
  return { ...top, manifest: imageManifest(top.bytes, top.mediaType, top.digest) };
}

export function imageManifest(bytes: Buffer, mediaType: string, digest: string): ImageManifest {
  if (!MANIFEST_TYPES.includes(mediaType as never)) {
    throw failed(`manifest ${digest} has media type '${mediaType || 'none'}', which is not an image manifest`, [`bpfd reads ${ACCEPT.join(', ')}`]);
  }
  const doc = parseJson(bytes, `manifest ${digest}`);
  const config = descriptor(doc.config, `the config of manifest ${digest}`);
  const layers = ((doc.layers as unknown[]) ?? []).map((l, i) => descriptor(l, `layer ${i} of manifest ${digest}`));
  if (layers.length === 0) throw invalidInput(`manifest ${digest} has no layers: there is no bytecode in it`);
  return { mediaType, config, layers, annotations: doc.annotations as Record<string, string> | undefined };
}

/** The digest a tag points to now, with one HEAD request; null when the registry does not say. */
export async function headDigest(client: RegistryClient, tag: string): Promise<string | null> {
  const { res, done } = await client.request(`manifests/${tag}`, { method: 'HEAD', accept: ACCEPT });
  done();
  return res.headers.get('docker-content-digest');
}

/** GETs a blob, verified against its descriptor while it streams. */
export async function fetchBlob(client: RegistryClient, d: Descriptor, max: number, what: string, progress?: (got: number, total: number) => void): Promise<Buffer> {
  const { res, touch, done } = await client.request(`blobs/${d.digest}`);
  try {
    return await readVerified(res, { digest: d.digest, size: d.size, max, what: `${what} ${d.digest} of ${client.registry}/${client.repository}` }, (got, total) => {
      touch();
      progress?.(got, total);
    });
  } finally {
    done();
  }
}
