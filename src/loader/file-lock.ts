import { closeSync, openSync } from 'node:fs';
import koffi from 'koffi';

// libc alone, not lib.ts: that module opens libbpf too, which the commands that only read the
// store (list) never need.

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const c_flock = koffi.load('libc.so.6').func('int flock(int fd, int op)');
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * An exclusive flock on `file` (created mode 0600 when missing), waited for up to `timeoutMs`.
 * Returns its release, or null when the file cannot be opened or locked in time: callers of this
 * use it to narrow a race, and go on without it rather than fail.
 */
export function holdExclusive(file: string, timeoutMs: number): (() => void) | null {
  let fd: number;
  try {
    fd = openSync(file, 'a', 0o600);
  } catch {
    try {
      fd = openSync(file, 'r');
    } catch {
      return null;
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (c_flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    if (koffi.errno() !== EWOULDBLOCK || Date.now() >= deadline) {
      closeSync(fd);
      return null;
    }
    Atomics.wait(sleeper, 0, 0, 1);
  }
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    c_flock(fd, LOCK_UN);
    closeSync(fd);
  };
}
