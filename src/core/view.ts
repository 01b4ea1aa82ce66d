import type { LinkKind, LinkRecord, PendingRestore, ProgramRecord, XdpAction, XdpLinkRecord } from '../state/records.js';
import { ifaceKeyString, orderLinks } from './iface-key.js';
import type { ActionCounts } from '../dispatcher/counters.js';

/** A program as the CLI prints it and scripts read it (shared/CLI.md). */
export interface ProgramView {
  id: number;
  name: string;
  type: string;
  links: LinkView[];
  bytecode: ProgramRecord['bytecode'];
  owner: ProgramRecord['owner'];
  metadata: Record<string, string>;
  /** used_by: the programs loaded now that use these maps, the owner included (bpfman's map_used_by) */
  maps: ProgramRecord['maps'] & { names: string[]; used_by: number[] };
  application: string | null;
  loaded_at: string;
  kernel?: KernelView;
}

/** What every link view has, whatever the link attaches to; the fields of its `kind` follow. */
interface LinkViewBase {
  id: number;
  kind: LinkKind;
  /** rank among the links on the same attach point: the order they run in */
  position: number;
}

/** An XDP link: a place in an interface's dispatcher. */
export interface XdpLinkView extends LinkViewBase {
  kind: 'xdp';
  iface: string;
  ifindex: number;
  netns: string | null;
  priority: number;
  proceed_on: XdpAction[];
  mode: 'skb' | 'drv';
  /** packets this program saw on this link and what it returned, from the dispatcher (get only) */
  counters?: ActionCounts;
}

/** A link of any kind, as views show it: narrow on `kind` before reading kind-specific fields. */
export type LinkView = XdpLinkView;

/** Where a link attaches, as one string: links with the same key are ordered together. */
export function attachPointKey(l: LinkRecord): string {
  switch (l.kind) {
    case 'xdp':
      return `xdp:${ifaceKeyString(l)}`;
  }
}

/** The interface a link is on, for --iface filters; null for kinds that attach to no interface. */
export function linkIface(l: LinkView | PendingLinkView): string | null {
  switch (l.kind) {
    case 'xdp':
      return l.iface;
  }
}

/** Where a link attaches, as list sorts programs: by kind, then netns and interface for XDP. */
export function linkPlace(l: LinkView | PendingLinkView): string {
  switch (l.kind) {
    case 'xdp':
      return `xdp\u0000${l.netns ?? ''}\u0000${l.iface}`;
  }
}

function xdpLinkView(l: XdpLinkRecord, position: number, counters: ActionCounts | undefined): XdpLinkView {
  return {
    id: l.id,
    kind: 'xdp',
    iface: l.iface,
    ifindex: l.ifindex,
    netns: l.netns,
    priority: l.priority,
    position,
    proceed_on: l.proceed_on,
    mode: l.mode,
    ...(counters ? { counters } : {}),
  };
}

/** A link's view: the fields every link has, and those of its kind. */
export function linkView(l: LinkRecord, position: number, counters?: ActionCounts): LinkView {
  switch (l.kind) {
    case 'xdp':
      return xdpLinkView(l, position, counters);
  }
}

export interface KernelView {
  tag: string;
  gpl_compatible: boolean;
  map_ids: number[];
  btf_id: number;
  bytes_xlated: number;
  bytes_jited: number;
  verified_insns: number;
}

/** Position of a link = its rank among the links on the same attach point. */
export function positions(allLinks: LinkRecord[]): Map<number, number> {
  const byPoint = new Map<string, LinkRecord[]>();
  for (const l of allLinks) {
    const k = attachPointKey(l);
    byPoint.set(k, [...(byPoint.get(k) ?? []), l]);
  }
  const pos = new Map<number, number>();
  for (const group of byPoint.values()) orderLinks(group).forEach((l, i) => pos.set(l.id, i));
  return pos;
}

/** Ids of the programs (of those given) whose maps are the same pins as p's. */
export const mapUsers = (p: ProgramRecord, programs: ProgramRecord[]) => programs.filter((q) => q.maps.pin_path === p.maps.pin_path).map((q) => q.id).sort((a, b) => a - b);

export function programView(p: ProgramRecord, links: LinkRecord[], pos: Map<number, number>, kernel?: KernelView, counters?: Map<number, ActionCounts>, usedBy: number[] = [p.id]): ProgramView {
  const mine = orderLinks(links.filter((l) => l.prog_id === p.id));
  return {
    id: p.id,
    name: p.name,
    type: p.type,
    links: mine.map((l) => linkView(l, pos.get(l.id) ?? 0, counters?.get(l.id))),
    bytecode: p.bytecode,
    owner: p.owner,
    metadata: p.metadata,
    maps: { ...p.maps, names: p.map_names, used_by: usedBy },
    application: p.application,
    loaded_at: p.loaded_at,
    ...(kernel ? { kernel } : {}),
  };
}

/** A link of a program not loaded now: no kernel ifindex, no position yet. */
export type PendingLinkView = Pick<XdpLinkView, 'id' | 'kind' | 'iface' | 'netns' | 'priority' | 'proceed_on' | 'mode'>;

function pendingLinkView(l: LinkRecord): PendingLinkView {
  switch (l.kind) {
    case 'xdp':
      return { id: l.id, kind: 'xdp', iface: l.iface, netns: l.netns, priority: l.priority, proceed_on: l.proceed_on, mode: l.mode };
  }
}

/** A persisted program of an earlier boot, as `list --pending` shows it: not loaded, so no kernel id. */
export interface PendingView {
  /** `<boot_id>/<id>` */
  key: string;
  /** the kernel id it had in that boot */
  previous_id: number;
  boot_id: string;
  name: string;
  type: string;
  links: PendingLinkView[];
  bytecode: ProgramRecord['bytecode'];
  owner: ProgramRecord['owner'];
  metadata: Record<string, string>;
  application: string | null;
  loaded_at: string;
}

export function pendingView({ key, program: p, links }: PendingRestore): PendingView {
  return {
    key,
    previous_id: p.id,
    boot_id: p.boot_id,
    name: p.name,
    type: p.type,
    links: orderLinks(links).map(pendingLinkView),
    bytecode: p.bytecode,
    owner: p.owner,
    metadata: p.metadata,
    application: p.application,
    loaded_at: p.loaded_at,
  };
}
