import type { BpfdError } from '../base/errors.js';

/**
 * The BTF half of the object gate (elf-gate.ts): the .BTF header, every type record with its
 * members, the type ids and string offsets they name; and the .BTF.ext header with its
 * func_info, line_info and CO-RE relocation records. Layout facts are the kernel's
 * (include/uapi/linux/btf.h) and libbpf's (libbpf_internal.h); the numbers are checked against
 * the section, never trusted.
 */

const BTF_MAGIC = 0xeb9f;
const HEADER = 24;
const EXT_HEADER = 24;
const EXT_HEADER_CORE = 32;
const KIND_MAX = 19;
const MAX_TYPES = 0xfffff;

type Bad = (what: string) => BpfdError;

/** Bytes each kind adds after the 12-byte common record: fixed part and per-vlen part. */
const EXTRA: Array<[fixed: number, perMember: number]> = [
  [0, 0], // 0 UNKN: never valid
  [4, 0], // INT
  [0, 0], // PTR
  [12, 0], // ARRAY
  [0, 12], // STRUCT
  [0, 12], // UNION
  [0, 8], // ENUM
  [0, 0], // FWD
  [0, 0], // TYPEDEF
  [0, 0], // VOLATILE
  [0, 0], // CONST
  [0, 0], // RESTRICT
  [0, 0], // FUNC
  [0, 8], // FUNC_PROTO
  [4, 0], // VAR
  [0, 12], // DATASEC
  [0, 0], // FLOAT
  [4, 0], // DECL_TAG
  [0, 0], // TYPE_TAG
  [0, 12], // ENUM64
];
/** Kinds whose third word is a type id rather than a size. */
const REFERS = new Set([2, 8, 9, 10, 11, 12, 13, 14, 17, 18]);

export interface BtfShape {
  /** number of types (ids 1..types are valid; 0 is void) */
  types: number;
  strLen: number;
}

export function checkBtf(bad: Bad, btf: Buffer, where: string): BtfShape {
  if (btf.length < HEADER) throw bad(`${where}: ${btf.length} bytes, fewer than a BTF header (24)`);
  if (btf.readUInt16LE(0) !== BTF_MAGIC) throw bad(`${where}: no BTF magic (0xeb9f, little-endian) at its start`);
  if (btf[2] !== 1) throw bad(`${where}: BTF version ${btf[2]}, not 1`);
  const hdrLen = btf.readUInt32LE(4);
  const typeOff = btf.readUInt32LE(8);
  const typeLen = btf.readUInt32LE(12);
  const strOff = btf.readUInt32LE(16);
  const strLen = btf.readUInt32LE(20);
  if (hdrLen < HEADER || hdrLen > btf.length) throw bad(`${where}: BTF header length ${hdrLen} is outside 24..${btf.length}`);
  for (let o = HEADER; o < hdrLen; o++) if (btf[o] !== 0) throw bad(`${where}: unknown non-zero BTF header field at byte ${o}`);
  const body = btf.length - hdrLen;
  if (typeOff % 4 !== 0) throw bad(`${where}: BTF type section offset ${typeOff} is not 4-byte aligned`);
  if (typeOff > body || typeLen > body - typeOff) throw bad(`${where}: BTF types [${typeOff}, +${typeLen}) run past the ${body} bytes after the header`);
  if (strOff > body || strLen > body - strOff) throw bad(`${where}: BTF strings [${strOff}, +${strLen}) run past the ${body} bytes after the header`);
  if (typeOff + typeLen > strOff) throw bad(`${where}: BTF types [${typeOff}, +${typeLen}) overlap the strings at ${strOff}`);
  const s0 = hdrLen + strOff;
  if (strLen === 0 || btf[s0] !== 0 || btf[s0 + strLen - 1] !== 0) throw bad(`${where}: BTF strings must start and end with a NUL byte`);
  const name = (off: number, what: string) => {
    if (off >= strLen) throw bad(`${where}: ${what}: string offset ${off} is past the ${strLen} bytes of BTF strings`);
  };

  // First pass: record boundaries (so type ids can be checked against the count), names.
  const t0 = hdrLen + typeOff;
  const end = t0 + typeLen;
  const refs: Array<[at: number, id: number]> = [];
  let id = 0;
  for (let o = t0; o < end; ) {
    id++;
    if (id > MAX_TYPES) throw bad(`${where}: more than ${MAX_TYPES} BTF types`);
    const at = `BTF type ${id} at byte ${o - t0} of the type section`;
    if (end - o < 12) throw bad(`${where}: ${at}: record cut off by the end of the type section`);
    const info = btf.readUInt32LE(o + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    if (kind === 0 || kind > KIND_MAX) throw bad(`${where}: ${at}: unknown kind ${kind}`);
    name(btf.readUInt32LE(o), at);
    const [fixed, per] = EXTRA[kind];
    const size = 12 + fixed + per * vlen;
    if (end - o < size) throw bad(`${where}: ${at}: ${vlen} members need ${size} bytes, only ${end - o} are left`);
    if (REFERS.has(kind)) refs.push([o, btf.readUInt32LE(o + 8)]);
    const m = o + 12 + fixed;
    if (kind === 3) {
      refs.push([o, btf.readUInt32LE(o + 12)], [o, btf.readUInt32LE(o + 16)]);
    } else if (kind === 4 || kind === 5) {
      for (let k = 0; k < vlen; k++) {
        name(btf.readUInt32LE(m + k * 12), `${at}, member ${k}`);
        refs.push([o, btf.readUInt32LE(m + k * 12 + 4)]);
      }
    } else if (kind === 6 || kind === 19) {
      for (let k = 0; k < vlen; k++) name(btf.readUInt32LE(m + k * per), `${at}, value ${k}`);
    } else if (kind === 13) {
      for (let k = 0; k < vlen; k++) {
        name(btf.readUInt32LE(m + k * 8), `${at}, parameter ${k}`);
        refs.push([o, btf.readUInt32LE(m + k * 8 + 4)]);
      }
    } else if (kind === 15) {
      for (let k = 0; k < vlen; k++) refs.push([o, btf.readUInt32LE(m + k * 12)]);
    }
    o += size;
  }
  for (const [o, ref] of refs) {
    if (ref > id) throw bad(`${where}: BTF type at byte ${o - t0} of the type section refers to type ${ref}, but there are ${id} types`);
  }
  return { types: id, strLen };
}

export interface BtfExtContext extends BtfShape {
  btf: Buffer;
  /** size of the ELF section a record names, when there is one */
  sectionSize(name: string): number | undefined;
}

export function checkBtfExt(bad: Bad, ext: Buffer, where: string, ctx: BtfExtContext) {
  if (ext.length < EXT_HEADER) throw bad(`${where}: ${ext.length} bytes, fewer than a BTF.ext header (24)`);
  if (ext.readUInt16LE(0) !== BTF_MAGIC) throw bad(`${where}: no BTF magic (0xeb9f, little-endian) at its start`);
  if (ext[2] !== 1) throw bad(`${where}: BTF.ext version ${ext[2]}, not 1`);
  const hdrLen = ext.readUInt32LE(4);
  if (hdrLen < EXT_HEADER || hdrLen > ext.length) throw bad(`${where}: BTF.ext header length ${hdrLen} is outside 24..${ext.length}`);
  const strBase = ctx.btf.readUInt32LE(4) + ctx.btf.readUInt32LE(16);
  const secName = (off: number) => {
    if (off === 0 || off >= ctx.strLen) throw bad(`${where}: section name offset ${off} is not a BTF string`);
    return ctx.btf.toString('latin1', strBase + off, ctx.btf.indexOf(0, strBase + off));
  };
  const infos: Array<[label: string, word: number, minRecord: number]> = [
    ['func_info', 8, 8],
    ['line_info', 16, 16],
  ];
  if (hdrLen >= EXT_HEADER_CORE) infos.push(['core_relo', 24, 16]);
  for (const [label, word, minRecord] of infos) {
    const off = ext.readUInt32LE(word);
    const len = ext.readUInt32LE(word + 4);
    if (len === 0) continue;
    const body = ext.length - hdrLen;
    if (off % 4 !== 0) throw bad(`${where}: ${label} offset ${off} is not 4-byte aligned`);
    if (off > body || len > body - off) throw bad(`${where}: ${label} [${off}, +${len}) runs past the ${body} bytes after the header`);
    const start = hdrLen + off;
    const end = start + len;
    if (len < 4) throw bad(`${where}: ${label} has no record size`);
    const recSize = ext.readUInt32LE(start);
    if (recSize < minRecord || recSize % 4 !== 0) throw bad(`${where}: ${label} record size ${recSize} is not a multiple of 4 of at least ${minRecord}`);
    for (let o = start + 4; o < end; ) {
      if (end - o < 8) throw bad(`${where}: ${label} section header at byte ${o} cut off`);
      const sec = secName(ext.readUInt32LE(o));
      const num = ext.readUInt32LE(o + 4);
      if (num === 0) throw bad(`${where}: ${label} for section ${sec} has no records`);
      if (num > (end - o - 8) / recSize) throw bad(`${where}: ${label} for section ${sec}: ${num} records of ${recSize} bytes run past the end`);
      const secSize = ctx.sectionSize(sec);
      for (let r = o + 8; r < o + 8 + num * recSize; r += recSize) {
        const at = `${where}: ${label} record at byte ${r} (section ${sec})`;
        const insnOff = ext.readUInt32LE(r);
        if (insnOff % 8 !== 0 || (secSize !== undefined && insnOff >= secSize)) throw bad(`${at}: instruction offset ${insnOff} is not an instruction of the section`);
        const a = ext.readUInt32LE(r + 4);
        if (label === 'func_info' && (a === 0 || a > ctx.types)) throw bad(`${at}: type id ${a} is not one of the ${ctx.types} BTF types`);
        if (label === 'line_info') {
          const line = ext.readUInt32LE(r + 8);
          if (a >= ctx.strLen || line >= ctx.strLen) throw bad(`${at}: file or line string offset past the ${ctx.strLen} bytes of BTF strings`);
        }
        if (label === 'core_relo') {
          const access = ext.readUInt32LE(r + 8);
          const kind = ext.readUInt32LE(r + 12);
          if (a === 0 || a > ctx.types) throw bad(`${at}: type id ${a} is not one of the ${ctx.types} BTF types`);
          if (access === 0 || access >= ctx.strLen) throw bad(`${at}: access string offset ${access} is not a BTF string`);
          if (kind > 13) throw bad(`${at}: unknown relocation kind ${kind}`);
        }
      }
      o += 8 + num * recSize;
    }
  }
}
