import type { Handles } from './lmdb-env.js';

/** Keys of the store's blobs database (schema version 2, migrations.ts). */
export const memberImageKey = (kind: 'xdp', progId: number) => `${kind}-image:${progId}`;
export const objectKey = (sha256: string) => `object:${sha256}`;
export const OBJECT_PREFIX = 'object:';

/**
 * Drops a persisted program's object file from the store once no record, loaded or pending,
 * names it. Call inside the write transaction that removed the record: lmdb reads there see
 * that transaction's own writes.
 */
export function releaseObject(h: Handles, sha256: string): void {
  for (const { value } of h.programs.getRange()) if (value.persist && 'sha256' in value.bytecode && value.bytecode.sha256 === sha256) return;
  for (const { value } of h.pending.getRange()) if ('sha256' in value.program.bytecode && value.program.bytecode.sha256 === sha256) return;
  h.blobs.remove(objectKey(sha256));
}
