import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { type Context, requireRoot } from './context.js';
import { invalidInput, notFound } from '../base/errors.js';
import { octal, sharesProgram, wantedPins } from './app-mount-check.js';
import { finishRemoval, syncAppMounts, warnSyncProblems } from './app-mount-sync.js';
import { reconcile } from './reconcile.js';
import { checkpoint } from '../base/test-hooks.js';
import { mountAppBpffs } from '../loader/app-bpffs.js';
import { isBpffs } from '../loader/bpffs.js';
import { mountAt } from '../loader/mountinfo.js';
import { getAppMount, listAppMounts, listShares, putAppMount, putShare, removeAppMount, removeShares, shareKey, type AppMountRecord, type ShareRecord } from '../state/mounts.js';
import type { ProgramRecord } from '../state/records.js';
import type { Reconciled } from './reconcile.js';

// bpfd bpffs create|share|unshare|list|remove: a bpffs mounted for one application, where bpfd
// pins the maps of programs it loaded, owned by the application and guarded by file modes, so
// the application reads and updates them without any capability (DESIGN.md section 5).

const gate: typeof import('./policy-gate.js').gate = async (...args) => (await import('./policy-gate.js')).gate(...args);

const WHY_ROOT = 'mounting a bpffs and pinning into it need CAP_SYS_ADMIN and CAP_BPF';
const nowIso = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export interface AppMountView {
  path: string;
  owner: { uid: number; gid: number };
  mode: string;
  application: string | null;
  mounted: boolean;
  shares: Array<{ source: { program: number } | { application: string }; maps: string[] | 'all'; except: string[]; mode: string }>;
  pins: Array<{ name: string; path: string; program: number; mode: string; present: boolean }>;
}

export interface CreateRequest {
  path: string;
  uid: number;
  gid: number;
  mode: number;
  application: string | null;
}

/** Mounts and records an application's bpffs; again with the same options it changes nothing. */
export async function createAppBpffs(ctx: Context, req: CreateRequest): Promise<{ created: boolean; mount: AppMountView }> {
  requireRoot('bpfd bpffs create', WHY_ROOT);
  const where = path.resolve(req.path);
  refuseBpfdPath(ctx, where);
  return ctx.exclusive(async () => {
    const state = reconcile(ctx, true);
    const store = ctx.store();
    const known = getAppMount(store, where);
    if (known) {
      if (known.uid !== req.uid || known.gid !== req.gid || known.mode !== req.mode || known.application !== req.application) {
        throw invalidInput(`bpfd already created a bpffs at ${where}, with owner ${known.uid}:${known.gid}, mode ${octal(known.mode)}, application ${known.application ?? '-'}`, [
          `remove it first (bpfd bpffs remove ${where}) to create it with other options`,
        ]);
      }
      return { created: false, mount: viewOf(ctx, known, state) };
    }
    const mounted = mountAt(where);
    if (mounted) throw invalidInput(`${where} is already a mount point (${mounted.fstype}) that bpfd did not create`, ['pick a path where nothing is mounted']);
    let createdDir = false;
    if (existsSync(where)) {
      if (!statSync(where).isDirectory()) throw invalidInput(`${where} exists and is not a directory`);
      if (readdirSync(where).length) throw invalidInput(`${where} is a directory that is not empty: mounting there would hide what it holds`, ['pick an empty or new directory']);
    }
    if (isBpffs(path.dirname(where)) || (existsSync(where) && isBpffs(where))) {
      throw invalidInput(`${where} is inside a bpffs: an application's bpffs needs a directory of an ordinary file system`);
    }
    if (!existsSync(where)) {
      mkdirSync(where, { recursive: true, mode: 0o755 });
      createdDir = true;
    }
    const rec: AppMountRecord = {
      path: where,
      uid: req.uid,
      gid: req.gid,
      mode: req.mode,
      application: req.application,
      created_dir: createdDir,
      created_at: nowIso(),
      created_by: { uid: ctx.subject.uid, username: ctx.subject.username },
    };
    // record first: a crash before the mount leaves a record the next command mounts
    putAppMount(store, rec);
    checkpoint('bpffs-create:after-record');
    try {
      mountAppBpffs(where, rec);
    } catch (e) {
      removeAppMount(store, where);
      if (createdDir) rmdirSync(where);
      throw e;
    }
    return { created: true, mount: viewOf(ctx, rec, state) };
  });
}

function refuseBpfdPath(ctx: Context, where: string): void {
  for (const [dir, what] of [[ctx.paths.runtimeDir, 'runtime directory'], [ctx.paths.stateDir, 'store']] as const) {
    const rel = path.relative(path.resolve(dir), where);
    if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
      throw invalidInput(`${where} is inside bpfd's ${what} (${dir}): an application's bpffs goes elsewhere`, ['pick a path of its own, e.g. /run/bpfd-apps/NAME']);
    }
  }
}

export interface ShareRequest {
  path: string;
  program?: number;
  application?: string;
  /** null for all maps */
  maps: string[] | null;
  mode: number;
}

/** Pins maps of one program, or of every program of an application now and later, into the mount. */
export async function shareIntoAppBpffs(ctx: Context, req: ShareRequest): Promise<AppMountView> {
  return onMount(ctx, 'bpfd bpffs share', req.path, async (mount, state) => {
    const where = mount.path;
    const store = ctx.store();
    let program: ProgramRecord | undefined;
    if (req.program !== undefined) {
      program = state.programs.find((p) => p.id === req.program);
      if (!program) throw notFound(`no program with id ${req.program} is loaded by bpfd (see: bpfd list)`);
      const unknown = (req.maps ?? []).filter((m) => !program!.map_names.includes(m));
      if (unknown.length) throw invalidInput(`program ${program.id} has no map named ${unknown.join(', ')}`, [`its maps: ${program.map_names.join(', ') || 'none'}`]);
    }
    const share: ShareRecord = {
      mount: where,
      source: program ? { program: program.id, boot_id: program.boot_id } : { application: req.application! },
      maps: req.maps,
      except: [],
      mode: req.mode,
      // to the millisecond: the newest of two shares of one map decides its mode
      created_at: new Date().toISOString(),
      created_by: { uid: ctx.subject.uid, username: ctx.subject.username },
    };
    await gate(ctx, {
      action: 'share',
      program: program && { record: program, name: program.name, type: program.type, section: program.section },
      application: program ? program.application : req.application,
      metadata: program?.metadata ?? {},
      share: { path: where, owner: { uid: mount.uid, gid: mount.gid }, mode: octal(req.mode), maps: req.maps, mount_application: mount.application },
    });
    const others = listShares(store).filter((s) => shareKey(s) !== shareKey(share));
    const clash = wantedPins(listAppMounts(store), [...others, share], state.programs).conflicts.filter(
      (c) => c.refused.mount.path === where && (sharesProgram(share, c.refused.program) || sharesProgram(share, c.kept.program)),
    );
    if (clash.length) {
      throw invalidInput(`${where} already holds maps of those names from other programs: ${clash.map((c) => `${c.kept.name} (program ${c.kept.program.id})`).join(', ')}`, [
        'share the other maps with --maps, or this program into a bpffs of its own',
      ]);
    }
    putShare(store, share);
    checkpoint('bpffs-share:after-record');
    warnSyncProblems(syncAppMounts(ctx, state.programs));
    return viewOf(ctx, mount, state);
  });
}

/** Takes maps (or every share) out of the mount again. */
export async function unshareFromAppBpffs(ctx: Context, req: { path: string; maps: string[] | null }): Promise<AppMountView> {
  return onMount(ctx, 'bpfd bpffs unshare', req.path, async (mount, state) => {
    const where = mount.path;
    const store = ctx.store();
    const shares = listShares(store, where);
    if (req.maps === null) removeShares(store, shares);
    else {
      const pinned = new Set(wantedPins([mount], shares, state.programs).pins.map((p) => p.name));
      const unknown = req.maps.filter((m) => !pinned.has(m));
      if (unknown.length) throw invalidInput(`no map named ${unknown.join(', ')} is shared at ${where}`, [`shared there: ${[...pinned].join(', ') || 'nothing'}`]);
      // a share's key holds its map list: the narrowed share replaces the old one
      const narrowed: ShareRecord[] = [];
      for (const s of shares) {
        if (s.maps === null) narrowed.push({ ...s, except: [...new Set([...s.except, ...req.maps])] });
        else if (s.maps.some((m) => req.maps!.includes(m))) {
          const left = s.maps.filter((m) => !req.maps!.includes(m));
          if (left.length) narrowed.push({ ...s, maps: left });
        } else continue;
        removeShares(store, [s]);
      }
      for (const s of narrowed) putShare(store, s);
    }
    warnSyncProblems(syncAppMounts(ctx, state.programs));
    return viewOf(ctx, mount, state);
  });
}

/** Unpins everything, unmounts, and forgets the mount. */
export async function removeAppBpffs(ctx: Context, where: string): Promise<void> {
  await onMount(ctx, 'bpfd bpffs remove', where, async (mount) => {
    // marked first: a crash half-way is finished by the next command, not undone
    putAppMount(ctx.store(), { ...mount, removing: true });
    checkpoint('bpffs-remove:after-mark');
    finishRemoval(ctx, mount);
  });
}

export async function listAppBpffs(ctx: Context): Promise<AppMountView[]> {
  const { readState } = await import('./read.js');
  const state = await readState(ctx);
  return listAppMounts(ctx.store()).filter((m) => !m.removing).map((m) => viewOf(ctx, m, state));
}

/** Runs fn under the writer lock, with store and kernel reconciled, on the mount recorded at path. */
async function onMount<T>(ctx: Context, action: string, at: string, fn: (mount: AppMountRecord, state: Reconciled) => Promise<T>): Promise<T> {
  requireRoot(action, WHY_ROOT);
  const where = path.resolve(at);
  return ctx.exclusive(async () => {
    const state = reconcile(ctx, true);
    const m = getAppMount(ctx.store(), where);
    if (!m || m.removing) throw notFound(`bpfd created no bpffs at ${where} (see: bpfd bpffs list; create one with: bpfd bpffs create ${where} --owner UID)`);
    return fn(m, state);
  });
}

function viewOf(ctx: Context, m: AppMountRecord, state: Pick<Reconciled, 'programs'>): AppMountView {
  const shares = listShares(ctx.store(), m.path);
  const mounted = mountAt(m.path)?.fstype === 'bpf';
  return {
    path: m.path,
    owner: { uid: m.uid, gid: m.gid },
    mode: octal(m.mode),
    application: m.application,
    mounted,
    shares: shares.map((s) => ({
      source: 'program' in s.source ? { program: s.source.program } : { application: s.source.application },
      maps: s.maps ?? 'all',
      except: s.except,
      mode: octal(s.mode),
    })),
    pins: wantedPins([m], shares, state.programs).pins.map((p) => ({ name: p.name, path: p.path, program: p.program.id, mode: octal(p.mode), present: mounted && existsSync(p.path) })),
  };
}
