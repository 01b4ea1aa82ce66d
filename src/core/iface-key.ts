import type { XdpLinkRecord } from '../state/records.js';

// Apart from dispatcher-members.ts, which reaches the kernel (and loads koffi): reads that answer from
// the store alone need these too.

export interface IfaceKey {
  iface: string;
  ifindex: number;
  netnsIno: number;
  netns: string | null;
}

export const ifaceKeyString = (k: { netns_ino: number; ifindex: number } | IfaceKey) =>
  'netnsIno' in k ? `${k.netnsIno}-${k.ifindex}` : `${k.netns_ino}-${k.ifindex}`;

export const keyOfLink = (l: XdpLinkRecord): IfaceKey => ({ iface: l.iface, ifindex: l.ifindex, netnsIno: l.netns_ino, netns: l.netns });

/** Priority ascending, ties in attach order: the order programs run in (as the planner orders). */
export function orderLinks<T extends { priority: number; seq: number }>(links: T[]): T[] {
  return [...links].sort((a, b) => a.priority - b.priority || a.seq - b.seq);
}
