import { mkdirSync } from 'node:fs';
import { Errno, failed, KernelError } from '../base/errors.js';
import { lastErrno, libc } from './lib.js';

const BPF_FS_MAGIC = 0xcafe4a11;

const c_statfs = libc.func('int statfs(const char *path, _Out_ uint8_t *buf)');
const c_mount = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
const c_umount2 = libc.func('int umount2(const char *target, int flags)');

/** True when path is the root of (or inside) a bpffs. */
export function isBpffs(path: string): boolean {
  const buf = Buffer.alloc(120);
  if (c_statfs(path, buf) !== 0) return false;
  return Number(buf.readBigInt64LE(0)) === BPF_FS_MAGIC;
}

/**
 * bpfd pins under a bpffs of its own rather than /sys/fs/bpf: `ip netns exec` remounts /sys and
 * would hide pins there, and a private mount keeps bpfd's objects apart from everyone else's.
 */
export function ensureBpffs(path: string, opts: { mode?: number; uid?: number; gid?: number } = {}): void {
  if (isBpffs(path)) return;
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw failed(`cannot create ${path} for bpfd's bpffs: ${(e as Error).message}`);
  }
  mountBpffs(path, opts);
}

/** Mounts a bpffs at path (mode 0700 unless given); its root belongs to uid:gid when given. */
export function mountBpffs(path: string, opts: { mode?: number; uid?: number; gid?: number } = {}): void {
  const data = [
    opts.mode !== undefined ? `mode=${opts.mode.toString(8)}` : 'mode=700',
    opts.uid !== undefined ? `uid=${opts.uid}` : '',
    opts.gid !== undefined ? `gid=${opts.gid}` : '',
  ].filter(Boolean).join(',');
  if (c_mount('bpffs', path, 'bpf', 0, data) !== 0) {
    const errno = lastErrno();
    throw new KernelError(`mount a bpffs at ${path}`, errno, errno === Errno.EPERM ? ['mounting a bpffs needs root (CAP_SYS_ADMIN)'] : []);
  }
}

const MS_SHARED = 1 << 20;

/** Makes the mount at path shared (mount --make-shared), so that binds of it join its peer group. */
export function makeShared(path: string): void {
  if (c_mount('none', path, null as unknown as string, MS_SHARED, null as unknown as string) !== 0) {
    throw new KernelError(`make ${path} a shared mount`, lastErrno());
  }
}

const MNT_DETACH = 2;

/** Unmounts path; with lazyWhenBusy, a mount a process still uses (its cwd, an open pin) is detached and freed later. */
export function unmount(path: string, opts: { lazyWhenBusy?: boolean } = {}): void {
  if (c_umount2(path, 0) === 0) return;
  const errno = lastErrno();
  if (opts.lazyWhenBusy && errno === Errno.EBUSY && c_umount2(path, MNT_DETACH) === 0) return;
  throw new KernelError(`unmount ${path}`, errno);
}
