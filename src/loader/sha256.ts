import type { BinaryLike } from 'node:crypto';

/**
 * sha256 in hex. node:crypto costs a few ms to load, and bpfd starts once per command, so it is
 * loaded on the first hash rather than by every module that might hash.
 */
export function sha256Hex(data: BinaryLike): string {
  const { createHash } = process.getBuiltinModule('node:crypto');
  return createHash('sha256').update(data).digest('hex');
}
