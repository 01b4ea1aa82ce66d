import { checkBpfObject, SHT, u64 } from '../../src/loader/elf-gate.js';

/**
 * Seeded mutations of a valid BPF object. The same (seed, index) gives the same mutant on every
 * machine, so a failure is reproduced from the two numbers it prints. Strategies aim at the ELF
 * structure a parser trusts (section headers, links, symbol indices, relocation offsets, BTF
 * type ids and string offsets) as well as at random bytes: random bytes mostly land in debug
 * info, which no parser reads.
 */

/** splitmix32: small, fast, and good enough to spread mutations. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export interface Mutant {
  strategy: string;
  /** what was changed, for the failure report */
  what: string;
  bytes: Buffer;
}

interface Layout {
  shoff: number;
  sections: Array<{ index: number; name: string; type: number; offset: number; size: number; hdr: number }>;
  symtab?: { offset: number; count: number };
  rels: Array<{ offset: number; count: number }>;
  btf?: { offset: number; size: number };
  btfExt?: { offset: number; size: number };
}

/** Where the structures are in the valid original (the gate parses it; it must pass). */
export function layoutOf(original: Buffer): Layout {
  const checked = checkBpfObject('original', original);
  const shoff = u64(original, 40);
  const sections = checked.sections.map((s) => ({ index: s.index, name: checked.names[s.index], type: s.type, offset: s.offset, size: s.size, hdr: shoff + s.index * 64 }));
  const find = (n: string) => sections.find((s) => s.name === n);
  const symtab = sections.find((s) => s.type === SHT.SYMTAB);
  return {
    shoff,
    sections,
    symtab: symtab && { offset: symtab.offset, count: symtab.size / 24 },
    rels: sections.filter((s) => s.type === SHT.REL).map((s) => ({ offset: s.offset, count: s.size / 16 })),
    btf: find('.BTF'),
    btfExt: find('.BTF.ext'),
  };
}

const INTERESTING32 = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

type Strategy = (d: Buffer, l: Layout, r: () => number) => string;

const pick = <T>(r: () => number, xs: T[]): T => xs[r() % xs.length];
/** A replacement for a 32-bit field: a boundary value, a small nudge, or anything. */
const value32 = (r: () => number, old: number) => {
  const k = r() % 3;
  if (k === 0) return pick(r, INTERESTING32);
  if (k === 1) return (old + ((r() % 17) - 8)) >>> 0;
  return r();
};
const set32 = (d: Buffer, o: number, r: () => number) => {
  if (o + 4 > d.length) return `nothing (offset ${o} past end)`;
  const old = d.readUInt32LE(o);
  const v = value32(r, old);
  d.writeUInt32LE(v, o);
  return `u32 at ${o}: ${old} -> ${v}`;
};
const set64 = (d: Buffer, o: number, r: () => number) => {
  const lo = d.readUInt32LE(o);
  const v = r() % 4 === 0 ? 0xffffffffffffffffn : BigInt(value32(r, lo)) + (r() % 8 === 0 ? BigInt(r()) << 32n : 0n);
  const old = d.readBigUInt64LE(o);
  d.writeBigUInt64LE(v, o);
  return `u64 at ${o}: ${old} -> ${v}`;
};

const STRATEGIES: Record<string, Strategy> = {
  bitflip(d, _l, r) {
    const n = 1 + (r() % 8);
    const at: number[] = [];
    for (let i = 0; i < n; i++) {
      const o = r() % d.length;
      d[o] ^= 1 << (r() % 8);
      at.push(o);
    }
    return `bits flipped at ${at.join(',')}`;
  },
  byteset(d, _l, r) {
    const n = 1 + (r() % 4);
    const at: string[] = [];
    for (let i = 0; i < n; i++) {
      const o = r() % d.length;
      const v = pick(r, [0, 0xff, 0x7f, 0x80, 1, r() & 0xff]);
      d[o] = v;
      at.push(`${o}=${v}`);
    }
    return `bytes set ${at.join(',')}`;
  },
  truncate: () => 'truncate', // handled by mutate(): it changes the length
  elfHeader(d, _l, r) {
    return pick(r, [() => set64(d, 40, r), () => set32(d, 56, r), () => set32(d, 60, r), () => set32(d, 52, r), () => set32(d, 16, r)])();
  },
  sectionOffsetSize(d, l, r) {
    const s = pick(r, l.sections);
    return `section ${s.index} (${s.name}) ${r() % 2 ? 'sh_offset' : 'sh_size'}: ${set64(d, s.hdr + (r() % 2 ? 24 : 32), r)}`;
  },
  sectionLinkInfo(d, l, r) {
    const s = pick(r, l.sections);
    const field = pick(r, [['sh_link', 40], ['sh_info', 44], ['sh_name', 0], ['sh_type', 4], ['sh_entsize', 56]] as const);
    return `section ${s.index} (${s.name}) ${field[0]}: ${set32(d, s.hdr + field[1], r)}`;
  },
  symbol(d, l, r) {
    if (!l.symtab || l.symtab.count === 0) return STRATEGIES.bitflip(d, l, r);
    const k = r() % l.symtab.count;
    const o = l.symtab.offset + k * 24;
    const field = pick(r, [['st_name', 0, 4], ['st_info', 4, 1], ['st_shndx', 6, 2], ['st_value', 8, 8], ['st_size', 16, 8]] as const);
    if (field[2] === 1) {
      const v = r() & 0xff;
      d[o + 4] = v;
      return `symbol ${k} st_info -> ${v}`;
    }
    if (field[2] === 2) {
      const v = pick(r, [0, 1, 2, 0xfff1, 0xfff2, 0xffff, r() & 0xffff, l.sections.length, l.sections.length - 1]);
      d.writeUInt16LE(v, o + 6);
      return `symbol ${k} st_shndx -> ${v}`;
    }
    return `symbol ${k} ${field[0]}: ${field[2] === 4 ? set32(d, o, r) : set64(d, o + field[1], r)}`;
  },
  relocation(d, l, r) {
    if (l.rels.length === 0) return STRATEGIES.bitflip(d, l, r);
    const rel = pick(r, l.rels);
    const k = r() % rel.count;
    const o = rel.offset + k * 16;
    const which = r() % 3;
    if (which === 0) return `relocation ${k} at ${o} r_offset: ${set64(d, o, r)}`;
    if (which === 1) return `relocation ${k} at ${o} symbol index: ${set32(d, o + 12, r)}`;
    return `relocation ${k} at ${o} type: ${set32(d, o + 8, r)}`;
  },
  btfHeader(d, l, r) {
    if (!l.btf) return STRATEGIES.bitflip(d, l, r);
    const ext = l.btfExt && r() % 2 ? l.btfExt : l.btf;
    const field = 4 * (1 + (r() % (ext === l.btf ? 5 : 7)));
    return `${ext === l.btf ? '.BTF' : '.BTF.ext'} header word at ${field}: ${set32(d, ext.offset + field, r)}`;
  },
  btfTypes(d, l, r) {
    if (!l.btf) return STRATEGIES.bitflip(d, l, r);
    const b = l.btf.offset;
    const hdr = d.readUInt32LE(b + 4);
    const t0 = b + hdr + d.readUInt32LE(b + 8);
    const len = d.readUInt32LE(b + 12);
    // any aligned word in the type section: names, info words, type ids, member ids
    const o = t0 + 4 * (r() % Math.max(1, len / 4));
    return `.BTF type section word at ${o - t0}: ${set32(d, o, r)}`;
  },
  btfExtRecords(d, l, r) {
    if (!l.btfExt) return STRATEGIES.bitflip(d, l, r);
    const b = l.btfExt.offset;
    const hdr = d.readUInt32LE(b + 4);
    const o = b + hdr + 4 * (r() % Math.max(1, (l.btfExt.size - hdr) / 4));
    return `.BTF.ext record word at ${o - b - hdr}: ${set32(d, o, r)}`;
  },
};

/**
 * True when every byte the mutant changed lies in the contents of sections libbpf skips (DWARF
 * .debug_* and their relocations, .llvm_addrsig): to libbpf and the kernel it is the original.
 */
export function onlyIgnoredBytesChanged(original: Buffer, layout: Layout, mutant: Buffer): boolean {
  if (mutant.length !== original.length) return false;
  const ignored = layout.sections.filter((s) => /^(\.rel)?\.debug_|^\.llvm_addrsig$/.test(s.name) && s.type !== SHT.NOBITS);
  for (let o = 0; o < original.length; o++) {
    if (original[o] === mutant[o]) continue;
    if (!ignored.some((s) => o >= s.offset && o < s.offset + s.size)) return false;
  }
  return true;
}

export const STRATEGY_NAMES = Object.keys(STRATEGIES);

/** Mutant number `index` of `original` under `seed`. */
export function mutate(original: Buffer, layout: Layout, seed: number, index: number): Mutant {
  const r = rng((seed ^ Math.imul(index + 1, 0x27d4eb2d)) >>> 0);
  const strategy = STRATEGY_NAMES[index % STRATEGY_NAMES.length];
  if (strategy === 'truncate') {
    const cut = r() % 3 === 0 ? layout.sections[r() % layout.sections.length].offset + (r() % 16) : r() % original.length;
    return { strategy, what: `truncated to ${Math.min(cut, original.length)} of ${original.length} bytes`, bytes: Buffer.from(original.subarray(0, cut)) };
  }
  const bytes = Buffer.from(original);
  const what = STRATEGIES[strategy](bytes, layout, r);
  return { strategy, what, bytes };
}
