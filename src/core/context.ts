import { readFileSync } from 'node:fs';
import { passwdEntry } from '../base/accounts.js';
import { resolvePaths, type Paths } from '../base/paths.js';
import { busy, failed } from '../base/errors.js';
import type { HostLock } from './lock.js';
import { mark, nowMs, record, timedSync } from '../base/timings.js';
import { bootIdOverride } from '../base/test-hooks.js';
import type { Store } from '../state/store.js';
import { openStore } from './store-open.js';

export interface Subject {
  uid: number;
  gid: number;
  groups: number[];
  username: string;
  pid: number;
  via: 'cli' | 'socket' | 'sudo' | 'tcp';
}

/** Everything an operation needs: where things are, the store, who asks, the lock policy. */
export interface Context {
  paths: Paths;
  subject: Subject;
  lockTimeoutMs: number;
  /** the command line or RPC, for the lock holder message */
  what: string;
  store(): Store;
  bootId(): string;
  /** Take the writer lock for the duration of fn. */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /** Run fn under the writer lock if it is free right now; null when another process holds it. */
  tryExclusive<T>(fn: () => Promise<T>): Promise<T | null>;
  /** Under the lock: whether the holder before this one died holding it (lock.ts). */
  previousHolderDied(): boolean;
}

let bootIdCache: string | null = null;
export function currentBootId(): string {
  if (bootIdCache === null) bootIdCache = bootIdOverride() ?? readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return bootIdCache;
}

export function cliSubject(): Subject {
  const uid = process.getuid?.() ?? -1;
  // The name comes from the passwd database, not os.userInfo(): Bun's answers "unknown" for
  // every uid (1.4.5), and the policy and the decision log judge people by name.
  const username = passwdEntry({ uid })?.name ?? String(uid);
  return {
    uid,
    gid: process.getgid?.() ?? -1,
    groups: process.getgroups?.() ?? [],
    username,
    pid: process.pid,
    via: 'cli',
  };
}

export function createContext(opts: { subject?: Subject; lockTimeoutMs?: number; what?: string; env?: NodeJS.ProcessEnv } = {}): Context {
  const paths = resolvePaths(opts.env);
  let store: Store | null = null;
  let held: HostLock | null = null;
  const ctx: Context = {
    paths,
    subject: opts.subject ?? cliSubject(),
    lockTimeoutMs: opts.lockTimeoutMs ?? 30_000,
    what: opts.what ?? 'bpfd',
    store() {
      if (!store) store = timedSync('store open', () => openStore(paths.stateDir));
      return store;
    },
    bootId: currentBootId,
    async exclusive<T>(fn: () => Promise<T>): Promise<T> {
      const r = await withLock(ctx.lockTimeoutMs, fn);
      if (r === null) throw busy('the bpfd lock is held by another bpfd command', ['wait for it, or raise --lock-timeout']);
      return r.value;
    },
    previousHolderDied: () => held?.previousHolderDied ?? true,
    async tryExclusive<T>(fn: () => Promise<T>): Promise<T | null> {
      const r = await withLock(0, fn);
      return r === null ? null : r.value;
    },
  };
  async function withLock<T>(timeoutMs: number, fn: () => Promise<T>): Promise<{ value: T } | null> {
      if (held) return { value: await fn() };
      // lock.ts loads koffi (flock): only commands that take the lock pay for it
      const { acquireHostLock } = await import('./lock.js');
      const lock = acquireHostLock(paths.runtimeDir, timeoutMs, ctx.what);
      if (!lock) return null;
      held = lock;
      mark('lock taken');
      const since = nowMs();
      try {
        return { value: await fn() };
      } finally {
        held = null;
        lock.release();
        record('lock wait', lock.waitedMs);
        record('lock held', nowMs() - since);
      }
  }
  return ctx;
}

/** Mutating commands need root: say which privilege is missing instead of failing deep inside. */
export function requireRoot(action: string, why = 'loading and attaching eBPF programs requires CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN'): void {
  if (process.getuid?.() !== 0) {
    throw failed(`${action} needs root: ${why}`, ['run it with sudo']);
  }
}
