import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { progGone, type Env } from './bpfd.js';

/**
 * What a reboot does to bpfd, without rebooting: every kernel object it made is gone and the
 * boot id is new. Unmounting the env's private bpffs drops every pin, and with the pins the last
 * references to its programs, maps and links (an XDP link detaches when released); the caller
 * names the kernel ids that must be gone afterwards. BPFD_BOOT_ID (src/base/test-hooks.ts) then
 * gives every later command of this env the new boot id.
 */
export function simulateReboot(env: Env, progIds: number[]): string {
  const u = spawnSync('umount', [env.bpffs], { encoding: 'utf8' });
  if (u.status !== 0) throw new Error(`simulated reboot: umount ${env.bpffs}: ${u.stderr}`);
  const survivors = progIds.filter((id) => !progGone(id));
  if (survivors.length) throw new Error(`simulated reboot: programs ${survivors.join(', ')} are still in the kernel`);
  const bootId = randomUUID();
  env.env.BPFD_BOOT_ID = bootId;
  return bootId;
}

/** Kernel id of the XDP program attached to the interface (bpfd's dispatcher), or null. */
export function xdpProgOn(ns: string, iface: string): number | null {
  const r = spawnSync('ip', ['-n', ns, '-d', 'link', 'show', iface], { encoding: 'utf8' });
  const m = /prog\/xdp id (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : null;
}
