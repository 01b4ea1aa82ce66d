import { sha256Hex } from '../base/sha256.js';
import { invalidInput } from '../base/errors.js';
import { timedSync } from '../base/timings.js';
import { checkBpfObject, EM_BPF, SHF_EXECINSTR, SHT, STB_GLOBAL, STT } from './elf-gate.js';
import { readObjectFile } from './object-file.js';

/**
 * Just enough ELF to judge a BPF object before libbpf sees it: whether it is one at all, which
 * functions it has in which sections, its license, and where its global variables live (for
 * --global). Reading this ourselves lets bad input fail with a precise message and no kernel
 * state, and keeps policy facts available without loading anything.
 */

const SHT_SYMTAB = SHT.SYMTAB;
const SHT_REL = SHT.REL;
const STT_OBJECT = STT.OBJECT;
const STT_FUNC = STT.FUNC;

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  offset: number;
  size: number;
  link: number;
  info: number;
}

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
  type: number;
  bind: number;
  shndx: number;
}

export interface ElfFunction {
  name: string;
  section: string;
  /** offset in instructions inside its section */
  insnOffset: number;
  insnCount: number;
  global: boolean;
  /** program type as libbpf derives it from the section name (programTypeOfSection) */
  type: SectionProgramType;
}

export interface ElfGlobal {
  name: string;
  /** .data, .rodata, .bss or one of their .name-suffixed variants */
  section: string;
  offset: number;
  size: number;
}

export interface BpfElf {
  path: string;
  /** the object's bytes: what the policy judged is exactly what libbpf loads (and what --persist keeps) */
  bytes: Buffer;
  sha256: string;
  sections: ElfSection[];
  symbols: ElfSymbol[];
  license: string;
  /** programs: global functions in executable sections other than .text */
  programs: ElfFunction[];
  globals: ElfGlobal[];
  /** programs named as initial values of a prog array (tail-call targets) */
  progArrayTargets: string[];
  sectionData(name: string): Buffer | null;
}

export function readBpfElf(path: string): BpfElf {
  return parseBpfElf(path, readObjectFile(path));
}

export function parseBpfElf(path: string, data: Buffer): BpfElf {
  const notBpf = (why: string) =>
    invalidInput(`${path} is not a BPF object file: ${why}`, ['compile it with: clang -O2 -g -target bpf -c prog.c -o prog.o']);
  if (data.length < 64 || data.readUInt32BE(0) !== 0x7f454c46) throw notBpf('no ELF header');
  if (data[4] !== 2) throw notBpf('not a 64-bit ELF');
  if (data[5] !== 1) throw notBpf('not little-endian (big-endian BPF objects do not run on this host)');
  const machine = data.readUInt16LE(18);
  if (machine !== EM_BPF) throw notBpf(`ELF machine is ${machine}, not BPF (${EM_BPF})`);
  // Everything below indexes the buffer with the file's own numbers: the gate checked them all.
  timedSync('object gate', () => checkBpfObject(path, data));

  const shoff = Number(data.readBigUInt64LE(40));
  const shentsize = data.readUInt16LE(58);
  const shnum = data.readUInt16LE(60);
  const shstrndx = data.readUInt16LE(62);
  if (shoff + shnum * shentsize > data.length || shentsize < 64) throw notBpf('truncated section table');

  const raw: Omit<ElfSection, 'name'>[] & { nameOff?: number }[] = [];
  const nameOffs: number[] = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    nameOffs.push(data.readUInt32LE(o));
    raw.push({
      index: i,
      type: data.readUInt32LE(o + 4),
      flags: Number(data.readBigUInt64LE(o + 8)),
      offset: Number(data.readBigUInt64LE(o + 24)),
      size: Number(data.readBigUInt64LE(o + 32)),
      link: data.readUInt32LE(o + 40),
      info: data.readUInt32LE(o + 44),
    });
  }
  const strtab = raw[shstrndx];
  if (!strtab) throw notBpf('no section name table');
  const str = (tab: { offset: number; size: number }, off: number) => {
    const start = tab.offset + off;
    const end = data.indexOf(0, start);
    return data.toString('utf8', start, end < 0 ? tab.offset + tab.size : end);
  };
  const sections: ElfSection[] = raw.map((s, i) => ({ ...s, name: str(strtab, nameOffs[i]) }));
  const byName = new Map(sections.map((s) => [s.name, s]));
  const sectionData = (name: string) => {
    const s = byName.get(name);
    if (!s || s.type === 8 /* NOBITS */) return null;
    return data.subarray(s.offset, s.offset + s.size);
  };

  const symtab = sections.find((s) => s.type === SHT_SYMTAB);
  const symbols: ElfSymbol[] = [];
  if (symtab) {
    const symstr = sections[symtab.link];
    for (let o = symtab.offset; o + 24 <= symtab.offset + symtab.size; o += 24) {
      const info = data[o + 4];
      symbols.push({
        name: str(symstr, data.readUInt32LE(o)),
        type: info & 0xf,
        bind: info >> 4,
        shndx: data.readUInt16LE(o + 6),
        value: Number(data.readBigUInt64LE(o + 8)),
        size: Number(data.readBigUInt64LE(o + 16)),
      });
    }
  }

  const programs: ElfFunction[] = [];
  const globals: ElfGlobal[] = [];
  for (const sym of symbols) {
    const sec = sections[sym.shndx];
    if (!sec || !sym.name) continue;
    if (sym.type === STT_FUNC && sec.flags & SHF_EXECINSTR && sec.name !== '.text') {
      programs.push({
        name: sym.name,
        section: sec.name,
        insnOffset: sym.value / 8,
        insnCount: sym.size / 8,
        global: sym.bind === STB_GLOBAL,
        type: programTypeOfSection(sec.name),
      });
    } else if (sym.type === STT_OBJECT && /^\.(data|rodata|bss)(\.|$)/.test(sec.name) && !sec.name.startsWith('.rodata.str')) {
      globals.push({ name: sym.name, section: sec.name, offset: sym.value, size: sym.size });
    }
  }

  const licenseData = sectionData('license');
  const license = licenseData ? licenseData.toString('utf8').replace(/\0.*$/s, '') : '';

  // Relocations against .maps that name functions are libbpf's declarative prog-array values.
  const progArrayTargets: string[] = [];
  const mapsSec = byName.get('.maps');
  for (const rel of sections.filter((s) => s.type === SHT_REL && mapsSec && s.info === mapsSec.index)) {
    for (let o = rel.offset; o + 16 <= rel.offset + rel.size; o += 16) {
      const symIdx = Number(data.readBigUInt64LE(o + 8) >> 32n);
      const sym = symbols[symIdx];
      if (sym && sym.type === STT_FUNC) progArrayTargets.push(sym.name);
    }
  }

  return {
    path,
    bytes: data,
    sha256: sha256Hex(data),
    sections,
    symbols,
    license,
    programs,
    globals,
    progArrayTargets,
    sectionData,
  };
}

export type SectionProgramType = 'xdp' | 'tc' | 'tcx' | 'tracepoint' | 'uprobe' | 'kprobe' | 'unspec';

/** Program type as bpfd names it, from the section, the way libbpf derives it. */
export function programTypeOfSection(section: string): SectionProgramType {
  if (section === 'xdp' || section.startsWith('xdp/') || section === 'xdp.frags' || section.startsWith('xdp.frags/')) return 'xdp';
  if (section.startsWith('tcx/')) return 'tcx';
  if (section === 'tc' || section.startsWith('classifier') || section.startsWith('tc/')) return 'tc';
  if (section.startsWith('tracepoint/') || section.startsWith('tp/') || section.startsWith('raw_tp/') || section.startsWith('raw_tracepoint/')) return 'tracepoint';
  if (section.startsWith('uprobe') || section.startsWith('uretprobe')) return 'uprobe';
  if (section.startsWith('kprobe') || section.startsWith('kretprobe')) return 'kprobe';
  return 'unspec';
}

/** Licenses the kernel treats as GPL-compatible (include/linux/license.h). */
export function isGplCompatible(license: string): boolean {
  return ['GPL', 'GPL v2', 'GPL and additional rights', 'Dual BSD/GPL', 'Dual MIT/GPL', 'Dual MPL/GPL'].includes(license);
}
