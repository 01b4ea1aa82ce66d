import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { failed } from '../base/errors.js';
import { checkpoint } from '../base/test-hooks.js';
import { ENV_LOCK_FILE, guardCloseAtExit, guarded } from './env-guard.js';
import { lmdbFileProblem } from './store-check.js';
import { migrate, SCHEMA_VERSION } from './migrations.js';
import type { LinkRecord, PendingRestore, ProgramRecord } from './records.js';
import { storeOpenError } from './store-errors.js';

/**
 * The LMDB environment under BPFD_STATE_DIR and its sub-databases. Private to src/state: the
 * layers above see only store.ts's operations. Sub-databases:
 *   meta      schema version, counters
 *   programs  kernel prog id -> ProgramRecord
 *   links     bpfd link id -> LinkRecord
 *   decisions sequence -> policy decision (src/state/decision-log.ts)
 *   blobs     keyed binary data (src/state/blobs.ts): relocatable images of XDP members, and
 *             the object files of persisted programs, which restore loads after a reboot
 *   pending   `<boot_id>/<id>` -> PendingRestore: persisted programs of earlier boots
 *   images, image_refs  the OCI image cache index (src/state/images.ts)
 */
export interface Handles {
  root: RootDatabase;
  meta: Database<unknown, string>;
  programs: Database<ProgramRecord, number>;
  links: Database<LinkRecord, number>;
  decisions: Database<unknown, number>;
  blobs: Database<Buffer, string>;
  pending: Database<PendingRestore, string>;
}

export function openHandles(stateDir: string): Handles {
  let root: RootDatabase;
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const problem = lmdbFileProblem(stateDir);
    if (problem) throw storeOpenError(stateDir, new Error(problem), true);
    const lockFile = path.join(stateDir, ENV_LOCK_FILE);
    root = guarded(lockFile, () => open({ path: stateDir, maxDbs: 16, compression: false, noMemInit: true }));
    guardCloseAtExit(lockFile, () => checkpoint('store:closing'));
  } catch (e) {
    if (e instanceof Error && e.name === 'BpfdError') throw e;
    throw storeOpenError(stateDir, e);
  }
  try {
    const h: Handles = {
      root,
      meta: root.openDB<unknown, string>({ name: 'meta' }),
      programs: root.openDB<ProgramRecord, number>({ name: 'programs', keyEncoding: 'uint32' }),
      links: root.openDB<LinkRecord, number>({ name: 'links', keyEncoding: 'uint32' }),
      decisions: root.openDB<unknown, number>({ name: 'decisions', keyEncoding: 'uint32' }),
      blobs: root.openDB<Buffer, string>({ name: 'blobs', encoding: 'binary' }),
      pending: root.openDB<PendingRestore, string>({ name: 'pending' }),
    };
    const version = h.meta.get('schema_version');
    if (version === undefined) h.meta.putSync('schema_version', SCHEMA_VERSION);
    else if (typeof version === 'number' && version < SCHEMA_VERSION) migrate(h);
    else if (version !== SCHEMA_VERSION) {
      throw failed(
        `the store in ${stateDir} has schema version ${String(version)}, this bpfd understands ${SCHEMA_VERSION}`,
        ['upgrade bpfd, or move the directory aside to start with an empty store'],
      );
    }
    return h;
  } catch (e) {
    if (e instanceof Error && e.name === 'BpfdError') throw e;
    throw storeOpenError(stateDir, e);
  }
}

/**
 * The handles, with the process's read transaction renewed first, so that what follows reads the
 * latest commit. lmdb-js shares one read transaction per process and resets it on a setTimeout(0),
 * so a process that never yields keeps its first snapshot: a command that read the store, then
 * waited synchronously for the writer lock (core/lock.ts), would act on records from before the
 * previous holder's changes. Every read operation of src/state goes through here. Reads inside a
 * write transaction see that transaction and are unaffected.
 */
export function latest(h: Handles): Handles {
  h.root.resetReadTxn();
  return h;
}

/** Next value of a named counter, inside the caller's write transaction. */
export function nextCounter(h: Handles, name: string): number {
  const key = `counter:${name}`;
  const n = ((h.meta.get(key) as number | undefined) ?? 0) + 1;
  h.meta.put(key, n);
  return n;
}

/** A link's id and its place in attach order (ties in priority keep attach order). */
export interface LinkIdentity {
  id: number;
  seq: number;
}

/**
 * `keep` when that link id is still free (restore keeps ids and attach order), else a new id from
 * a counter that never goes back, inside the caller's write transaction.
 */
export function reserveLinkIdentity(h: Handles, keep?: LinkIdentity): LinkIdentity {
  if (keep && h.links.get(keep.id) === undefined) return keep;
  const n = nextCounter(h, 'link');
  return { id: n, seq: keep?.seq ?? n };
}
