import type { Context } from './context.js';
import { detect, pendingRestores } from './disagreements.js';
import { notFound } from '../base/errors.js';
import { lastHolderFinished } from './lock-state.js';
import { cachedRead, keepRead, readStamp } from './read-cache.js';
import type { Reconciled } from './reconcile.js';
import type { ProgramRecord } from '../state/records.js';
import { linkIface, linkPlace, mapUsers, pendingView, positions, programView, type LinkView, type PendingLinkView, type PendingView, type ProgramView } from './view.js';

// The read side: list and get. Kept apart from programs.ts so that a read whose records agree
// with the pins loads neither koffi nor the dispatcher, and talks to no kernel.

export interface ListFilter {
  type?: string;
  iface?: string;
  metadata?: Record<string, string>;
}

/** Programs bpfd manages, ordered by interface, then position of their first link. */
export async function list(ctx: Context, filter: ListFilter = {}): Promise<ProgramView[]> {
  return (await listWithRecords(ctx, filter)).views;
}

/** list, with the records the views were made from (the service answers from both). */
export async function listWithRecords(ctx: Context, filter: ListFilter = {}): Promise<{ views: ProgramView[]; records: ProgramRecord[] }> {
  const state = await readState(ctx);
  const pos = positions(state.links);
  const views = state.programs.map((p) => programView(p, state.links, pos, undefined, undefined, mapUsers(p, state.programs))).filter((v) => matches(v, filter));
  const sortKey = (v: ProgramView) => {
    const l = v.links[0];
    return l ? [0, linkPlace(l), l.position, v.id] : [1, '', 0, v.id];
  };
  views.sort((a, b) => {
    const ka = sortKey(a);
    const kb = sortKey(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
    return 0;
  });
  return { views, records: state.programs };
}

/** Persisted programs of earlier boots that `bpfd system restore` would load (list --pending). */
export async function listPending(ctx: Context, filter: ListFilter = {}): Promise<PendingView[]> {
  const views = pendingRestores(await readState(ctx)).map(pendingView).filter((v) => matches(v, filter));
  const sortKey = (v: PendingView) => {
    const l = v.links[0];
    return l ? `0${linkPlace(l)}\u0000${String(l.priority).padStart(4, '0')}\u0000${String(l.id).padStart(10, '0')}` : `1${v.key}`;
  };
  return views.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
}

function matches(v: { type: string; links: Array<LinkView | PendingLinkView>; metadata: Record<string, string> }, filter: ListFilter): boolean {
  if (filter.type && v.type !== filter.type) return false;
  if (filter.iface && !v.links.some((l) => linkIface(l) === filter.iface)) return false;
  return Object.entries(filter.metadata ?? {}).every(([k, val]) => v.metadata[k] === val);
}

/** Kernel ids of the dispatchers bpfd runs: bpfd's own, though not programs a user loaded. */
export async function dispatcherProgIds(ctx: Context): Promise<number[]> {
  const { dispatcherInfo } = await import('../dispatcher/xdp-dispatcher.js');
  const ids = new Set<number>();
  for (const l of ctx.store().links()) {
    const d = dispatcherInfo({ bpffs: ctx.paths.bpffs, ifindex: l.ifindex, netnsIno: l.netns_ino });
    if (d) ids.add(d.progId);
  }
  return [...ids];
}

export async function get(ctx: Context, id: number): Promise<ProgramView> {
  const state = await readState(ctx);
  if (!state.programs.some((p) => p.id === id)) {
    const earlier = pendingRestores(state).find((p) => p.program.id === id);
    if (earlier) {
      throw notFound(`no program with id ${id} is loaded by bpfd: ${earlier.program.name} had that id in an earlier boot and waits to be restored (see: bpfd list --pending; bpfd system restore)`);
    }
    throw notFound(`no program with id ${id} is loaded by bpfd (see: bpfd list)`);
  }
  const { viewOf } = await import('./program-view.js');
  return viewOf(ctx, id, state);
}

/**
 * The records, checked against the kernel as far as a read needs. When the last writer let go
 * of the lock normally (lock-state.ts) and the pins agree with the records, nothing can have
 * changed behind the store's back: the answer comes from the store and one look at the pins,
 * with no lock and no kernel call. Otherwise reads repair when the lock is free right now, and
 * never wait for it.
 */
export async function readState(ctx: Context): Promise<Reconciled> {
  if (lastHolderFinished(ctx.paths.runtimeDir)) {
    const stamp = readStamp(ctx);
    const kept = cachedRead(ctx, stamp);
    if (kept) return kept;
    const d = detect(ctx, { deep: true });
    if (d.findings.every((f) => f.kind === 'pending-restore')) {
      const state = { ...d, repairs: [] };
      // the stamp from before the read: a writer that came in between makes the next read miss
      keepRead(ctx, stamp, state);
      return state;
    }
  }
  const { reconcile } = await import('./reconcile.js');
  if (process.getuid?.() === 0) {
    const repaired = await ctx.tryExclusive(async () => reconcile(ctx, true));
    if (repaired) return repaired;
  }
  return reconcile(ctx, false);
}
