import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Context } from './context.js';
import { mountAt, mounts } from '../loader/mountinfo.js';
import { listAppMounts, listShares, type AppMountRecord, type ShareRecord } from '../state/mounts.js';
import type { ProgramRecord } from '../state/records.js';

// Applications' bpffs mounts as the records say they should be, and where the kernel disagrees.
// Pins follow from shares and the programs loaded now (wantedPins); this module only reads (no
// koffi unless a pin identity check is passed in), src/core/app-mount-sync.ts makes it so.

/** One map pinned into an application's mount. */
export interface WantedPin {
  mount: AppMountRecord;
  /** the pin's name in the mount: the map's name */
  name: string;
  /** where it is pinned in the mount */
  path: string;
  /** where the map is pinned in bpfd's own bpffs */
  source: string;
  program: ProgramRecord;
  mode: number;
}

export interface Wanted {
  pins: WantedPin[];
  /** a name two different maps would take in one mount: the first program (by id) keeps it */
  conflicts: Array<{ kept: WantedPin; refused: WantedPin }>;
}

export type AppMountFinding =
  /** recorded, but no bpffs is mounted there (after a reboot, or unmounted by hand) */
  | { kind: 'app-mount-missing'; mount: AppMountRecord }
  /** `bpffs remove` was cut short */
  | { kind: 'app-mount-removing'; mount: AppMountRecord }
  /** the mount's root has another owner or mode than recorded */
  | { kind: 'app-mount-owner'; mount: AppMountRecord; actual: { uid: number; gid: number; mode: number } }
  /** a shared map is not pinned in the mount */
  | { kind: 'app-pin-missing'; pin: WantedPin }
  /** pinned, but with another owner or mode, or another map than the program's */
  | { kind: 'app-pin-wrong'; pin: WantedPin; why: string }
  /** something in the mount that no share accounts for (an unloaded program's map, a crash) */
  | { kind: 'app-pin-stray'; path: string; mount: AppMountRecord }
  /** a share of a program that is neither loaded nor waiting for restore */
  | { kind: 'app-share-stale'; share: ShareRecord }
  /** two different maps of one name shared into one mount: only one can have the name */
  | { kind: 'app-pin-conflict'; kept: WantedPin; refused: WantedPin };

export type AppMountFindingKind = AppMountFinding['kind'];

const APP_KINDS = new Set<string>(['app-mount-missing', 'app-mount-removing', 'app-mount-owner', 'app-pin-missing', 'app-pin-wrong', 'app-pin-stray', 'app-share-stale', 'app-pin-conflict']);
export const isAppMountFinding = (f: { kind: string }): f is AppMountFinding => APP_KINDS.has(f.kind);

/** Kernel id of the map pinned at a path (loader/app-bpffs.ts), passed in so reads need no koffi. */
export type PinIdentity = (path: string) => number | null;

export const sharesProgram = (s: ShareRecord, p: ProgramRecord) =>
  'program' in s.source ? s.source.program === p.id && s.source.boot_id === p.boot_id : s.source.application === p.application;

const sharesMap = (s: ShareRecord, name: string) => (s.maps === null || s.maps.includes(name)) && !s.except.includes(name);

/** The pins the shares ask for, given the programs loaded now. */
export function wantedPins(mountRecs: AppMountRecord[], shares: ShareRecord[], programs: ProgramRecord[]): Wanted {
  const byPath = new Map<string, WantedPin>();
  const conflicts: Wanted['conflicts'] = [];
  const ordered = [...programs].sort((a, b) => a.id - b.id);
  for (const mount of mountRecs) {
    if (mount.removing) continue;
    // the newest share of a map decides its mode
    const mine = shares.filter((s) => s.mount === mount.path).sort((a, b) => b.created_at.localeCompare(a.created_at));
    for (const share of mine) {
      for (const program of ordered.filter((p) => sharesProgram(share, p))) {
        for (const name of program.map_names.filter((n) => sharesMap(share, n))) {
          const pin: WantedPin = { mount, name, path: path.join(mount.path, name), source: path.join(program.maps.pin_path, name), program, mode: share.mode };
          const held = byPath.get(pin.path);
          // programs that share maps (--map-owner-id) pin the same map under the same name
          if (!held) byPath.set(pin.path, pin);
          else if (held.source !== pin.source) conflicts.push({ kept: held, refused: pin });
        }
      }
    }
  }
  return { pins: [...byPath.values()], conflicts };
}

/** Keys (`<boot_id>/<id>`) of the programs a share may name although they are not loaded now. */
export function pendingKeys(ctx: Context): Set<string> {
  return new Set(ctx.store().pendingRestores().map((p) => p.key));
}

export const isStale = (s: ShareRecord, programs: ProgramRecord[], pending: Set<string>) =>
  'program' in s.source && !programs.some((p) => sharesProgram(s, p)) && !pending.has(`${s.source.boot_id}/${s.source.program}`);

// bpffs roots carry the kernel's preloaded iterators (maps.debug, progs.debug): not pins of ours
const listPins = (dir: string) => readdirSync(dir).filter((n) => !n.endsWith('.debug'));

/**
 * Where applications' mounts disagree with the records. `pending` names the persisted programs
 * of earlier boots (their shares wait for restore); `identity`, when given, also checks that
 * each pin holds the program's map and not an older one of the same name.
 */
export function checkAppMounts(ctx: Context, programs: ProgramRecord[], pending: Set<string>, identity?: PinIdentity): AppMountFinding[] {
  const store = ctx.store();
  const mountRecs = listAppMounts(store);
  if (mountRecs.length === 0) return [];
  const shares = listShares(store);
  const out: AppMountFinding[] = [];
  for (const share of shares) if (isStale(share, programs, pending)) out.push({ kind: 'app-share-stale', share });
  const wanted = wantedPins(mountRecs, shares, programs);
  for (const c of wanted.conflicts) out.push({ kind: 'app-pin-conflict', ...c });
  const table = mounts();
  for (const mount of mountRecs) {
    if (mount.removing) {
      out.push({ kind: 'app-mount-removing', mount });
      continue;
    }
    const m = mountAt(mount.path, table);
    const mine = wanted.pins.filter((p) => p.mount === mount);
    if (!m || m.fstype !== 'bpf') {
      out.push({ kind: 'app-mount-missing', mount });
      for (const pin of mine) out.push({ kind: 'app-pin-missing', pin });
      continue;
    }
    const st = statSync(mount.path);
    if (st.uid !== mount.uid || st.gid !== mount.gid || (st.mode & 0o777) !== mount.mode) {
      out.push({ kind: 'app-mount-owner', mount, actual: { uid: st.uid, gid: st.gid, mode: st.mode & 0o777 } });
    }
    const present = new Set(listPins(mount.path));
    for (const pin of mine) {
      if (!present.has(pin.name)) {
        out.push({ kind: 'app-pin-missing', pin });
        continue;
      }
      const why = pinProblem(pin, identity);
      if (why) out.push({ kind: 'app-pin-wrong', pin, why });
    }
    const names = new Set(mine.map((p) => p.name));
    for (const name of present) if (!names.has(name)) out.push({ kind: 'app-pin-stray', path: path.join(mount.path, name), mount });
  }
  return out;
}

function pinProblem(pin: WantedPin, identity?: PinIdentity): string | null {
  const st = statSync(pin.path);
  if (st.uid !== pin.mount.uid || st.gid !== pin.mount.gid || (st.mode & 0o777) !== pin.mode) {
    return `owner ${st.uid}:${st.gid} mode ${octal(st.mode & 0o777)}, wanted ${pin.mount.uid}:${pin.mount.gid} mode ${octal(pin.mode)}`;
  }
  if (identity && existsSync(pin.source)) {
    const have = identity(pin.path);
    const want = identity(pin.source);
    if (have !== want) return `it holds map ${have ?? 'none'}, program ${pin.program.id}'s ${pin.name} is map ${want ?? 'none'}`;
  }
  return null;
}

export const octal = (mode: number) => mode.toString(8).padStart(4, '0');

/** How `bpfd doctor` names and explains each finding. */
export function describeAppMountFinding(f: AppMountFinding): { subject: string; detail: string; remedy: string } {
  switch (f.kind) {
    case 'app-mount-missing':
      return { subject: f.mount.path, detail: 'an application bpffs is recorded here, but nothing is mounted (a reboot?)', remedy: 'mount it again, then pin its shares' };
    case 'app-mount-removing':
      return { subject: f.mount.path, detail: 'bpfd bpffs remove was cut short', remedy: 'finish removing it: unpin, unmount, forget' };
    case 'app-mount-owner':
      return {
        subject: f.mount.path,
        detail: `owner ${f.actual.uid}:${f.actual.gid} mode ${octal(f.actual.mode)}, recorded ${f.mount.uid}:${f.mount.gid} mode ${octal(f.mount.mode)}`,
        remedy: 'set the recorded owner and mode',
      };
    case 'app-pin-missing':
      return { subject: f.pin.path, detail: `map ${f.pin.name} of program ${f.pin.program.id} is shared here but not pinned`, remedy: 'pin it' };
    case 'app-pin-wrong':
      return { subject: f.pin.path, detail: f.why, remedy: 'pin the right map again with the recorded owner and mode' };
    case 'app-pin-stray':
      return { subject: f.path, detail: 'in an application bpffs, but no share accounts for it (its program was unloaded?)', remedy: 'unpin it' };
    case 'app-share-stale':
      return {
        subject: `${f.share.mount}: program ${'program' in f.share.source ? f.share.source.program : '?'}`,
        detail: 'shared, but that program is neither loaded nor waiting for restore',
        remedy: 'forget the share',
      };
    case 'app-pin-conflict':
      return {
        subject: f.kept.path,
        detail: `maps of programs ${f.kept.program.id} and ${f.refused.program.id} are both named ${f.kept.name}; program ${f.kept.program.id}'s has the name`,
        remedy: `nothing automatic: bpfd bpffs unshare ${f.kept.mount.path} --maps ${f.kept.name}, or share the programs into separate mounts`,
      };
  }
}
