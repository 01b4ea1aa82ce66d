import { chmodSync, chownSync, rmSync } from 'node:fs';
import { closeFd, mapIdOf, objGet, objPin, tryObjGet } from './bpf.js';
import { makeShared, mountBpffs, unmount } from './bpffs.js';

// Kernel side of applications' bpffs mounts (bpfd bpffs create/share): a bpffs of its own per
// application, owned by it, where bpfd pins the maps it shares with that application.

export interface AppMountOptions {
  uid: number;
  gid: number;
  mode: number;
}

/**
 * Mounts a bpffs at path, with its root owned by uid:gid and the given mode, and makes the mount
 * shared (mount --make-shared). Pins live in the one bpffs instance, so every bind of it (a pod's
 * hostPath volume) shows pins made after the bind; being shared, such a bind also joins the
 * mount's peer group, so what happens to the mount later propagates to it instead of leaving
 * the container a private copy.
 */
export function mountAppBpffs(path: string, o: AppMountOptions): void {
  mountBpffs(path, o);
  try {
    makeShared(path);
  } catch (e) {
    unmount(path, { lazyWhenBusy: true });
    throw e;
  }
}

/** Sets the owner and mode of the mount's root (after a change of records, or a repair). */
export function setOwnerMode(path: string, o: AppMountOptions): void {
  chownSync(path, o.uid, o.gid);
  chmodSync(path, o.mode);
}

export function unmountAppBpffs(path: string): void {
  unmount(path, { lazyWhenBusy: true });
}

/**
 * Pins the map pinned at `source` (in bpfd's own bpffs) again at `target`, owned by uid:gid with
 * the given mode. Another pin of the same map, not a copy: the application sees the program's
 * live map. A pin left by a crash at the target is replaced.
 */
export function pinMapAt(source: string, target: string, o: AppMountOptions): void {
  const fd = objGet(source);
  try {
    rmSync(target, { force: true });
    objPin(fd, target);
  } finally {
    closeFd(fd);
  }
  try {
    setOwnerMode(target, o);
  } catch (e) {
    rmSync(target, { force: true });
    throw e;
  }
}

/** Kernel id of the map pinned at path, or null when nothing (or no map) is pinned there. */
export function pinnedMapId(path: string): number | null {
  const fd = tryObjGet(path);
  if (fd < 0) return null;
  try {
    return mapIdOf(fd);
  } catch {
    return null;
  } finally {
    closeFd(fd);
  }
}
