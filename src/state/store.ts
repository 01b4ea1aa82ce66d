import { memberImageKey, OBJECT_PREFIX, objectKey, releaseObject } from './blobs.js';
import path from 'node:path';
import { ENV_LOCK_FILE, takeGuard } from './env-guard.js';
import { latest, openHandles, reserveLinkIdentity, type Handles } from './lmdb-env.js';
import type { LinkRecord, PendingRestore, ProgramRecord } from './records.js';

export { SCHEMA_VERSION } from './migrations.js';
export type { LinkIdentity } from './lmdb-env.js';

/**
 * The store: the record of what bpfd did, behind the operations the core needs. The kernel
 * (through pins) is the truth of what exists, and every command reconciles the two. Each write
 * below is one LMDB transaction, so a crash leaves either the old records or the new ones; no
 * LMDB handle leaves src/state.
 */
export interface Store {
  readonly dir: string;
  programs(): ProgramRecord[];
  links(): LinkRecord[];
  pendingRestores(): PendingRestore[];
  /** the encoded relocatable image the dispatcher composes a member from */
  memberImage(progId: number): Buffer | undefined;
  /** the object file kept for a persisted program, by its sha256 */
  storedObject(sha256: string): Buffer | undefined;
  /** sha256 of every object file kept */
  storedObjectDigests(): string[];
  /** `keep` when that link id is still free (restore keeps ids and attach order), else a new id */
  linkIdentity(keep?: { id: number; seq: number }): { id: number; seq: number };
  /** records a loaded program with its image, its object (persisted) and its first link */
  commitLoad(c: { program: ProgramRecord; image: Buffer | null; object: Buffer | null; link: LinkRecord | null }): void;
  addLink(link: LinkRecord): void;
  removeLinks(ids: Iterable<number>): void;
  /** forgets a program and its image, and its object once nothing names it */
  removeProgram(program: ProgramRecord): void;
  /**
   * Forgets programs whose kernel object is gone (or belongs to an earlier boot) with their
   * links; those given a pending restore wait for `bpfd system restore`.
   */
  forgetPrograms(entries: Array<{ program: ProgramRecord; links: LinkRecord[]; pending: PendingRestore | null }>): void;
  removePending(key: string): void;
  close(): void;
}

let cached: { dir: string; store: Store; handles: Handles } | null = null;

/** The store of stateDir, opened once per process (and migrated to SCHEMA_VERSION). */
export function openStore(stateDir: string): Store {
  if (cached && cached.dir === stateDir) return cached.store;
  const h = openHandles(stateDir);
  const values = <V>(db: (h: Handles) => { getRange(): Iterable<{ value: V }> }) => [...db(latest(h)).getRange()].map((e) => e.value);
  const store: Store = {
    dir: stateDir,
    programs: () => values((x) => x.programs),
    links: () => values((x) => x.links),
    pendingRestores: () => values((x) => x.pending),
    memberImage: (progId) => latest(h).blobs.get(memberImageKey('xdp', progId)),
    storedObject: (sha256) => latest(h).blobs.get(objectKey(sha256)),
    storedObjectDigests: () => [...latest(h).blobs.getKeys({ start: OBJECT_PREFIX })].map(String).filter((k) => k.startsWith(OBJECT_PREFIX)).map((k) => k.slice(OBJECT_PREFIX.length)),
    linkIdentity(keep) {
      // Link ids come from a counter that never goes back, so a kept id is free unless the store was replaced.
      if (keep && latest(h).links.get(keep.id) === undefined) return keep;
      return h.root.transactionSync(() => reserveLinkIdentity(h, keep));
    },
    commitLoad({ program, image, object, link }) {
      h.root.transactionSync(() => {
        h.programs.put(program.id, program);
        if (image) h.blobs.put(memberImageKey('xdp', program.id), image);
        // restore after a reboot loads from these bytes: the file may be gone or changed by then
        if (object && 'sha256' in program.bytecode) h.blobs.put(objectKey(program.bytecode.sha256), object);
        if (link) h.links.put(link.id, link);
      });
    },
    addLink(link) {
      h.links.putSync(link.id, link);
    },
    removeLinks(ids) {
      h.root.transactionSync(() => {
        for (const id of ids) h.links.remove(id);
      });
    },
    removeProgram(program) {
      h.root.transactionSync(() => {
        h.programs.remove(program.id);
        h.blobs.remove(memberImageKey('xdp', program.id));
        if (program.persist && 'sha256' in program.bytecode) releaseObject(h, program.bytecode.sha256);
      });
    },
    forgetPrograms(entries) {
      h.root.transactionSync(() => {
        for (const { program, links, pending } of entries) {
          h.programs.remove(program.id);
          h.blobs.remove(memberImageKey('xdp', program.id));
          for (const l of links) h.links.remove(l.id);
          if (pending) h.pending.put(pending.key, pending);
          else if (program.persist && 'sha256' in program.bytecode) releaseObject(h, program.bytecode.sha256);
        }
      });
    },
    removePending(key) {
      h.pending.removeSync(key);
    },
    close() {
      // lmdb-js closes once pending writes are done (a promise): the guard is held until then
      const release = takeGuard(path.join(stateDir, ENV_LOCK_FILE));
      void h.root.close().finally(release);
      cached = null;
    },
  };
  cached = { dir: stateDir, store, handles: h };
  return store;
}

/** The LMDB handles behind a store opened here: for src/state's own modules only. */
export function handlesOf(store: Store): Handles {
  if (!cached || cached.store !== store) throw new Error(`the store of ${store.dir} is closed`);
  return cached.handles;
}
