import type { Context } from './context.js';
import { failed } from '../base/errors.js';
import { decodeImage, type RelocatableImage } from '../dispatcher/image.js';
import { readMemberCounters, readRunningLinkIds, syncXdpInterface, type XdpMode } from '../dispatcher/xdp-dispatcher.js';
import type { ActionCounts } from '../dispatcher/counters.js';
import { inNetns } from '../loader/netns.js';
import type { XdpLinkRecord } from '../state/records.js';
import type { IfaceKey } from './iface-key.js';

export { ifaceKeyString, keyOfLink, orderLinks, type IfaceKey } from './iface-key.js';

/**
 * Makes the interface's dispatcher run exactly `links`, composed from the members' stored
 * relocatable images (`fresh` supplies images not yet committed, for a load in progress).
 * Runs inside the interface's netns. Returns the mode the interface runs in.
 */
export function applyXdpMembers(ctx: Context, key: IfaceKey, links: XdpLinkRecord[], mode: XdpMode | undefined, fresh?: Map<number, RelocatableImage>): XdpMode {
  const store = ctx.store();
  const members = links.map((l) => {
    let image = fresh?.get(l.prog_id);
    if (!image) {
      const blob = store.memberImage(l.prog_id);
      if (!blob) {
        throw failed(`program ${l.prog_id} cannot run in the XDP dispatcher: bpfd has no composable image of it`, [
          'it was loaded from an object the dispatcher cannot compose; unload it and load a program without that construct',
        ]);
      }
      image = decodeImage(blob);
    }
    return { linkId: l.id, progId: l.prog_id, priority: l.priority, seq: l.seq, proceedOn: l.proceed_on, image };
  });
  const res = inNetns(key.netns, () =>
    syncXdpInterface({ bpffs: ctx.paths.bpffs, ifindex: key.ifindex, netnsIno: key.netnsIno, iface: key.iface, mode, members }),
  );
  return res.mode;
}

/** Per-link packet and action counts of an interface's dispatcher. */
export function memberCounters(ctx: Context, key: IfaceKey): Map<number, ActionCounts> {
  return readMemberCounters({ bpffs: ctx.paths.bpffs, ifindex: key.ifindex, netnsIno: key.netnsIno });
}

/** Link ids the interface's dispatcher runs. */
export function runningLinkIds(ctx: Context, key: IfaceKey): number[] {
  return readRunningLinkIds({ bpffs: ctx.paths.bpffs, ifindex: key.ifindex, netnsIno: key.netnsIno });
}
