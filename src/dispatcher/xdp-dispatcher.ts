import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Errno, KernelError } from '../base/errors.js';
import { BpfAttachType, BpfFlag } from '../loader/abi.js';
import {
  closeFd,
  linkCreate,
  linkDetach,
  linkInfo,
  linkUpdate,
  objGet,
  objPin,
  progFdById,
  progInfo,
  tryObjGet,
} from '../loader/bpf.js';
import { composeAndLoad } from './compose.js';
import {
  type ActionCounts,
  assignCounterIndexes,
  countsFor,
  createCountersMap,
  createMetaMap,
  readCounterSums,
  readMeta,
  readOwnerLinkIds,
  writeMode,
  writeOwner,
} from './counters.js';
import type { RelocatableImage } from './image.js';
import { checkModeJoin, planSlots, type PlanMember, type XdpMode } from './planner.js';

/**
 * One interface's XDP dispatcher in the kernel: composed from its members, attached through a
 * bpf_link pinned at a stable path, and replaced atomically on every change. Everything it
 * needs is in the arguments and under `<bpffs>/xdp/<netnsIno>-<ifindex>/`:
 *   link      the bpf_link (its pin is what keeps the dispatcher attached)
 *   counters  per-CPU member counters
 *   meta      which link owns which counter block, and the attach mode
 */

export type { XdpMode };

export interface XdpMember extends PlanMember {
  image: RelocatableImage;
}

export interface XdpIfaceKey {
  bpffs: string;
  ifindex: number;
  netnsIno: number;
}

export interface SyncXdpOptions extends XdpIfaceKey {
  /** for messages */
  iface: string;
  /** requested mode; undefined = drv, falling back to skb (only matters when attaching) */
  mode: XdpMode | undefined;
  members: XdpMember[];
}

export interface SyncXdpResult {
  /** kernel id of the dispatcher now running; null when the interface was left without one */
  dispatcherProgId: number | null;
  mode: XdpMode;
  /** what runs, in order */
  slots: Array<{ linkId: number; progId: number; position: number; inlined: boolean }>;
}

export const xdpIfaceDir = (k: XdpIfaceKey) => path.join(k.bpffs, 'xdp', `${k.netnsIno}-${k.ifindex}`);
const pins = (k: XdpIfaceKey) => {
  const dir = xdpIfaceDir(k);
  return { dir, link: path.join(dir, 'link'), counters: path.join(dir, 'counters'), meta: path.join(dir, 'meta') };
};

/**
 * Makes the kernel run exactly `members` on the interface. Must run in the interface's netns
 * (ifindex is resolved there). Composes and loads a new revision first; only then attaches it
 * (first member) or swaps it in with bpf_link_update(BPF_F_REPLACE, old program), so any
 * failure leaves the previous revision running and nothing new pinned. An empty member list
 * detaches and removes the interface's directory.
 */
export function syncXdpInterface(opts: SyncXdpOptions): SyncXdpResult {
  const p = pins(opts);
  let existingLink = tryObjGet(p.link);
  if (existingLink >= 0 && linkInfo(existingLink).ifindex === 0) {
    // The interface went away under the link (the kernel detached it): start over.
    closeFd(existingLink);
    rmSync(p.dir, { recursive: true, force: true });
    existingLink = -1;
  }
  if (opts.members.length === 0) return detachAll(opts, existingLink);

  const slots = planSlots(opts.iface, opts.members);
  const fds: number[] = [];
  const keep = (fd: number) => (fds.push(fd), fd);
  if (existingLink >= 0) keep(existingLink);
  try {
    // A link without its maps (an older bpfd pinned only the link here) gets fresh ones,
    // pinned once the swap succeeded.
    const pinnedCounters = existingLink >= 0 ? tryObjGet(p.counters) : -1;
    const pinnedMeta = existingLink >= 0 ? tryObjGet(p.meta) : -1;
    const countersFd = keep(pinnedCounters >= 0 ? pinnedCounters : createCountersMap());
    const metaFd = keep(pinnedMeta >= 0 ? pinnedMeta : createMetaMap());
    const meta = readMeta(metaFd);
    if (existingLink >= 0) checkModeJoin(opts.iface, meta.mode, opts.mode);
    const linkIds = slots.map((s) => s.member.linkId);
    const { index, writes } = assignCounterIndexes(meta, readCounterSums(countersFd), linkIds);

    const composed = composeAndLoad({
      slots: slots.map((s) => ({ image: s.member.image, mask: s.mask, counterIndex: index.get(s.member.linkId)! })),
      countersFd,
      name: 'bpfd_xdp',
    });
    keep(composed.fd);
    // New owners are recorded before the swap (their baselines must predate their first count);
    // released blocks only after it, while the old revision may still be counting into them.
    const claims = writes.filter(([, r]) => r.linkId !== 0);
    const releases = writes.filter(([, r]) => r.linkId === 0);
    for (const [i, r] of claims) writeOwner(metaFd, i, r);

    let mode: XdpMode;
    if (existingLink >= 0) {
      const oldProgFd = keep(progFdById(linkInfo(existingLink).progId));
      linkUpdate(existingLink, composed.fd, oldProgFd);
      mode = meta.mode ?? opts.mode ?? 'drv';
      if (pinnedCounters < 0) objPin(countersFd, p.counters);
      if (pinnedMeta < 0) {
        writeMode(metaFd, mode);
        objPin(metaFd, p.meta);
      }
    } else {
      mode = attachNew(opts, p, composed.fd, countersFd, metaFd);
    }
    for (const [i, r] of releases) writeOwner(metaFd, i, r);
    return {
      dispatcherProgId: progIdOf(composed.fd),
      mode,
      slots: slots.map((s, n) => ({ linkId: s.member.linkId, progId: s.member.progId, position: s.position, inlined: composed.inlined[n] })),
    };
  } finally {
    for (const fd of fds) closeFd(fd);
  }
}

function attachNew(opts: SyncXdpOptions, p: ReturnType<typeof pins>, progFd: number, countersFd: number, metaFd: number): XdpMode {
  const tries: Array<[XdpMode, number]> =
    opts.mode === 'skb' ? [['skb', BpfFlag.XDP_FLAGS_SKB_MODE]] : opts.mode === 'drv' ? [['drv', BpfFlag.XDP_FLAGS_DRV_MODE]] : [['drv', BpfFlag.XDP_FLAGS_DRV_MODE], ['skb', BpfFlag.XDP_FLAGS_SKB_MODE]];
  let errno = 0;
  for (const [mode, flags] of tries) {
    const linkFd = linkCreate(progFd, opts.ifindex, BpfAttachType.XDP, flags);
    if (linkFd < 0) {
      errno = -linkFd;
      if (errno === Errno.EBUSY) break; // someone else's program is there
      continue;
    }
    try {
      writeMode(metaFd, mode);
      // Pin the maps before the link: a link pin without its maps would be a dispatcher no
      // later process could rebuild.
      mkdirSync(p.dir, { recursive: true });
      objPin(countersFd, p.counters);
      objPin(metaFd, p.meta);
      objPin(linkFd, p.link);
      return mode;
    } catch (e) {
      rmSync(p.dir, { recursive: true, force: true });
      throw e;
    } finally {
      closeFd(linkFd); // without its pin, closing the link detaches it
    }
  }
  if (errno === Errno.EBUSY) {
    throw new KernelError(`attach XDP to ${opts.iface}`, errno, [
      `${opts.iface} already has an XDP program that bpfd does not manage; remove it first (ip link set dev ${opts.iface} xdp off, or xdp-loader unload)`,
    ]);
  }
  throw new KernelError(`attach XDP to ${opts.iface}${opts.mode ? ` in ${opts.mode} mode` : ''}`, errno);
}

function detachAll(opts: SyncXdpOptions, linkFd: number): SyncXdpResult {
  const p = pins(opts);
  let mode: XdpMode = opts.mode ?? 'drv';
  if (linkFd >= 0) {
    try {
      const metaFd = tryObjGet(p.meta);
      if (metaFd >= 0) {
        mode = readMeta(metaFd).mode ?? mode;
        closeFd(metaFd);
      }
      // Detach explicitly: another process holding the link open must not keep it attached.
      linkDetach(linkFd);
    } finally {
      closeFd(linkFd);
    }
  }
  rmSync(p.dir, { recursive: true, force: true });
  return { dispatcherProgId: null, mode, slots: [] };
}

const progIdOf = (progFd: number) => progInfo(progFd).id;

export interface DispatcherInfo {
  progId: number;
  linkId: number;
  mode: XdpMode | null;
}

/** The dispatcher currently attached to the interface, or null (none, or its interface is gone). */
export function dispatcherInfo(k: XdpIfaceKey): DispatcherInfo | null {
  const p = pins(k);
  const linkFd = tryObjGet(p.link);
  if (linkFd < 0) return null;
  try {
    const li = linkInfo(linkFd);
    if (li.ifindex === 0) return null; // the interface is gone; the link is a leftover
    const metaFd = tryObjGet(p.meta);
    let mode: XdpMode | null = null;
    if (metaFd >= 0) {
      mode = readMeta(metaFd).mode;
      closeFd(metaFd);
    }
    return { progId: li.progId, linkId: li.id, mode };
  } finally {
    closeFd(linkFd);
  }
}

/**
 * Links the interface's dispatcher runs, from its meta map alone: what a consistency check
 * needs, without reading every CPU's counters. Empty when the interface has no dispatcher.
 */
export function readRunningLinkIds(k: XdpIfaceKey): number[] {
  const metaFd = tryObjGet(pins(k).meta);
  if (metaFd < 0) return [];
  try {
    return readOwnerLinkIds(metaFd);
  } finally {
    closeFd(metaFd);
  }
}

/**
 * Per-member counts (packets and per action, summed over CPUs) since each link joined the
 * interface, keyed by link id. Empty when the interface has no dispatcher.
 */
export function readMemberCounters(k: XdpIfaceKey): Map<number, ActionCounts> {
  const p = pins(k);
  const out = new Map<number, ActionCounts>();
  const countersFd = tryObjGet(p.counters);
  if (countersFd < 0) return out;
  try {
    const metaFd = objGet(p.meta);
    try {
      const meta = readMeta(metaFd);
      const sums = readCounterSums(countersFd);
      meta.owners.forEach((o, i) => {
        if (o.linkId) out.set(o.linkId, countsFor(sums, o, i));
      });
    } finally {
      closeFd(metaFd);
    }
  } finally {
    closeFd(countersFd);
  }
  return out;
}
