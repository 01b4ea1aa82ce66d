import { createRequire } from 'node:module';
import { failed, limitReached } from '../base/errors.js';
import { nativeSha256Stream, sha256Hex, type Sha256Stream } from '../base/sha256.js';

let crypto: typeof import('node:crypto') | null = null;
/**
 * node:crypto, loaded on first use: a load from a cached image hashes through base/sha256 (the
 * executable's native digest) and checks no key, so it never pays for loading it (~6 ms).
 */
export const nodeCrypto = (): typeof import('node:crypto') => (crypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto'));

/** What a blob must be: its digest and size from the manifest, and the most bpfd will take. */
export interface Expected {
  digest: string;
  size: number;
  /** refuse anything larger than this, whatever the manifest says */
  max: number;
  /** how errors name it, e.g. "layer sha256:… of 127.0.0.1:5000/prog" */
  what: string;
}

/** An incremental sha256: the runtime's native hasher in the executable (no node:crypto to load), node's elsewhere. */
function sha256Stream(): Sha256Stream {
  return nativeSha256Stream() ?? nodeCrypto().createHash('sha256');
}

export type Progress = (received: number, total: number) => void;

/**
 * Reads a response body while hashing it, and refuses it the moment it runs past its declared
 * size or the cap, then checks size and sha256 at the end. Nothing unverified leaves this
 * function: callers store only what it returns.
 */
export async function readVerified(res: Response, want: Expected, progress?: Progress): Promise<Buffer> {
  if (want.size > want.max) {
    await res.body?.cancel();
    throw limitReached(`${want.what} is ${want.size} bytes, over the ${want.max}-byte limit bpfd accepts for it`);
  }
  if (!/^sha256:[0-9a-f]{64}$/.test(want.digest)) {
    await res.body?.cancel();
    throw failed(`${want.what}: digest '${want.digest}' is not a sha256 digest; bpfd verifies sha256 only`);
  }
  const hash = sha256Stream();
  const chunks: Buffer[] = [];
  let got = 0;
  const reader = res.body?.getReader();
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      got += value.byteLength;
      if (got > want.size) {
        await reader.cancel();
        throw failed(`${want.what}: the registry sent more than the ${want.size} bytes the manifest declares; nothing was stored`);
      }
      hash.update(value);
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      progress?.(got, want.size);
    }
  }
  if (got !== want.size) throw failed(`${want.what}: the registry sent ${got} of ${want.size} bytes (truncated); nothing was stored`);
  const digest = `sha256:${hash.digest('hex')}`;
  if (digest !== want.digest) throw failed(`${want.what}: its bytes hash to ${digest}, not the digest the manifest names; nothing was stored`);
  return Buffer.concat(chunks, got);
}

export const sha256Digest = (b: Uint8Array) => `sha256:${sha256Hex(b)}`;
