import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from './context.js';
import { lockFilePath } from './lock-state.js';
import type { Reconciled } from './reconcile.js';

/**
 * What a read found, kept for the next read in the same process while nothing it depends on has
 * changed. A one-shot command reads once and never hits it; the service answers List after List
 * from it. Every change to the store happens under the writer lock, and taking and releasing the
 * lock rewrites the lock file, so its size and mtime stamp every write; the pins' directories are
 * listed again on each read, as the uncached read does, so a pin removed behind bpfd's back is
 * seen at once. Anything that cannot be stamped (no lock file yet) is not cached.
 */
let cached: { key: string; stamp: string; state: Reconciled } | null = null;

export function readStamp(ctx: Context): string | null {
  let st;
  try {
    st = statSync(lockFilePath(ctx.paths.runtimeDir), { bigint: true });
  } catch {
    return null;
  }
  if (st.size !== 0n) return null;
  const list = (d: string) => {
    try {
      return readdirSync(d).join(',');
    } catch {
      return '';
    }
  };
  // the kernel's multigrain timestamps (6.13+) make each change of a stat'ed file visible in them
  return [st.mtimeNs, st.ctimeNs, st.ino, ctx.bootId(), ...['progs', 'maps', 'xdp'].map((d) => list(path.join(ctx.paths.bpffs, d)))].join('|');
}

export function cachedRead(ctx: Context, stamp: string | null): Reconciled | null {
  const key = `${ctx.paths.stateDir}\u0000${ctx.paths.runtimeDir}`;
  return stamp !== null && cached?.key === key && cached.stamp === stamp ? cached.state : null;
}

export function keepRead(ctx: Context, stamp: string | null, state: Reconciled): void {
  if (stamp !== null) cached = { key: `${ctx.paths.stateDir}\u0000${ctx.paths.runtimeDir}`, stamp, state };
}
