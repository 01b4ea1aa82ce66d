import type { Store } from './store.js';

/** Keys of the store's blobs database. */
export const imageKey = (progId: number) => `image:${progId}`;
export const objectKey = (sha256: string) => `object:${sha256}`;

/**
 * Drops a persisted program's object file from the store once no record, loaded or pending,
 * names it. Call inside the write transaction that removed the record: lmdb reads there see
 * that transaction's own writes.
 */
export function releaseObject(store: Store, sha256: string): void {
  for (const { value } of store.programs.getRange()) if (value.persist && 'sha256' in value.bytecode && value.bytecode.sha256 === sha256) return;
  for (const { value } of store.pending.getRange()) if ('sha256' in value.program.bytecode && value.program.bytecode.sha256 === sha256) return;
  store.blobs.remove(objectKey(sha256));
}
