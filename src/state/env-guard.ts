/**
 * Serialises, across processes, opening and closing the LMDB environment of one state dir.
 *
 * Why: LMDB keeps its reader and writer mutexes in lock.mdb, shared by every process that has the
 * environment open. The last process to close it destroys those mutexes (it finds it can take
 * lock.mdb's exclusive fcntl lock). A process opening the environment at that moment waits for a
 * shared lock while the closer holds the exclusive one, then gets it, concludes that someone else
 * set the region up, and uses the destroyed mutexes: its first transaction fails with EINVAL
 * (lmdb-js reports it as "No transaction to renew"). Seen as about one command in a few hundred
 * when eight bpfd commands run at once. With opens and closes taken in turn, an opener either
 * comes first (the closer then is not the last and destroys nothing) or after (it finds no one
 * and initialises the region itself).
 *
 * The guard takes a lock and returns its release. The state layer has no way to lock a file on its
 * own (node:fs has no flock); the core provides one (core/store-open.ts). Without one, opens and
 * closes are not serialised, as in node's unit tests.
 */
export type EnvGuard = (lockFile: string) => () => void;

let guard: EnvGuard | null = null;

export function useEnvGuard(g: EnvGuard): void {
  guard = g;
}

/** The file the guard locks, beside LMDB's own files. */
export const ENV_LOCK_FILE = 'env.lock';

// How many holds of each lock file this process has: a flock is per open file, so taking the
// guard again through a second descriptor while holding it (an exit during a close) would wait on
// itself. A nested take shares the first hold; the last release lets go.
const holds = new Map<string, { count: number; release: () => void }>();

/** Takes the guard (when there is one); returns its release. */
export function takeGuard(lockFile: string): () => void {
  if (!guard) return () => {};
  const held = holds.get(lockFile) ?? { count: 0, release: () => {} };
  if (held.count === 0) held.release = guard(lockFile);
  held.count++;
  holds.set(lockFile, held);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--held.count === 0) {
      holds.delete(lockFile);
      held.release();
    }
  };
}

/** Runs fn with the guard held. */
export function guarded<T>(lockFile: string, fn: () => T): T {
  const release = takeGuard(lockFile);
  try {
    return fn();
  } finally {
    release();
  }
}

/**
 * Takes the guard for the rest of the process, from its first 'exit' listener: lmdb-js closes
 * every environment it opened from an 'exit' listener of its own, registered when it opened the
 * first one, so that close runs with the guard held. The kernel releases the lock when the
 * process is gone.
 */
export function guardCloseAtExit(lockFile: string, beforeClose: () => void): void {
  if (!guard) return;
  process.prependListener('exit', () => {
    takeGuard(lockFile); // never released: the process ends
    beforeClose();
  });
}
