import type { Database } from 'lmdb';
import { handlesOf, type Store } from './store.js';
import { latest } from './lmdb-env.js';

/**
 * Records of applications' bpffs mounts (bpfd bpffs create) and of what is shared into them
 * (bpfd bpffs share). The pins in a mount are not recorded: they follow from the shares and the
 * programs loaded now, so a crash between a record and its pins leaves nothing a later command
 * cannot derive again (src/core/app-mount-check.ts compares the two).
 *
 * Two sub-databases of the store, opened on first use:
 *   app_mounts  mount path -> AppMountRecord
 *   app_shares  `<mount path>\0<source>\0<maps>` -> ShareRecord
 */
export interface AppMountRecord {
  path: string;
  uid: number;
  gid: number;
  /** permission bits of the mount's root, e.g. 0o750 */
  mode: number;
  application: string | null;
  /** bpfd made the directory (and removes it with the mount) */
  created_dir: boolean;
  created_at: string;
  created_by: { uid: number; username: string };
  /** set before `bpffs remove` unpins and unmounts, so a crash half-way is completed, not undone */
  removing?: boolean;
}

/** A share names a program of one boot (kernel ids start again after a reboot) or an application. */
export type ShareSource = { program: number; boot_id: string } | { application: string };

export interface ShareRecord {
  mount: string;
  source: ShareSource;
  /** the maps to pin, by name; null for all of them */
  maps: string[] | null;
  /** maps taken out again with `bpffs unshare --maps` from a share of all maps */
  except: string[];
  /** permission bits of each pin, e.g. 0o660 */
  mode: number;
  created_at: string;
  created_by: { uid: number; username: string };
}

const sourceKey = (s: ShareSource) => ('program' in s ? `program:${s.boot_id}/${s.program}` : `application:${s.application}`);
/** One share per mount, source and map selection: sharing the same again changes its mode. */
export const shareKey = (s: Pick<ShareRecord, 'mount' | 'source' | 'maps'>) => `${s.mount}\u0000${sourceKey(s.source)}\u0000${s.maps ? [...s.maps].sort().join(',') : '*'}`;

interface Dbs {
  mounts: Database<AppMountRecord, string>;
  shares: Database<ShareRecord, string>;
}

const opened = new WeakMap<Store, Dbs>();

function dbs(store: Store): Dbs {
  let d = opened.get(store);
  if (!d) {
    const { root } = handlesOf(store);
    d = {
      mounts: root.openDB<AppMountRecord, string>({ name: 'app_mounts' }),
      shares: root.openDB<ShareRecord, string>({ name: 'app_shares' }),
    };
    opened.set(store, d);
  }
  return d;
}

/** dbs(store), read from the latest commit (lmdb-env.ts latest). */
function readDbs(store: Store): Dbs {
  latest(handlesOf(store));
  return dbs(store);
}

export function listAppMounts(store: Store): AppMountRecord[] {
  return [...readDbs(store).mounts.getRange()].map((e) => e.value);
}

export function getAppMount(store: Store, path: string): AppMountRecord | undefined {
  return readDbs(store).mounts.get(path);
}

export function putAppMount(store: Store, rec: AppMountRecord): void {
  dbs(store).mounts.putSync(rec.path, rec);
}

export function listShares(store: Store, mount?: string): ShareRecord[] {
  const all = [...readDbs(store).shares.getRange()].map((e) => e.value);
  return mount === undefined ? all : all.filter((s) => s.mount === mount);
}

/** Adds a share, or replaces the one with the same mount and source. */
export function putShare(store: Store, rec: ShareRecord): void {
  dbs(store).shares.putSync(shareKey(rec), rec);
}

export function removeShares(store: Store, shares: ShareRecord[]): void {
  const { shares: db } = dbs(store);
  handlesOf(store).root.transactionSync(() => {
    for (const s of shares) db.remove(shareKey(s));
  });
}

/** Drops a mount's record and every share into it, in one transaction. */
export function removeAppMount(store: Store, path: string): void {
  const d = dbs(store);
  handlesOf(store).root.transactionSync(() => {
    for (const s of listShares(store, path)) d.shares.remove(shareKey(s));
    d.mounts.remove(path);
  });
}

/**
 * A program restored after a reboot has a new kernel id: the shares that named it under its
 * old boot and id name it under the new ones.
 */
export function retargetProgramShares(store: Store, from: { program: number; boot_id: string }, to: { program: number; boot_id: string }): void {
  const d = dbs(store);
  handlesOf(store).root.transactionSync(() => {
    for (const s of listShares(store)) {
      if (!('program' in s.source) || s.source.program !== from.program || s.source.boot_id !== from.boot_id) continue;
      d.shares.remove(shareKey(s));
      const moved = { ...s, source: to };
      d.shares.put(shareKey(moved), moved);
    }
  });
}
