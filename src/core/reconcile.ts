import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Context } from './context.js';
import { closeFd, tryProgFdById } from '../loader/bpf.js';
import { TMP_MAPS_DIR } from '../loader/object.js';
import type { LinkRecord, ProgramRecord } from '../state/records.js';
import { applyXdpMembers, ifaceKeyString, keyOfLink, memberCounters, orderLinks } from './xdp-interface.js';

export interface Reconciled {
  programs: ProgramRecord[];
  links: LinkRecord[];
  /** records dropped because their kernel object is gone (or from an earlier boot) */
  dropped: number[];
  /** pins removed because no record owns them */
  orphans: string[];
}

function alive(rec: ProgramRecord, bootId: string): boolean {
  if (rec.boot_id !== bootId) return false;
  const fd = tryProgFdById(rec.id);
  if (fd < 0) return false;
  closeFd(fd);
  return true;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Brings store and kernel into agreement before a command acts. With repair (the caller holds
 * the writer lock) stale records are deleted and unowned pins removed; without it (a read that
 * must not wait) stale records are only hidden from the answer.
 */
export function reconcile(ctx: Context, repair: boolean): Reconciled {
  const store = ctx.store();
  const bootId = ctx.bootId();
  const programs: ProgramRecord[] = [];
  const dropped: number[] = [];
  for (const { value } of store.programs.getRange()) {
    if (alive(value, bootId)) programs.push(value);
    else dropped.push(value.id);
  }
  const live = new Set(programs.map((p) => p.id));
  const links = [...store.links.getRange()].map((e) => e.value).filter((l) => live.has(l.prog_id));
  const orphans: string[] = [];
  if (repair) {
    const goneLinks = dropped.length ? [...store.links.getRange()].map((e) => e.value).filter((l) => !live.has(l.prog_id)) : [];
    if (dropped.length) {
      store.root.transactionSync(() => {
        for (const id of dropped) {
          store.programs.remove(id);
          store.blobs.remove(`image:${id}`);
        }
        for (const { key, value } of store.links.getRange()) if (!live.has(value.prog_id)) store.links.remove(key);
      });
    }
    resyncSurvivors(ctx, links, goneLinks);
    orphans.push(...recomposeDiverged(ctx, links));
    orphans.push(...removeOrphanPins(ctx.paths.bpffs, live, programs));
    orphans.push(...removeEmptyInterfaces(ctx.paths.bpffs, links));
  }
  return { programs, links, dropped, orphans };
}

/**
 * A member whose program vanished would leave its slot in a dispatcher that still holds it:
 * recompose the interfaces it was on from the survivors. Interfaces left empty are detached by
 * removeEmptyInterfaces.
 */
function resyncSurvivors(ctx: Context, liveLinks: LinkRecord[], goneLinks: LinkRecord[]): void {
  const touched = new Map<string, LinkRecord>();
  for (const l of goneLinks) touched.set(ifaceKeyString(l), l);
  for (const [key, any] of touched) {
    const survivors = liveLinks.filter((l) => ifaceKeyString(l) === key);
    if (survivors.length === 0) continue;
    try {
      applyXdpMembers(ctx, keyOfLink(any), orderLinks(survivors), any.mode);
    } catch (e) {
      process.stderr.write(`bpfd: warning: could not recompose ${any.iface} without vanished programs: ${(e as Error).message}\n`);
    }
  }
}

function removeOrphanPins(bpffs: string, live: Set<number>, programs: ProgramRecord[]): string[] {
  const removed: string[] = [];
  const progDir = path.join(bpffs, 'progs');
  if (existsSync(progDir)) {
    for (const name of readdirSync(progDir)) {
      if (!live.has(Number(name))) {
        rmSync(path.join(progDir, name), { force: true });
        removed.push(path.join(progDir, name));
      }
    }
  }
  const mapsDir = path.join(bpffs, 'maps');
  if (existsSync(mapsDir)) {
    const inUse = new Set(programs.map((p) => p.maps.pin_path));
    for (const name of readdirSync(mapsDir)) {
      const full = path.join(mapsDir, name);
      const tmp = TMP_MAPS_DIR.exec(name);
      const stale = tmp ? !pidAlive(Number(tmp[1])) : /^\d+$/.test(name) && !inUse.has(full) && !live.has(Number(name));
      if (stale) {
        rmSync(full, { recursive: true, force: true });
        removed.push(full);
      }
    }
  }
  return removed;
}

/** An interface dir whose programs are all gone holds a link nobody manages: detach it. */
function removeEmptyInterfaces(bpffs: string, links: LinkRecord[]): string[] {
  const dir = path.join(bpffs, 'xdp');
  if (!existsSync(dir)) return [];
  const used = new Set(links.map((l) => `${l.netns_ino}-${l.ifindex}`));
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!used.has(name)) {
      rmSync(path.join(dir, name), { recursive: true, force: true });
      removed.push(path.join(dir, name));
    }
  }
  return removed;
}

/**
 * A process killed between changing a dispatcher and recording the change leaves the kernel
 * running a membership the store does not know. The dispatcher's counter map names the links it
 * runs; where they differ from the records, the records win (the change was never reported as
 * done) and the interface is recomposed from them.
 */
function recomposeDiverged(ctx: Context, links: LinkRecord[]): string[] {
  const fixed: string[] = [];
  const byIface = new Map<string, LinkRecord[]>();
  for (const l of links) byIface.set(ifaceKeyString(l), [...(byIface.get(ifaceKeyString(l)) ?? []), l]);
  for (const [key, recorded] of byIface) {
    const running = [...memberCounters(ctx, keyOfLink(recorded[0])).keys()].sort((a, b) => a - b);
    const wanted = recorded.map((l) => l.id).sort((a, b) => a - b);
    if (running.length === wanted.length && running.every((id, i) => id === wanted[i])) continue;
    try {
      applyXdpMembers(ctx, keyOfLink(recorded[0]), orderLinks(recorded), recorded[0].mode);
      fixed.push(`${recorded[0].iface} (${key}): recomposed with links ${wanted.join(', ')} (was running ${running.join(', ') || 'none'})`);
    } catch (e) {
      process.stderr.write(`bpfd: warning: could not recompose ${recorded[0].iface}: ${(e as Error).message}\n`);
    }
  }
  return fixed;
}
