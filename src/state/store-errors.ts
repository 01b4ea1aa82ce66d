import { statSync } from 'node:fs';
import { busy, failed, type BpfdError } from '../base/errors.js';

/**
 * Why the store did not open, told apart: only real damage (a meta page or header that fails its
 * checks, LMDB reporting corruption) earns the advice to move the store aside, which loses every
 * record. A permission problem says which privilege is missing; anything else says what failed
 * and leaves the store alone.
 */
const DAMAGE = /MDB_(CORRUPTED|INVALID|PAGE_NOTFOUND|BAD_TXN|VERSION_MISMATCH)|not an LMDB file|meta page|truncated|no valid LMDB header|LMDB format version/i;
const DENIED = /EACCES|EPERM|permission denied|operation not permitted/i;
const READ_ONLY = /EROFS|read-only file system/i;
/**
 * lmdb-js's native beginTxn ignores mdb_txn_begin's result; when the first write transaction of a
 * process (open() opens the root database in it) fails to begin, the open then fails with this.
 * The cause was a process opening the store while the last one closed it and destroyed LMDB's
 * mutexes (EINVAL from the writer mutex): bpfd's own processes now take turns (env-guard.ts), so
 * this remains for a store opened at the same time by something else (another LMDB tool, or a
 * holder of the guard that hung). Nothing was written; the next process opens the store normally.
 */
const TRANSIENT_BEGIN = /No transaction to renew|No current read transaction/;

export function storeOpenError(dir: string, e: unknown, damaged = false): BpfdError {
  const why = e instanceof Error ? e.message : String(e);
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  if (damaged || DAMAGE.test(why)) {
    return failed(`cannot open the bpfd store in ${dir}: ${why}`, [
      `to recover: move ${dir} aside (mv ${dir} ${dir}.damaged); the next bpfd command starts an empty store`,
      'and removes the programs it finds pinned without a record, so reload what you need afterwards',
    ]);
  }
  if (DENIED.test(code) || DENIED.test(why)) {
    const uid = process.getuid?.() ?? -1;
    let owner = '';
    try {
      const st = statSync(dir);
      owner = ` (owned by uid ${st.uid}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`;
    } catch {
      // the directory itself may be what cannot be reached
    }
    return failed(`cannot open the bpfd store in ${dir}: permission denied for uid ${uid}${owner}`, [
      `bpfd reads and writes its store (and its lock file) as root: run the command with sudo`,
      'or, as a normal user, ask the bpfd service over its socket, which runs as root',
      'nothing in the store is damaged: do not move it aside',
    ]);
  }
  if (READ_ONLY.test(code) || READ_ONLY.test(why)) {
    return failed(`cannot open the bpfd store in ${dir}: the file system is read-only`, ['bpfd needs to write its lock file even to read; set BPFD_STATE_DIR to a writable directory']);
  }
  if (TRANSIENT_BEGIN.test(why)) {
    return busy(`cannot open the bpfd store in ${dir}: LMDB could not begin a transaction (${why}) while other bpfd commands opened the store`, [
      'nothing was changed and nothing in the store is damaged: run the command again',
    ]);
  }
  return failed(`cannot open the bpfd store in ${dir}: ${why}`, [`check that ${dir} is a directory bpfd can read and write`]);
}
