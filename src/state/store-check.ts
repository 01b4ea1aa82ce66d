import { closeSync, openSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * lmdb maps the data file and trusts it: a truncated or garbled file makes the process die with
 * SIGSEGV instead of an error. So before opening, check what a damaged file gets wrong first:
 * both meta pages (page flag, magic, format version) and a size that covers the last page the
 * newest meta names. Returns why the file is unusable, or null when it looks sound (or is new).
 * Layout facts are those of the LMDB build the lmdb package ships (format version 2).
 */
const MAGIC = 0xbeefc0de;
const VERSION = 2;
const P_META = 0x08;

export function lmdbFileProblem(stateDir: string): string | null {
  const file = path.join(stateDir, 'data.mdb');
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return null; // no store yet
  }
  if (size === 0) return null; // lmdb initialises an empty file
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(0xa0);
    if (readSync(fd, head, 0, head.length, 0) < head.length) return `${file} is truncated (${size} bytes, shorter than one page)`;
    const pageSize = head.readUInt32LE(0x30);
    if (![4096, 8192, 16384, 32768, 65536].includes(pageSize)) return `${file} has no valid LMDB header (page size field ${pageSize})`;
    if (size < 2 * pageSize) return `${file} is truncated (${size} bytes, shorter than its two meta pages)`;
    let newest: { txn: bigint; lastPage: bigint } | null = null;
    for (const page of [0, 1]) {
      const meta = page === 0 ? head : Buffer.alloc(0xa0);
      if (page === 1) readSync(fd, meta, 0, meta.length, pageSize);
      if (!(meta.readUInt16LE(0x12) & P_META) || meta.readUInt32LE(0x18) !== MAGIC) return `${file} is not an LMDB file or its meta page ${page} is damaged`;
      if (meta.readUInt32LE(0x1c) !== VERSION) return `${file} has LMDB format version ${meta.readUInt32LE(0x1c)}, expected ${VERSION}`;
      const txn = meta.readBigUInt64LE(0x98);
      if (!newest || txn > newest.txn) newest = { txn, lastPage: meta.readBigUInt64LE(0x90) };
    }
    const needed = (newest!.lastPage + 1n) * BigInt(pageSize);
    if (BigInt(size) < needed) return `${file} is truncated (${size} bytes, but its last page ends at ${needed})`;
    return null;
  } finally {
    closeSync(fd);
  }
}
