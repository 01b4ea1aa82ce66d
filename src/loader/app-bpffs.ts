import { chmodSync, chownSync, rmSync } from 'node:fs';
import { KernelError } from '../base/errors.js';
import { closeFd, mapInfo, objGet, objPin, tryObjGet, withFd } from './bpf.js';
import { lastErrno, libc } from './lib.js';

// Kernel side of applications' bpffs mounts (bpfd bpffs create/share): a bpffs of its own per
// application, owned by it, where bpfd pins the maps it shares with that application.

const MS_SHARED = 1 << 20;
const MNT_DETACH = 2;

const c_mount = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
const c_umount2 = libc.func('int umount2(const char *target, int flags)');

export interface AppMountOptions {
  uid: number;
  gid: number;
  mode: number;
}

/**
 * Mounts a bpffs at path, with its root owned by uid:gid and the given mode, and makes the mount
 * shared: a bind mount of it into a container (a pod's hostPath volume) then joins its peer
 * group and sees the pins bpfd makes afterwards, not only those that existed at bind time.
 */
export function mountAppBpffs(path: string, o: AppMountOptions): void {
  const data = `uid=${o.uid},gid=${o.gid},mode=${o.mode.toString(8).padStart(4, '0')}`;
  if (c_mount('bpffs', path, 'bpf', 0, data) !== 0) {
    const errno = lastErrno();
    throw new KernelError(`mount a bpffs at ${path}`, errno, errno === 1 ? ['mounting a bpffs needs root (CAP_SYS_ADMIN)'] : []);
  }
  if (c_mount('none', path, null as unknown as string, MS_SHARED, null as unknown as string) !== 0) {
    const errno = lastErrno();
    c_umount2(path, MNT_DETACH);
    throw new KernelError(`make the bpffs at ${path} a shared mount`, errno);
  }
}

/** Sets the owner and mode of the mount's root (after a change of records, or a repair). */
export function setOwnerMode(path: string, o: AppMountOptions): void {
  chownSync(path, o.uid, o.gid);
  chmodSync(path, o.mode);
}

export function unmountAppBpffs(path: string): void {
  if (c_umount2(path, 0) !== 0) {
    const errno = lastErrno();
    // EBUSY: a process has its cwd or an open file there; detach lazily, the kernel frees it later
    if (errno === 16 && c_umount2(path, MNT_DETACH) === 0) return;
    throw new KernelError(`unmount the bpffs at ${path}`, errno);
  }
}

/**
 * Pins the map pinned at `source` (in bpfd's own bpffs) again at `target`, owned by uid:gid with
 * the given mode. Another pin of the same map, not a copy: the application sees the program's
 * live map. A pin left by a crash at the target is replaced.
 */
export function pinMapAt(source: string, target: string, o: AppMountOptions): void {
  withFd(objGet(source), (fd) => {
    rmSync(target, { force: true });
    objPin(fd, target);
  });
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
    return mapInfo(fd).id;
  } catch {
    return null;
  } finally {
    closeFd(fd);
  }
}
