import { closeSync, openSync } from 'node:fs';

/** flock(2) and the errno it left: what the runtime offers to call it (the entry point says how). */
export type Flock = (fd: number, op: number) => { ok: true } | { ok: false; errno: number };

let flock: (() => Flock | null) | null = null;

/**
 * How to call flock(2) from now on. The executable's entry point provides it through the
 * runtime's own FFI (less to load than koffi, which a command that only reads the store, like
 * `bpfd list`, never needs otherwise); it is looked up on first use.
 */
export function useFlock(get: () => Flock): void {
  let cached: Flock | null | undefined;
  flock = () => {
    if (cached === undefined) {
      try {
        cached = get();
      } catch {
        cached = null; // no FFI here after all: go on without the lock, as holdExclusive promises
      }
    }
    return cached;
  };
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;
const EINTR = 4;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * An exclusive flock on `file` (created mode 0600 when missing), waited for up to `timeoutMs`.
 * Returns its release, or null when there is no way to call flock here (node's unit tests), or
 * the file cannot be opened or locked in time: callers use it to narrow a race, and go on
 * without it rather than fail.
 */
export function holdExclusive(file: string, timeoutMs: number): (() => void) | null {
  const call = flock?.();
  if (!call) return null;
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
  for (;;) {
    const r = call(fd, LOCK_EX | LOCK_NB);
    if (r.ok) break;
    if ((r.errno !== EWOULDBLOCK && r.errno !== EINTR) || Date.now() >= deadline) {
      closeSync(fd);
      return null;
    }
    Atomics.wait(sleeper, 0, 0, 1);
  }
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    call(fd, LOCK_UN);
    closeSync(fd);
  };
}
