import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { ensureBpffs, unmount } from '../../src/loader/bpffs.js';
import { readBpfElf } from '../../src/loader/elf.js';
import { openBpfObject } from '../../src/loader/object.js';
import { extractImage, type RelocatableImage } from '../../src/dispatcher/image.js';

/** Loads dispatcher members from the fixtures the way bpfd does, into a private bpffs. */

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'fixtures', 'bytecode');

export interface Member {
  progId: number;
  progPin: string;
  mapsDir: string;
  image: RelocatableImage;
}

export interface MemberLab {
  bpffs: string;
  load(fixture: string, name: string, globals?: Record<string, number | Buffer>): Member;
  cleanup(): void;
}

/** A fresh bpffs mount under /tmp; cleanup unmounts it, which releases every pin in it. */
export function memberLab(): MemberLab {
  const root = path.join('/tmp', `bpfd-disp-${process.pid}-${randomBytes(3).toString('hex')}`);
  const bpffs = path.join(root, 'fs');
  mkdirSync(bpffs, { recursive: true });
  ensureBpffs(bpffs);
  return {
    bpffs,
    load(fixture, name, globals = {}) {
      const elf = readBpfElf(path.join(FIXTURES, fixture));
      const section = elf.programs.find((p) => p.name === name)?.section ?? '';
      const g: Record<string, Buffer> = {};
      for (const [k, v] of Object.entries(globals)) {
        if (Buffer.isBuffer(v)) g[k] = v;
        else {
          const size = elf.globals.find((x) => x.name === k)?.size ?? 4;
          const b = Buffer.alloc(size);
          b.writeUIntLE(v, 0, Math.min(size, 6));
          g[k] = b;
        }
      }
      const obj = openBpfObject(elf);
      try {
        const p = obj.load({ name, bpffs, globals: g });
        return {
          progId: p.info.id,
          progPin: p.progPin,
          mapsDir: p.mapsDir,
          image: extractImage(p.insns, p.mapFds, { license: elf.license, frags: section.startsWith('xdp.frags') }),
        };
      } finally {
        obj.close();
      }
    },
    cleanup() {
      try {
        unmount(bpffs);
      } catch {
        /* already gone */
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A 64-byte frame that the mark() fixtures write their trace into. */
export function markPacket(): Buffer {
  const b = Buffer.alloc(64);
  b.fill(0xaa, 0, 12);
  b[12] = 0x88;
  b[13] = 0xb5;
  return b;
}

/** The marks left in a packet by mark(), in the order the programs ran. */
export function marksOf(out: Buffer): number[] {
  return [...out.subarray(15, 15 + out[14])];
}
