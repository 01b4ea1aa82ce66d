import type { LinkRecord, PendingRestore, ProgramRecord, XdpAction } from '../state/records.js';
import { orderLinks } from './iface-key.js';
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

export interface LinkView {
  id: number;
  iface: string;
  ifindex: number;
  netns: string | null;
  priority: number;
  position: number;
  proceed_on: XdpAction[];
  mode: 'skb' | 'drv';
  /** packets this program saw on this link and what it returned, from the dispatcher (get only) */
  counters?: ActionCounts;
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

/** Position of a link = its rank among the links on the same interface. */
export function positions(allLinks: LinkRecord[]): Map<number, number> {
  const byIface = new Map<string, LinkRecord[]>();
  for (const l of allLinks) {
    const k = `${l.netns_ino}-${l.ifindex}`;
    byIface.set(k, [...(byIface.get(k) ?? []), l]);
  }
  const pos = new Map<number, number>();
  for (const group of byIface.values()) orderLinks(group).forEach((l, i) => pos.set(l.id, i));
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
    links: mine.map((l) => ({
      id: l.id,
      iface: l.iface,
      ifindex: l.ifindex,
      netns: l.netns,
      priority: l.priority,
      position: pos.get(l.id) ?? 0,
      proceed_on: l.proceed_on,
      mode: l.mode,
      ...(counters?.has(l.id) ? { counters: counters.get(l.id) } : {}),
    })),
    bytecode: p.bytecode,
    owner: p.owner,
    metadata: p.metadata,
    maps: { ...p.maps, names: p.map_names, used_by: usedBy },
    application: p.application,
    loaded_at: p.loaded_at,
    ...(kernel ? { kernel } : {}),
  };
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
  links: Array<Pick<LinkView, 'id' | 'iface' | 'netns' | 'priority' | 'proceed_on' | 'mode'>>;
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
    links: orderLinks(links).map((l) => ({ id: l.id, iface: l.iface, netns: l.netns, priority: l.priority, proceed_on: l.proceed_on, mode: l.mode })),
    bytecode: p.bytecode,
    owner: p.owner,
    metadata: p.metadata,
    application: p.application,
    loaded_at: p.loaded_at,
  };
}
