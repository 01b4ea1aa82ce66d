import { mkdirSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Context } from './context.js';
import { checkAppMounts, pendingKeys, type AppMountFinding } from './app-mount-check.js';
import { checkpoint } from '../base/test-hooks.js';
import { mountAppBpffs, pinMapAt, pinnedMapId, setOwnerMode, unmountAppBpffs } from '../loader/app-bpffs.js';
import { mountAt } from '../loader/mountinfo.js';
import { removeAppMount, removeShares, type AppMountRecord } from '../state/mounts.js';
import type { ProgramRecord } from '../state/records.js';

export interface SyncOutcome {
  finding: AppMountFinding;
  ok: boolean;
  done: string;
}

/**
 * Makes applications' mounts what the records say, given the programs loaded now: mounts what
 * is missing, finishes removals cut short, forgets shares of programs gone for good, pins what
 * is shared and unpins what no longer is. Under the writer lock: load and unload call it after
 * their commit, bpffs share and unshare after theirs, and the repair before every change.
 */
export function syncAppMounts(ctx: Context, programs: ProgramRecord[], found?: AppMountFinding[]): SyncOutcome[] {
  const findings = found ?? checkAppMounts(ctx, programs, pendingKeys(ctx), pinnedMapId);
  const outcomes: SyncOutcome[] = [];
  const attempt = (finding: AppMountFinding, fn: () => string) => {
    try {
      outcomes.push({ finding, ok: true, done: fn() });
    } catch (e) {
      outcomes.push({ finding, ok: false, done: (e as Error).message });
    }
  };
  const store = ctx.store();
  const stale = findings.flatMap((f) => (f.kind === 'app-share-stale' ? [f.share] : []));
  if (stale.length) removeShares(store, stale);
  // mounts before pins: a pin needs its mount
  for (const f of findings) {
    if (f.kind === 'app-share-stale') outcomes.push({ finding: f, ok: true, done: 'share forgotten' });
    else if (f.kind === 'app-mount-removing') attempt(f, () => (finishRemoval(ctx, f.mount), 'unpinned, unmounted, forgotten'));
    else if (f.kind === 'app-mount-missing') attempt(f, () => (mountRecorded(f.mount), 'mounted again'));
    else if (f.kind === 'app-mount-owner') attempt(f, () => (setOwnerMode(f.mount.path, f.mount), 'owner and mode set'));
  }
  const unmounted = new Set(outcomes.filter((o) => !o.ok && o.finding.kind === 'app-mount-missing').map((o) => (o.finding as { mount: AppMountRecord }).mount.path));
  let pinned = 0;
  for (const f of findings) {
    if (f.kind === 'app-pin-stray') attempt(f, () => (rmSync(f.path, { recursive: true, force: true }), 'unpinned'));
    else if (f.kind === 'app-pin-missing' || f.kind === 'app-pin-wrong') {
      if (unmounted.has(f.pin.mount.path)) {
        outcomes.push({ finding: f, ok: false, done: `${f.pin.mount.path} is not mounted` });
        continue;
      }
      attempt(f, () => {
        pinMapAt(f.pin.source, f.pin.path, { uid: f.pin.mount.uid, gid: f.pin.mount.gid, mode: f.pin.mode });
        if (pinned++ === 0) checkpoint('bpffs-share:after-first-pin');
        return 'pinned';
      });
    } else if (f.kind === 'app-pin-conflict') outcomes.push({ finding: f, ok: false, done: 'nothing automatic: see the remedy' });
  }
  return outcomes;
}

/** Mounts a recorded application bpffs again (after a reboot): directory, mount, owner. */
export function mountRecorded(m: AppMountRecord): void {
  mkdirSync(m.path, { recursive: true, mode: 0o755 });
  mountAppBpffs(m.path, m);
}

/** Unpins everything in the mount, unmounts it, removes the directory bpfd made, drops the records. */
export function finishRemoval(ctx: Context, m: AppMountRecord): void {
  if (mountAt(m.path)?.fstype === 'bpf') {
    for (const name of readdirSync(m.path)) if (!name.endsWith('.debug')) rmSync(path.join(m.path, name), { recursive: true, force: true });
    checkpoint('bpffs-remove:after-unpin');
    unmountAppBpffs(m.path);
  }
  if (m.created_dir) {
    try {
      rmdirSync(m.path);
    } catch {
      // not empty or already gone: leave what is not ours
    }
  }
  removeAppMount(ctx.store(), m.path);
}

/** Warnings for what a sync could not do, on stderr: the command itself still succeeded. */
export function warnSyncProblems(outcomes: SyncOutcome[]): void {
  for (const o of outcomes) {
    if (o.ok) continue;
    const f = o.finding;
    const what = f.kind === 'app-pin-conflict' ? `${f.refused.path}: program ${f.refused.program.id}'s map ${f.refused.name} is not shared, the name is taken by program ${f.kept.program.id}'s` : o.done;
    process.stderr.write(`bpfd: warning: application bpffs (${f.kind}): ${what}\n`);
  }
}
