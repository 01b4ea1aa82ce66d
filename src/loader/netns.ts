import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { Errno, KernelError, invalidInput } from '../base/errors.js';
import { lastErrno, libc } from './lib.js';

const CLONE_NEWNET = 0x40000000;
const c_setns = libc.func('int setns(int fd, int nstype)');
const c_if_nametoindex = libc.func('unsigned int if_nametoindex(const char *name)');

/** Inode of the network namespace this process is in; identifies "no --netns". */
export function currentNetnsIno(): number {
  return statSync('/proc/self/ns/net').ino;
}

export function netnsIno(nsPath: string): number {
  return openNetns(nsPath, (fd) => fstatSync(fd).ino);
}

function openNetns<T>(nsPath: string, fn: (fd: number) => T): T {
  let fd: number;
  try {
    fd = openSync(nsPath, 'r');
  } catch (e) {
    throw invalidInput(`network namespace ${nsPath} cannot be opened: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, [
      'give a netns file such as /var/run/netns/NAME (see `ip netns list`)',
    ]);
  }
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs fn with this thread in the network namespace at nsPath. Only the calling thread moves,
 * and bpfd makes its kernel calls from the main thread, so interface lookups and XDP attaches
 * inside fn see that namespace. The original namespace is restored even when fn throws.
 */
export function inNetns<T>(nsPath: string | null, fn: () => T): T {
  if (!nsPath) return fn();
  const home = openSync('/proc/thread-self/ns/net', 'r');
  try {
    return openNetns(nsPath, (fd) => {
      if (c_setns(fd, CLONE_NEWNET) !== 0) {
        const errno = lastErrno();
        throw errno === Errno.EINVAL
          ? invalidInput(`${nsPath} is not a network namespace`)
          : new KernelError(`enter network namespace ${nsPath}`, errno);
      }
      try {
        return fn();
      } finally {
        if (c_setns(home, CLONE_NEWNET) !== 0) {
          // Staying in the wrong namespace would misdirect every later call: stop here.
          process.stderr.write(`bpfd: cannot return to the original network namespace (errno ${lastErrno()}); exiting\n`);
          process.exit(1);
        }
      }
    });
  } finally {
    closeSync(home);
  }
}

/** ifindex of name in the current thread's namespace, or an invalid-input error naming where we looked. */
export function ifindexOf(name: string, nsPath: string | null): number {
  if (!name || name.length > 15 || /[\s/]/.test(name)) throw invalidInput(`invalid interface name '${name}'`);
  const idx = c_if_nametoindex(name) as number;
  if (!idx) {
    const where = nsPath ? `network namespace ${nsPath}` : 'this network namespace';
    throw invalidInput(`interface ${name} does not exist in ${where}`, [nsPath ? `see: ip -n ${nsPath.split('/').pop()} link` : 'see: ip link']);
  }
  return idx;
}
