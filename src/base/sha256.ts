import { createRequire } from 'node:module';

type Crypto = typeof import('node:crypto');
let crypto: Crypto | null = null;
let native: ((data: Uint8Array) => Buffer) | null = null;

/**
 * Hash through this digest from now on. The core passes OpenSSL's one-shot SHA256 from the loader
 * (src/loader/lib.ts, opensslSha256) when it runs a change: a load or an unload has koffi anyway,
 * and hashing through it spares them loading node:crypto (~3 ms, a tenth of what bpfd adds to a
 * command). Nothing registers it as a side effect of an import.
 */
export function useNativeSha256(digest: (data: Uint8Array) => Buffer): void {
  native = digest;
}

/** An incremental sha256, as the OCI client hashes a blob while it streams. */
export interface Sha256Stream {
  update(data: Uint8Array): unknown;
  digest(encoding: 'hex'): string;
}
let nativeStream: (() => Sha256Stream) | null = null;

/**
 * Incremental hashes through this from now on: the entry point passes the runtime's native hasher
 * (Bun's CryptoHasher), so that a pull need not load node:crypto for its blobs.
 */
export function useNativeSha256Stream(make: () => Sha256Stream): void {
  nativeStream = make;
}

/** The registered native incremental hash, or null (the caller falls back to node:crypto). */
export const nativeSha256Stream = (): Sha256Stream | null => nativeStream?.() ?? null;

/** Whether the next hash goes through the registered native digest (tests). */
export const hashesNatively = (): boolean => crypto === null && native !== null;

/**
 * sha256 in hex, for object files, policy modules and policy inputs. node:crypto loads on the
 * first hash, not with every module that might hash (a read like `bpfd list` never does), and
 * not at all when a native digest was registered before the first hash.
 */
export function sha256Hex(data: string | Uint8Array): string {
  if (crypto === null && native !== null) return native(typeof data === 'string' ? Buffer.from(data) : data).toString('hex');
  crypto ??= createRequire(import.meta.url)('node:crypto') as Crypto;
  // crypto.hash (Node >= 20.12) skips the Hash object: ~1.5 us less per policy decision.
  return typeof crypto.hash === 'function' ? crypto.hash('sha256', data, 'hex') : crypto.createHash('sha256').update(data).digest('hex');
}
