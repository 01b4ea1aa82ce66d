import { invalidInput, type BpfdError } from '../base/errors.js';
import { checkBtf, checkBtfExt } from './btf-gate.js';
import type { ElfSection } from './elf.js';

/**
 * The strict gate every object passes before anything else reads it, bpfd's own ELF reader and
 * libbpf included. bpfd runs as root and objects come from users and registries, so every
 * offset, size, count and index the file declares is checked against the file itself: the ELF
 * header, the section headers, the string tables, the symbol table, the relocations, the BTF and
 * BTF.ext headers and records, and the license and maps sections. After it passes, readers may
 * index the buffer with the file's own numbers without going out of bounds.
 *
 * The checks are those of a well-formed relocatable ELF as clang emits it for BPF: anything a
 * compiler would not produce (overlapping headers, unterminated strings, indices past the end)
 * is refused with what is wrong and where, rather than guessed at.
 */

const ELF_HEADER = 64;
const SHDR = 64;
const SYM = 24;
const REL = 16;
const ET_REL = 1;
export const EM_BPF = 247;
const SHN_LORESERVE = 0xff00;
const SHN_ABS = 0xfff1;
const SHN_COMMON = 0xfff2;

/** ELF constants (elf.h) the gate and the reader share. */
export const SHT = { NULL: 0, PROGBITS: 1, SYMTAB: 2, STRTAB: 3, RELA: 4, NOBITS: 8, REL: 9, DYNSYM: 11 } as const;
export const SHF_EXECINSTR = 0x4;
export const STT = { OBJECT: 1, FUNC: 2 } as const;
export const STB_GLOBAL = 1;

/** A malformed object: the message CLI.md promises, naming what is wrong and where. */
export function malformed(path: string, what: string): BpfdError {
  return invalidInput(`${path} is not a valid BPF object: ${what}`, [
    'the file is damaged or was not produced by a BPF compiler; rebuild it with: clang -O2 -g -target bpf -c prog.c -o prog.o',
  ]);
}

/** Unsigned 64-bit little-endian as a number; values past 2^53 lose precision but stay huge. */
export const u64 = (d: Buffer, o: number) => d.readUInt32LE(o) + d.readUInt32LE(o + 4) * 4294967296;

/** A section header as the gate decodes it: the reader's ElfSection before names are resolved. */
export interface GateSection extends Omit<ElfSection, 'name'> {
  nameOff: number;
  entsize: number;
}

/** What the gate learnt while checking, so the reader does not decode headers twice. */
export interface CheckedElf {
  sections: GateSection[];
  names: string[];
  symtab: GateSection | null;
}

/** Checks the whole object; throws `malformed` at the first thing out of bounds or inconsistent. */
export function checkBpfObject(path: string, data: Buffer): CheckedElf {
  const bad = (what: string) => malformed(path, what);
  const len = data.length;
  if (len < ELF_HEADER) throw bad(`the file has ${len} bytes, fewer than an ELF header (64)`);
  if (data.readUInt32BE(0) !== 0x7f454c46) throw bad('no ELF magic at offset 0');
  if (data[4] !== 2) throw bad('ELF class is not 64-bit (byte 4)');
  if (data[5] !== 1) throw bad('not little-endian (byte 5)');
  if (data[6] !== 1) throw bad(`ELF identification version is ${data[6]}, not 1 (byte 6)`);
  const type = data.readUInt16LE(16);
  if (type !== ET_REL) throw bad(`ELF type is ${type}, not a relocatable object (1) (e_type, offset 16)`);
  const machine = data.readUInt16LE(18);
  if (machine !== EM_BPF) throw bad(`ELF machine is ${machine}, not BPF (${EM_BPF}) (e_machine, offset 18)`);
  if (data.readUInt32LE(20) !== 1) throw bad(`ELF version is ${data.readUInt32LE(20)}, not 1 (e_version, offset 20)`);
  const phoff = u64(data, 32);
  const shoff = u64(data, 40);
  const ehsize = data.readUInt16LE(52);
  const phentsize = data.readUInt16LE(54);
  const phnum = data.readUInt16LE(56);
  const shentsize = data.readUInt16LE(58);
  const shnum = data.readUInt16LE(60);
  const shstrndx = data.readUInt16LE(62);
  if (ehsize !== ELF_HEADER) throw bad(`ELF header size is ${ehsize}, not 64 (e_ehsize, offset 52)`);
  if (phnum !== 0 && (phoff < ELF_HEADER || phoff + phnum * phentsize > len)) {
    throw bad(`program headers at ${phoff} (${phnum} × ${phentsize} bytes) lie outside the file of ${len} bytes`);
  }
  if (shentsize !== SHDR) throw bad(`section header size is ${shentsize}, not 64 (e_shentsize, offset 58)`);
  if (shnum === 0) throw bad('the object has no section headers (e_shnum is 0; extended numbering is not supported)');
  if (shnum >= SHN_LORESERVE) throw bad(`e_shnum ${shnum} is in the reserved range`);
  if (shoff < ELF_HEADER || shoff % 8 !== 0 || shoff + shnum * SHDR > len) {
    throw bad(`section header table at offset ${shoff} (${shnum} × 64 bytes) does not fit in the file of ${len} bytes (e_shoff, offset 40)`);
  }
  if (shstrndx === 0 || shstrndx >= shnum) throw bad(`section name table index ${shstrndx} is not one of the ${shnum} sections (e_shstrndx, offset 62)`);

  const sections: GateSection[] = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * SHDR;
    const s: GateSection = {
      index: i,
      nameOff: data.readUInt32LE(o),
      type: data.readUInt32LE(o + 4),
      flags: u64(data, o + 8),
      offset: u64(data, o + 24),
      size: u64(data, o + 32),
      link: data.readUInt32LE(o + 40),
      info: data.readUInt32LE(o + 44),
      entsize: u64(data, o + 56),
    };
    const where = `section header ${i} at offset ${o}`;
    if (i === 0) {
      if (s.type !== SHT.NULL) throw bad(`${where}: the first section header must be empty (SHT_NULL), it has type ${s.type}`);
    } else if (s.type !== SHT.NOBITS && s.type !== SHT.NULL && (s.offset > len || s.size > len - s.offset)) {
      throw bad(`${where}: data at offset ${s.offset} of ${s.size} bytes runs past the end of the file (${len} bytes)`);
    }
    if (s.link >= shnum) throw bad(`${where}: sh_link ${s.link} is not one of the ${shnum} sections`);
    sections.push(s);
  }

  const shstr = sections[shstrndx];
  checkStringTable(bad, data, shstr, `section name table (section ${shstrndx})`);
  const names = sections.map((s) => {
    if (s.nameOff >= shstr.size) throw bad(`section header ${s.index}: name offset ${s.nameOff} is past the section name table (${shstr.size} bytes)`);
    return data.toString('latin1', shstr.offset + s.nameOff, data.indexOf(0, shstr.offset + s.nameOff));
  });
  const at = (s: GateSection) => `section ${s.index} (${names[s.index] || 'unnamed'})`;
  // Readers find sections by name (.text, license, .maps, .BTF): a name must mean one section.
  const firstNamed = new Map<string, number>();
  for (const s of sections) {
    const n = names[s.index];
    if (!n) continue;
    const earlier = firstNamed.get(n);
    if (earlier !== undefined) throw bad(`${at(s)}: a second section named ${n} (the first is section ${earlier})`);
    firstNamed.set(n, s.index);
  }
  const text = sections[firstNamed.get('.text') ?? 0];
  if (text.index !== 0 && text.size > 0 && !(text.flags & SHF_EXECINSTR)) throw bad(`${at(text)}: .text is not executable`);

  let symtab: GateSection | null = null;
  for (const s of sections) {
    if (s.index === 0) continue;
    if (s.type === SHT.SYMTAB) {
      if (symtab) throw bad(`${at(s)}: a second symbol table (the first is section ${symtab.index})`);
      symtab = s;
    } else if (s.type === SHT.DYNSYM || s.type === SHT.RELA) {
      throw bad(`${at(s)}: section type ${s.type} does not occur in BPF objects`);
    } else if (s.flags & SHF_EXECINSTR && (s.type !== SHT.PROGBITS || s.size % 8 !== 0)) {
      throw bad(`${at(s)}: executable section of ${s.size} bytes is not a whole number of 8-byte instructions in the file`);
    }
  }
  let nsyms = 0;
  if (symtab) {
    if (symtab.size % SYM !== 0) throw bad(`${at(symtab)}: symbol table of ${symtab.size} bytes is not a whole number of 24-byte symbols`);
    const strtab = sections[symtab.link];
    if (strtab.index === 0 || strtab.type !== SHT.STRTAB) throw bad(`${at(symtab)}: sh_link ${symtab.link} does not name a string table`);
    checkStringTable(bad, data, strtab, `symbol string table (${at(strtab)})`);
    nsyms = symtab.size / SYM;
    for (let k = 0; k < nsyms; k++) {
      const o = symtab.offset + k * SYM;
      const where = `symbol ${k} at offset ${o}`;
      const nameOff = data.readUInt32LE(o);
      if (nameOff >= strtab.size) throw bad(`${where}: name offset ${nameOff} is past the string table (${strtab.size} bytes)`);
      const shndx = data.readUInt16LE(o + 6);
      if (shndx === 0 || shndx === SHN_ABS || shndx === SHN_COMMON) continue;
      if (shndx >= shnum) throw bad(`${where}: section index ${shndx} is not one of the ${shnum} sections`);
      const symType = data[o + 4] & 0xf;
      if (symType !== STT.OBJECT && symType !== STT.FUNC) continue; // only objects and functions have extents
      const value = u64(data, o + 8);
      const size = u64(data, o + 16);
      const sec = sections[shndx];
      if (value > sec.size || size > sec.size - value) {
        throw bad(`${where}: [${value}, +${size}) lies outside ${at(sec)} of ${sec.size} bytes`);
      }
      if (symType === STT.FUNC && sec.flags & SHF_EXECINSTR && (value % 8 !== 0 || size % 8 !== 0)) {
        throw bad(`${where}: function at byte ${value}, ${size} bytes, does not start and end on an instruction boundary in ${at(sec)}`);
      }
    }
  }

  for (const s of sections) {
    if (s.type !== SHT.REL) continue;
    if (!symtab || s.link !== symtab.index) throw bad(`${at(s)}: relocations name section ${s.link} as their symbol table, not the symbol table`);
    if (s.info === 0 || s.info >= shnum) throw bad(`${at(s)}: sh_info ${s.info} does not name a section the relocations apply to`);
    if (s.size % REL !== 0) throw bad(`${at(s)}: ${s.size} bytes is not a whole number of 16-byte relocations`);
    const target = sections[s.info];
    // an instruction for code; data relocations patch at least 4 bytes (R_BPF_64_ABS32)
    const code = (target.flags & SHF_EXECINSTR) !== 0;
    const step = code ? 8 : 1;
    const width = code ? 8 : 4;
    for (let o = s.offset; o < s.offset + s.size; o += REL) {
      const where = `${at(s)}, relocation at offset ${o}`;
      const rOff = u64(data, o);
      const symIdx = data.readUInt32LE(o + 12);
      if (symIdx >= nsyms) throw bad(`${where}: symbol index ${symIdx} is past the ${nsyms} symbols`);
      if (rOff % step !== 0 || rOff > target.size || target.size - rOff < width) {
        throw bad(`${where}: offset ${rOff} is not ${step === 8 ? 'an instruction' : 'a place'} inside ${at(target)} of ${target.size} bytes`);
      }
    }
  }

  const byName = (n: string) => sections.find((s) => names[s.index] === n);
  const license = byName('license');
  if (license) {
    if (license.type !== SHT.PROGBITS || license.size === 0 || data.indexOf(0, license.offset) >= license.offset + license.size || data.indexOf(0, license.offset) < 0) {
      throw bad(`${at(license)}: the license is not a NUL-terminated string inside its section`);
    }
  }
  const version = byName('version');
  if (version && (version.type !== SHT.PROGBITS || version.size !== 4)) throw bad(`${at(version)}: the version section must hold one 4-byte number`);
  const legacyMaps = byName('maps');
  if (legacyMaps) throw bad(`${at(legacyMaps)}: legacy "maps" sections are not supported; declare maps in ".maps" with BTF`);
  const maps = byName('.maps');
  const btf = byName('.BTF');
  if (maps && maps.type !== SHT.PROGBITS) throw bad(`${at(maps)}: the .maps section has no data in the file`);
  if (maps && !btf) throw bad(`${at(maps)}: maps are declared in .maps but the object has no .BTF section to describe them`);
  let types = 0;
  let strLen = 0;
  if (btf) {
    if (btf.type !== SHT.PROGBITS) throw bad(`${at(btf)}: .BTF has no data in the file`);
    ({ types, strLen } = checkBtf(bad, data.subarray(btf.offset, btf.offset + btf.size), at(btf)));
  }
  const ext = byName('.BTF.ext');
  if (ext) {
    if (!btf) throw bad(`${at(ext)}: .BTF.ext without a .BTF section`);
    if (ext.type !== SHT.PROGBITS) throw bad(`${at(ext)}: .BTF.ext has no data in the file`);
    const btfBytes = data.subarray(btf.offset, btf.offset + btf.size);
    const sectionSize = (name: string) => byName(name)?.size;
    checkBtfExt(bad, data.subarray(ext.offset, ext.offset + ext.size), at(ext), { types, strLen, btf: btfBytes, sectionSize });
  }
  return { sections, names, symtab };
}

function checkStringTable(bad: (w: string) => BpfdError, data: Buffer, s: GateSection, what: string) {
  if (s.type !== SHT.STRTAB) throw bad(`${what}: section type is ${s.type}, not a string table (3)`);
  if (s.size === 0 || data[s.offset + s.size - 1] !== 0) throw bad(`${what}: the string table does not end with a NUL byte`);
}
