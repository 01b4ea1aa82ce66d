import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Context } from './context.js';
import { TMP_MAPS_DIR } from '../loader/pin-names.js';
import type { LinkRecord, PendingRestore, ProgramRecord } from '../state/records.js';
import { ifaceKeyString, keyOfLink, type IfaceKey } from './iface-key.js';
import { damagedRecord, linkRecordProblem, programRecordProblem } from '../state/record-check.js';
import { checkAppMounts, type AppMountFinding, type PinIdentity } from './app-mount-check.js';

/**
 * Where store, pins and kernel disagree. Detection only reads; src/core/repair.ts applies what
 * was found (every command under the writer lock, and `bpfd doctor --fix`), and `bpfd doctor`
 * reports it. Keeping the two apart is what lets doctor show exactly what a repair would do.
 */
export type Finding =
  /** a record of this boot whose program is no longer pinned, so the kernel freed it: the record is dropped */
  | { kind: 'program-gone'; program: ProgramRecord; links: LinkRecord[] }
  /** a record from an earlier boot, not persisted: nothing of it survived the reboot */
  | { kind: 'previous-boot'; program: ProgramRecord; links: LinkRecord[] }
  /** a persisted record from an earlier boot: moved aside to wait for `bpfd system restore` */
  | { kind: 'previous-boot-persisted'; program: ProgramRecord; links: LinkRecord[] }
  /** waiting for `bpfd system restore`; nothing automatic resolves it */
  | { kind: 'pending-restore'; pending: PendingRestore }
  /** a program pin or maps directory no record owns */
  | { kind: 'orphan-pin'; path: string }
  /** maps a load pinned under a temporary name before its process died */
  | { kind: 'temp-dir'; path: string; pid: number }
  /** the dispatcher runs other links than the records name: the records win */
  | { kind: 'dispatcher-diverged'; iface: IfaceKey; links: LinkRecord[]; running: number[] }
  /** an interface's dispatcher link with no recorded members */
  | { kind: 'empty-interface'; path: string }
  /** applications' bpffs mounts and their pins (src/core/app-mount-check.ts) */
  | AppMountFinding;

export type FindingKind = Finding['kind'];

export interface Detection {
  /** records whose programs run in this boot */
  programs: ProgramRecord[];
  /** their links */
  links: LinkRecord[];
  findings: Finding[];
}

/** The link ids an interface's dispatcher runs, read from the kernel (dispatcher-members.ts). */
export type RunningLinks = (ctx: Context, key: IfaceKey) => number[];

/**
 * Sorts the records into live and stale. `deep` also looks at pins, which only a writer (or
 * doctor, or a read deciding whether it may skip the writer's work) needs; given `dispatchers`,
 * it also asks the kernel which links each dispatcher runs. That is passed in rather than
 * imported so that this module, and a read that never reaches the kernel, do not load koffi.
 */
/** A record read for reconcile, or the error naming what is wrong with it (state/record-check.ts). */
function checkedRecord<T>(ctx: Context, what: string, value: T, problem: (v: unknown) => string | null): T {
  const why = problem(value);
  if (why) throw damagedRecord(ctx.paths.stateDir, what, (value as { id?: unknown } | null)?.id, why);
  return value;
}

export function detect(ctx: Context, opts: { deep: boolean; dispatchers?: RunningLinks; pins?: PinIdentity }): Detection {
  const store = ctx.store();
  const bootId = ctx.bootId();
  const allLinks = store.links().map((l) => checkedRecord(ctx, 'link', l, linkRecordProblem));
  const byProgram = new Map<number, LinkRecord[]>();
  for (const l of allLinks) byProgram.set(l.prog_id, [...(byProgram.get(l.prog_id) ?? []), l]);
  const linksOf = (id: number) => byProgram.get(id) ?? [];
  const programs: ProgramRecord[] = [];
  const findings: Finding[] = [];
  // A program's pin is what keeps it alive, and bpfd pins every program it loads: one readdir
  // answers for all records, where asking the kernel would take a bpf() call each.
  const pinned = new Set(listDir(path.join(ctx.paths.bpffs, 'progs')));
  for (const raw of store.programs()) {
    const p = checkedRecord(ctx, 'program', raw, programRecordProblem);
    if (p.boot_id !== bootId) findings.push({ kind: p.persist ? 'previous-boot-persisted' : 'previous-boot', program: p, links: linksOf(p.id) });
    else if (!pinned.has(String(p.id))) findings.push({ kind: 'program-gone', program: p, links: linksOf(p.id) });
    else programs.push(p);
  }
  const live = new Set(programs.map((p) => p.id));
  const links = allLinks.filter((l) => live.has(l.prog_id));
  for (const value of store.pendingRestores()) findings.push({ kind: 'pending-restore', pending: value });
  if (opts.deep) {
    findings.push(...strayPins(ctx.paths.bpffs, pinned, live, programs));
    if (opts.dispatchers) findings.push(...divergedDispatchers(ctx, links, opts.dispatchers));
    findings.push(...emptyInterfaces(ctx.paths.bpffs, links));
    const waiting = new Set(pendingRestores({ programs, links, findings }).map((p) => p.key));
    findings.push(...checkAppMounts(ctx, programs, waiting, opts.pins));
  }
  return { programs, links, findings };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const listDir = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);

function strayPins(bpffs: string, pinned: Set<string>, live: Set<number>, programs: ProgramRecord[]): Finding[] {
  const out: Finding[] = [];
  const progDir = path.join(bpffs, 'progs');
  for (const name of pinned) if (!live.has(Number(name))) out.push({ kind: 'orphan-pin', path: path.join(progDir, name) });
  const mapsDir = path.join(bpffs, 'maps');
  const inUse = new Set(programs.map((p) => p.maps.pin_path));
  for (const name of listDir(mapsDir)) {
    const full = path.join(mapsDir, name);
    const tmp = TMP_MAPS_DIR.exec(name);
    if (tmp) {
      if (!pidAlive(Number(tmp[1]))) out.push({ kind: 'temp-dir', path: full, pid: Number(tmp[1]) });
    } else if (/^\d+$/.test(name) && !inUse.has(full) && !live.has(Number(name))) out.push({ kind: 'orphan-pin', path: full });
  }
  return out;
}

/**
 * A process killed between changing a dispatcher and recording the change leaves the kernel
 * running a membership the store does not know; so does a member whose program vanished. The
 * dispatcher's counter map names the links it runs.
 */
function divergedDispatchers(ctx: Context, links: LinkRecord[], runningLinkIds: RunningLinks): Finding[] {
  const out: Finding[] = [];
  const byIface = new Map<string, LinkRecord[]>();
  for (const l of links) byIface.set(ifaceKeyString(l), [...(byIface.get(ifaceKeyString(l)) ?? []), l]);
  for (const recorded of byIface.values()) {
    const iface = keyOfLink(recorded[0]);
    const running = runningLinkIds(ctx, iface).sort((a, b) => a - b);
    const wanted = recorded.map((l) => l.id).sort((a, b) => a - b);
    if (running.length !== wanted.length || running.some((id, i) => id !== wanted[i])) out.push({ kind: 'dispatcher-diverged', iface, links: recorded, running });
  }
  return out;
}

function emptyInterfaces(bpffs: string, links: LinkRecord[]): Finding[] {
  const dir = path.join(bpffs, 'xdp');
  const used = new Set(links.map((l) => ifaceKeyString(l)));
  return listDir(dir).filter((name) => !used.has(name)).map((name) => ({ kind: 'empty-interface' as const, path: path.join(dir, name) }));
}

/** Persisted programs of earlier boots, whether or not a repair has moved them aside yet. */
export function pendingRestores(d: Detection): PendingRestore[] {
  return d.findings.flatMap((f) => {
    if (f.kind === 'pending-restore') return [f.pending];
    if (f.kind === 'previous-boot-persisted') return [pendingOf(f.program, f.links)];
    return [];
  });
}

export function pendingOf(program: ProgramRecord, links: LinkRecord[]): PendingRestore {
  return { key: `${program.boot_id}/${program.id}`, program, links: [...links].sort((a, b) => a.seq - b.seq) };
}
