import { mkdirSync } from 'node:fs';
import { open, type Database, type RootDatabase } from 'lmdb';
import { failed } from '../base/errors.js';
import { lmdbFileProblem } from './store-check.js';
import type { LinkRecord, PendingRestore, ProgramRecord } from './records.js';

export const SCHEMA_VERSION = 1;

/**
 * The store: one LMDB environment under BPFD_STATE_DIR. It is the record of what bpfd did;
 * the kernel (through pins) is the truth of what exists, and every command reconciles the two.
 * Sub-databases:
 *   meta      schema version, boot id, counters
 *   programs  kernel prog id -> ProgramRecord
 *   links     bpfd link id -> LinkRecord
 *   decisions sequence -> policy decision (src/policy/decision-log.ts)
 *   blobs     keyed binary data (src/state/blobs.ts): relocatable images of XDP members, and
 *             the object files of persisted programs, which restore loads after a reboot
 *   pending   `<boot_id>/<id>` -> PendingRestore: persisted programs of earlier boots
 */
export interface Store {
  root: RootDatabase;
  meta: Database<unknown, string>;
  programs: Database<ProgramRecord, number>;
  links: Database<LinkRecord, number>;
  decisions: Database<unknown, number>;
  blobs: Database<Buffer, string>;
  pending: Database<PendingRestore, string>;
  close(): void;
}

let cached: { dir: string; store: Store } | null = null;

export function openStore(stateDir: string): Store {
  if (cached && cached.dir === stateDir) return cached.store;
  let root: RootDatabase;
  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const problem = lmdbFileProblem(stateDir);
    if (problem) throw new Error(problem);
    root = open({ path: stateDir, maxDbs: 16, compression: false, noMemInit: true });
  } catch (e) {
    throw storeUnreadable(stateDir, e);
  }
  try {
    const meta = root.openDB<unknown, string>({ name: 'meta' });
    const version = meta.get('schema_version');
    if (version === undefined) meta.putSync('schema_version', SCHEMA_VERSION);
    else if (version !== SCHEMA_VERSION) {
      throw failed(
        `the store in ${stateDir} has schema version ${String(version)}, this bpfd understands ${SCHEMA_VERSION}`,
        ['upgrade bpfd, or move the directory aside to start with an empty store'],
      );
    }
    const store: Store = {
      root,
      meta,
      programs: root.openDB<ProgramRecord, number>({ name: 'programs', keyEncoding: 'uint32' }),
      links: root.openDB<LinkRecord, number>({ name: 'links', keyEncoding: 'uint32' }),
      decisions: root.openDB<unknown, number>({ name: 'decisions', keyEncoding: 'uint32' }),
      blobs: root.openDB<Buffer, string>({ name: 'blobs', encoding: 'binary' }),
      pending: root.openDB<PendingRestore, string>({ name: 'pending' }),
      close() {
        root.close();
        cached = null;
      },
    };
    cached = { dir: stateDir, store };
    return store;
  } catch (e) {
    if (e instanceof Error && e.name === 'BpfdError') throw e;
    throw storeUnreadable(stateDir, e);
  }
}

function storeUnreadable(dir: string, e: unknown) {
  const why = e instanceof Error ? e.message : String(e);
  return failed(`cannot open the bpfd store in ${dir}: ${why}`, [
    `to recover: move ${dir} aside (mv ${dir} ${dir}.damaged); the next bpfd command starts an empty store`,
    'and removes the programs it finds pinned without a record, so reload what you need afterwards',
  ]);
}

/** Next value of a named counter, inside the caller's write transaction. */
export function nextCounter(store: Store, name: string): number {
  const key = `counter:${name}`;
  const n = ((store.meta.get(key) as number | undefined) ?? 0) + 1;
  store.meta.put(key, n);
  return n;
}
