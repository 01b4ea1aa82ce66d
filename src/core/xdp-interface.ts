import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { failedError, KernelError } from './errors.js';
import {
  BPF_XDP, closeFd, linkCreate, linkUpdate, objGet, objPin, tryObjGet, withFd, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE,
} from '../loader/bpf.js';
import { progPinPath } from '../loader/object.js';
import type { XdpLinkRecord } from '../state/records.js';

export interface IfaceKey {
  iface: string;
  ifindex: number;
  netnsIno: number;
  netns: string | null;
}

export const ifaceKeyString = (k: { netns_ino: number; ifindex: number } | IfaceKey) =>
  'netnsIno' in k ? `${k.netnsIno}-${k.ifindex}` : `${k.netns_ino}-${k.ifindex}`;

export const ifaceDir = (bpffs: string, key: string) => path.join(bpffs, 'xdp', key);
export const ifaceLinkPin = (bpffs: string, key: string) => path.join(ifaceDir(bpffs, key), 'link');

/** Priority ascending, ties in attach order: the order programs run in. */
export function orderLinks<T extends { priority: number; seq: number }>(links: T[]): T[] {
  return [...links].sort((a, b) => a.priority - b.priority || a.seq - b.seq);
}

/**
 * Makes the kernel run `members` (already ordered) on one interface, through a bpf_link pinned at
 * a stable path so it outlives this process. Must be called inside the interface's netns.
 */
export function syncXdpInterface(bpffs: string, key: IfaceKey, members: XdpLinkRecord[], mode: 'skb' | 'drv' | undefined): 'skb' | 'drv' {
  const k = ifaceKeyString(key);
  const pin = ifaceLinkPin(bpffs, k);
  if (members.length === 0) {
    // The pin holds the last reference: removing it releases the link and detaches.
    rmSync(ifaceDir(bpffs, k), { recursive: true, force: true });
    return mode ?? 'drv';
  }
  if (members.length > 1) {
    const names = members.map((m) => `program ${m.prog_id} (priority ${m.priority})`).join(', ');
    throw failedError(`interface ${key.iface} would need ${members.length} XDP programs (${names}); this build runs one XDP program per interface`, [
      'unload the program already attached there first',
    ]);
  }
  return withFd(objGet(progPinPath(bpffs, members[0].prog_id)), (progFd) => {
    const linkFd = tryObjGet(pin);
    if (linkFd >= 0) {
      try {
        linkUpdate(linkFd, progFd);
      } finally {
        closeFd(linkFd);
      }
      return members[0].mode;
    }
    const tries: Array<['drv' | 'skb', number]> = mode === 'skb' ? [['skb', XDP_FLAGS_SKB_MODE]] : mode === 'drv' ? [['drv', XDP_FLAGS_DRV_MODE]] : [['drv', XDP_FLAGS_DRV_MODE], ['skb', XDP_FLAGS_SKB_MODE]];
    let lastErr = 0;
    for (const [m, flags] of tries) {
      const fd = linkCreate(progFd, key.ifindex, BPF_XDP, flags);
      if (fd >= 0) {
        try {
          mkdirSync(ifaceDir(bpffs, k), { recursive: true });
          objPin(fd, pin);
        } finally {
          closeFd(fd);
        }
        return m;
      }
      lastErr = -fd;
      if (lastErr === 16 /* EBUSY */) break;
    }
    if (lastErr === 16) {
      throw new KernelError(`attach XDP to ${key.iface}`, lastErr, [
        `${key.iface} already has an XDP program that bpfd does not manage; remove it first (ip link set dev ${key.iface} xdp off, or xdp-loader unload)`,
      ]);
    }
    throw new KernelError(`attach XDP to ${key.iface}${mode ? ` in ${mode} mode` : ''}`, lastErr);
  });
}

export function interfaceAttached(bpffs: string, key: string): boolean {
  return existsSync(ifaceLinkPin(bpffs, key));
}
