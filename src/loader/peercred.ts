import { KernelError } from '../base/errors.js';
import { koffi, lastErrno, libc } from './lib.js';

// Who is at the other end of a unix socket, as the kernel recorded it when the peer connected
// (SO_PEERCRED): nothing the peer says about itself. And the account facts the policy needs
// (name, supplementary groups), from the system's user database (NSS), as login would set them.

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const UCRED_SIZE = 12; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }

const c_getsockopt = libc.func('int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)');

const Passwd = koffi.struct('bpfd_passwd', {
  pw_name: 'const char *',
  pw_passwd: 'const char *',
  pw_uid: 'uint32_t',
  pw_gid: 'uint32_t',
  pw_gecos: 'const char *',
  pw_dir: 'const char *',
  pw_shell: 'const char *',
});
const c_getpwuid = libc.func('void *getpwuid(uint32_t uid)');
const c_getgrouplist = libc.func('int getgrouplist(const char *user, uint32_t group, _Out_ uint32_t *groups, _Inout_ int *ngroups)');

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** The credentials of the process that connected to this unix socket fd. */
export function peerCredentials(fd: number): PeerCredentials {
  const buf = Buffer.alloc(UCRED_SIZE);
  const len = [UCRED_SIZE];
  if (c_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, len) !== 0) throw new KernelError('getsockopt(SO_PEERCRED)', lastErrno());
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

/** The account's name and primary gid, or null for a uid the user database does not know. */
export function accountOf(uid: number): { username: string; gid: number } | null {
  const p = c_getpwuid(uid);
  if (!p) return null;
  const pw = koffi.decode(p, Passwd) as { pw_name: string; pw_gid: number };
  return { username: pw.pw_name, gid: pw.pw_gid };
}

/** Every gid the account belongs to (primary `gid` first), as initgroups would set them. */
export function groupsOf(username: string, gid: number): number[] {
  let n = 64;
  for (let tries = 0; tries < 4; tries++) {
    const out = new Uint32Array(n);
    const count = [n];
    if (c_getgrouplist(username, gid, out, count) >= 0) return [...new Set([gid, ...out.subarray(0, count[0])])];
    n = Math.max(count[0], n * 2);
  }
  return [gid];
}

const Group = koffi.struct('bpfd_group', { gr_name: 'const char *', gr_passwd: 'const char *', gr_gid: 'uint32_t', gr_mem: 'void *' });
const c_getgrnam = libc.func('void *getgrnam(const char *name)');

/** The gid of a group by name, or null when the system has no such group. */
export function gidOf(group: string): number | null {
  const p = c_getgrnam(group);
  return p ? (koffi.decode(p, Group) as { gr_gid: number }).gr_gid : null;
}

const c_flock = libc.func('int flock(int fd, int op)');
const LOCK_EX = 2;
const LOCK_NB = 4;

/** Takes an exclusive flock on fd without waiting; false when another process holds it. */
export function tryLockExclusive(fd: number): boolean {
  return c_flock(fd, LOCK_EX | LOCK_NB) === 0;
}
