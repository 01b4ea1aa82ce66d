import { failed, invalidInput } from '../base/errors.js';
import { credentialFor } from './auth.js';
import { RegistryClient } from './client.js';
import { fetchSignatures, type StoredSignature } from './cosign.js';
import { parseLabels, type ImageLabels } from './labels.js';
import { MAX_LAYER_BYTES, objectFromLayer, preloadGunzip } from './layer.js';
import { fetchBlob, fetchManifest, headDigest, MAX_JSON_BYTES, type Descriptor } from './manifest.js';
import type { ImageReference } from './reference.js';
import { mark } from '../base/timings.js';

/** Everything a pull fetched and verified; nothing of it is stored yet. */
export interface PulledImage {
  ref: ImageReference;
  /** digest of the image manifest bpfd loads from */
  digest: string;
  /** digest of the index it was picked from, when the reference named one */
  indexDigest: string | null;
  manifest: { mediaType: string; bytes: Buffer };
  index: { mediaType: string; bytes: Buffer } | null;
  config: { descriptor: Descriptor; bytes: Buffer };
  layer: { descriptor: Descriptor; bytes: Buffer };
  labels: ImageLabels;
  /** the tar entry the object came from (null: the layer is the object) */
  entry: string | null;
  /** the BPF object, unpacked from the layer */
  object: Buffer;
  signatures: StoredSignature[];
}

export interface RegistryOptions {
  /** --registry-auth */
  auth?: string;
  /**
   * Use only `auth`, never BPFD_REGISTRY_AUTH or the credential files: those are the running
   * process's (root's, in the service), and a caller who is not root must not borrow them.
   */
  ownCredentialsOnly?: boolean;
  env?: NodeJS.ProcessEnv;
  progress?: (what: string, got: number, total: number) => void;
  /** stops the pull's requests (core: a pull the policy denied while it fetched) */
  signal?: AbortSignal;
  /** called once the requests for config, layer and signatures are sent */
  blobsRequested?: () => void;
}

export const registryTimeoutMs = (env: NodeJS.ProcessEnv = process.env) => {
  const s = Number(env.BPFD_REGISTRY_TIMEOUT ?? 30);
  return (Number.isFinite(s) && s > 0 ? s : 30) * 1000;
};

/**
 * The most bytes a layer may have, packed or unpacked: 16 MiB, or BPFD_MAX_LAYER_BYTES. The
 * variable is root's own (refused under sudo, core/caller.ts; a service client cannot set it).
 */
export function maxLayerBytes(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.BPFD_MAX_LAYER_BYTES;
  if (v === undefined || v === '') return MAX_LAYER_BYTES;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n <= 0) throw invalidInput(`BPFD_MAX_LAYER_BYTES=${v} is not a positive number of bytes`, [`unset it for the default, ${MAX_LAYER_BYTES} (16 MiB)`]);
  return n;
}

export function clientFor(ref: ImageReference, o: RegistryOptions): RegistryClient {
  const env = o.env ?? process.env;
  return new RegistryClient({
    registry: ref.registry,
    repository: ref.repository,
    credential: credentialFor(ref.registry, ref.repository, o.auth, env, o.ownCredentialsOnly),
    timeoutMs: registryTimeoutMs(env),
    env,
    signal: o.signal,
  });
}

/** The tag's current digest (one HEAD request), or null when the registry does not say. */
export async function currentDigest(ref: ImageReference, o: RegistryOptions): Promise<string | null> {
  return headDigest(clientFor(ref, o), ref.digest ?? ref.tag ?? 'latest');
}

/**
 * Resolves the reference, follows an index to this host's manifest, and fetches config, first
 * layer and cosign signatures, each verified against its digest and size as it streams. The
 * layer is unpacked here too, so an image without a usable object is refused before anything
 * is cached.
 */
export async function pullImage(ref: ImageReference, o: RegistryOptions = {}): Promise<PulledImage> {
  const max = maxLayerBytes(o.env ?? process.env);
  const client = clientFor(ref, o);
  const m = await fetchManifest(client, ref.digest ?? ref.tag ?? 'latest');
  mark('manifest');
  const configDesc = m.manifest.config;
  const layerDesc = m.manifest.layers[0];
  const signed = [m.index?.digest, m.digest].filter((d): d is string => !!d);
  // config, layer and signatures at once: a pull is mostly round trips to the registry
  const blobs = Promise.all([
    fetchBlob(client, configDesc, MAX_JSON_BYTES, 'config'),
    fetchBlob(client, layerDesc, max, 'layer', (got, total) => o.progress?.(`layer ${layerDesc.digest.slice(7, 19)}`, got, total)),
    ...signed.map((d) => fetchSignatures(client, d)),
  ]);
  o.blobsRequested?.();
  // the runtime's HTTP client works on its own thread: load the unpacker while the blobs come (not
  // before the manifest's answer: the requests for them wait on it, and the main thread reads it)
  preloadGunzip();
  const [config, layer, ...sigs] = await blobs;
  mark('blobs');
  const labels = parseLabels(config);
  const { entry, object } = objectFromLayer(layer, layerDesc.mediaType, max);
  mark('unpacked');
  const signatures: StoredSignature[] = sigs.flat();
  if (!m.digest) throw failed(`${ref.canonical}: the registry gave no manifest digest`);
  return {
    ref,
    digest: m.digest,
    indexDigest: m.index?.digest ?? null,
    manifest: { mediaType: m.mediaType, bytes: m.bytes },
    index: m.index ? { mediaType: m.index.mediaType, bytes: m.index.bytes } : null,
    config: { descriptor: configDesc, bytes: config },
    layer: { descriptor: layerDesc, bytes: layer },
    labels,
    entry,
    object,
    signatures,
  };
}
