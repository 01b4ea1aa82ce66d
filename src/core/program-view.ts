import type { Context } from './context.js';
import { keyOfLink } from './iface-key.js';
import type { Reconciled } from './reconcile.js';
import { mapUsers, positions, programView, type KernelView, type ProgramView } from './view.js';
import { memberCounters } from './dispatcher-members.js';
import type { ActionCounts } from '../dispatcher/counters.js';
import { closeFd, progInfo, tryProgFdById } from '../loader/bpf.js';
import { kernelViewOf } from './kernel-programs.js';

/** One program as `get` shows it: the record, with what the kernel and its dispatchers say. */
export function viewOf(ctx: Context, id: number, state: Pick<Reconciled, 'programs' | 'links'>): ProgramView {
  const prog = state.programs.find((p) => p.id === id)!;
  // counters come from the dispatcher of each link's kind: only XDP links have one so far
  const counters = new Map<number, ActionCounts>();
  for (const l of state.links.filter((x) => x.prog_id === id)) {
    if (l.kind !== 'xdp') continue;
    const c = memberCounters(ctx, keyOfLink(l)).get(l.id);
    if (c) counters.set(l.id, c);
  }
  return programView(prog, state.links, positions(state.links), kernelView(id), counters, mapUsers(prog, state.programs));
}

function kernelView(id: number): KernelView | undefined {
  const fd = tryProgFdById(id);
  if (fd < 0) return undefined;
  try {
    return kernelViewOf(progInfo(fd));
  } finally {
    closeFd(fd);
  }
}
