import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, ftruncateSync, writeSync } from 'node:fs';
import { busy, failed } from '../base/errors.js';
import { lockFilePath } from './lock-state.js';
import { nowMs } from '../base/timings.js';
import { lastErrno, libc } from '../loader/lib.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const c_flock = libc.func('int flock(int fd, int op)');

export interface HostLock {
  release(): void;
  /** milliseconds spent waiting for it */
  waitedMs: number;
  /**
   * The previous holder died holding it (its name was still in the lock file): the kernel may run
   * what the store does not record, and this holder must look at the kernel before it acts.
   */
  previousHolderDied: boolean;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * The host-wide writer lock: flock on a file in the runtime dir. The kernel drops it when the
 * holder dies, so a killed bpfd never leaves a stale lock behind. The holder writes its pid and
 * command into the file so that a waiter who gives up can say who is in the way.
 */
export function acquireHostLock(runtimeDir: string, timeoutMs: number, what: string): HostLock | null {
  mkdirSync(runtimeDir, { recursive: true, mode: 0o755 });
  const file = lockFilePath(runtimeDir);
  const fd = openSync(file, 'a+', 0o600);
  const start = nowMs();
  let delay = 1;
  for (;;) {
    if (c_flock(fd, LOCK_EX | LOCK_NB) === 0) break;
    const errno = lastErrno();
    if (errno !== EWOULDBLOCK) {
      closeSync(fd);
      throw failed(`cannot lock ${file}: errno ${errno}`);
    }
    const waited = nowMs() - start;
    if (waited >= timeoutMs) {
      closeSync(fd);
      if (timeoutMs === 0) return null;
      const holder = readHolder(file);
      throw busy(
        `timed out after ${(timeoutMs / 1000).toFixed(1)} s waiting for the bpfd lock ${file}: held by ${holder}`,
        ['another bpfd command is changing programs; wait for it, or raise --lock-timeout'],
      );
    }
    Atomics.wait(sleeper, 0, 0, Math.min(delay, timeoutMs - waited));
    delay = Math.min(delay * 2, 25);
  }
  const waitedMs = nowMs() - start;
  const previousHolderDied = fstatSync(fd).size > 0;
  ftruncateSync(fd, 0);
  writeSync(fd, JSON.stringify({ pid: process.pid, command: what, since: new Date().toISOString() }), 0);
  let released = false;
  return {
    waitedMs,
    previousHolderDied,
    release() {
      if (released) return;
      released = true;
      // An empty lock file says the last holder finished: see lock-state.ts.
      ftruncateSync(fd, 0);
      c_flock(fd, LOCK_UN);
      closeSync(fd);
    },
  };
}

function readHolder(file: string): string {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; command: string; since: string };
    return `pid ${h.pid} (${h.command}, since ${h.since})`;
  } catch {
    return 'another process (holder unknown)';
  }
}
