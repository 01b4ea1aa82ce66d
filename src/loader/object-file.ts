import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { invalidInput } from '../base/errors.js';

/**
 * Reads an object file given by a user without trusting what the path names. A FIFO would block
 * the read forever, a character device (/dev/zero) never ends, and /proc files claim a size of 0:
 * so the path is opened non-blocking, must be a regular file, is read to the size fstat gave
 * (never more), and anything else is refused with what it is.
 */
export const MAX_OBJECT_BYTES = 64 * 1024 * 1024;

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

export function readObjectFile(path: string): Buffer {
  const give = ['give the path of a compiled BPF object (.o) with --path'];
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw invalidInput(`bytecode file ${path} does not exist`, give);
    if (code === 'EACCES' || code === 'EPERM') throw invalidInput(`bytecode file ${path} cannot be read: permission denied (${code})`, give);
    throw invalidInput(`cannot open bytecode file ${path}: ${code ?? (e as Error).message}`, give);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw invalidInput(`bytecode path ${path} is a directory, not a BPF object file`, give);
    if (!st.isFile()) throw invalidInput(`bytecode path ${path} is ${kindOf(st)}, not a BPF object file`, give);
    if (st.size > MAX_OBJECT_BYTES) {
      throw invalidInput(`bytecode file ${path} is ${(st.size / 1048576).toFixed(1)} MB, more than the ${MAX_OBJECT_BYTES / 1048576} MB bpfd reads`, give);
    }
    const data = Buffer.alloc(st.size);
    let got = 0;
    while (got < data.length) {
      let n: number;
      try {
        n = readSync(fd, data, got, data.length - got, got);
      } catch (e) {
        throw invalidInput(`cannot read bytecode file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, give);
      }
      if (n === 0) break; // shrank while being read: what is there is judged as it is
      got += n;
    }
    return got === data.length ? data : data.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}
