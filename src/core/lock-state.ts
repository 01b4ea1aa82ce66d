import { statSync } from 'node:fs';
import path from 'node:path';

// Kept apart from lock.ts, which loads koffi for flock: a read asks this before it decides
// whether it needs to talk to the kernel at all.

/**
 * Whether the last process that held the writer lock let go of it normally. A holder writes its
 * pid into the lock file and empties it on release, so a non-empty file means either a holder
 * at work now or one that was killed half-way: in both cases the store and the kernel may
 * disagree and a command must look at the kernel. One stat.
 */
export function lastHolderFinished(runtimeDir: string): boolean {
  try {
    return statSync(lockFilePath(runtimeDir)).size === 0;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** The writer lock's file: flock'ed by the holder, which also writes its pid and command in it. */
export const lockFilePath = (runtimeDir: string) => path.join(runtimeDir, 'lock');
