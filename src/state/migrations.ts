import type { Handles } from './lmdb-env.js';

/**
 * Store schema versions and the steps between them. Users upgrade bpfd with programs loaded, so
 * a store written by an older bpfd must open, list and unload after the upgrade: each step
 * rewrites records of version N into version N+1, all steps in one write transaction (a crash
 * leaves the old version whole), and the version is written last.
 *   1  the first layout
 *   2  member images are keyed by link kind (`xdp-image:<id>`, was `image:<id>`): other link
 *      kinds keep their own images beside them
 */
export const SCHEMA_VERSION = 2;

const STEPS: Record<number, (h: Handles) => void> = {
  1: (h) => {
    for (const key of [...h.blobs.getKeys({ start: 'image:', end: 'image;' })]) {
      const value = h.blobs.get(key);
      if (value !== undefined) h.blobs.put(`xdp-image:${key.slice('image:'.length)}`, value);
      h.blobs.remove(key);
    }
  },
};

/** Brings the store to SCHEMA_VERSION; a no-op when another process did it first. */
export function migrate(h: Handles): void {
  h.root.transactionSync(() => {
    let version = h.meta.get('schema_version') as number;
    while (version < SCHEMA_VERSION) {
      const step = STEPS[version];
      if (!step) throw new Error(`no migration from store schema version ${version}`);
      step(h);
      version++;
    }
    h.meta.put('schema_version', version);
  });
}
