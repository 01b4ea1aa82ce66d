/**
 * eBPF instruction encoding (include/uapi/linux/bpf.h, Documentation/bpf/standardization):
 * 8 bytes each — opcode, dst/src nibbles, signed 16-bit offset, signed 32-bit immediate. The one
 * decoder: the dispatcher reads and rewrites member code with it, and the policy layer reads
 * helper and kfunc calls with it. It lives in base, pure, because policy may not import the
 * dispatcher (both sit above base; see test/unit/layers.test.ts).
 */

export interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

// classes
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_JMP32 = 0x06;
export const BPF_ALU64 = 0x07;
// sizes / modes
export const BPF_W = 0x00;
export const BPF_DW = 0x18;
export const BPF_IMM = 0x00;
export const BPF_MEM = 0x60;
export const BPF_ATOMIC = 0xc0;
// sources
export const BPF_K = 0x00;
export const BPF_X = 0x08;
// alu ops
export const BPF_ADD = 0x00;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_MOV = 0xb0;
// jmp ops
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JLT = 0xa0;
export const BPF_JSET = 0x40;
export const BPF_JLE = 0xb0;
export const BPF_CALL = 0x80;
export const BPF_EXIT = 0x90;

// src_reg markers
export const BPF_PSEUDO_MAP_FD = 1;
export const BPF_PSEUDO_MAP_VALUE = 2;
export const BPF_PSEUDO_BTF_ID = 3;
export const BPF_PSEUDO_FUNC = 4;
export const BPF_PSEUDO_MAP_IDX = 5;
export const BPF_PSEUDO_MAP_IDX_VALUE = 6;
export const BPF_PSEUDO_CALL = 1;
export const BPF_PSEUDO_KFUNC_CALL = 2;

export const BPF_FUNC_get_smp_processor_id = 8;
export const BPF_FUNC_tail_call = 12;

export const LD_IMM64 = BPF_LD | BPF_DW | BPF_IMM; // 0x18

export const cls = (code: number) => code & 0x07;
export const opOf = (code: number) => code & 0xf0;

export function decodeInsns(buf: Buffer): Insn[] {
  if (buf.length % 8 !== 0) throw new Error(`instruction buffer of ${buf.length} bytes is not a whole number of 8-byte instructions`);
  const out: Insn[] = [];
  for (let o = 0; o < buf.length; o += 8) {
    const regs = buf[o + 1];
    out.push({ code: buf[o], dst: regs & 0x0f, src: regs >> 4, off: buf.readInt16LE(o + 2), imm: buf.readInt32LE(o + 4) });
  }
  return out;
}

export function encodeInsns(insns: Insn[]): Buffer {
  const buf = Buffer.alloc(insns.length * 8);
  insns.forEach((i, n) => {
    const o = n * 8;
    buf[o] = i.code;
    buf[o + 1] = (i.dst & 0x0f) | ((i.src & 0x0f) << 4);
    buf.writeInt16LE(i.off, o + 2);
    buf.writeInt32LE(i.imm | 0, o + 4);
  });
  return buf;
}

export const isLdImm64 = (i: Insn) => i.code === LD_IMM64;
export const isExit = (i: Insn) => i.code === (BPF_JMP | BPF_EXIT);
export const isPseudoCall = (i: Insn) => i.code === (BPF_JMP | BPF_CALL) && i.src === BPF_PSEUDO_CALL;
export const isKfuncCall = (i: Insn) => i.code === (BPF_JMP | BPF_CALL) && i.src === BPF_PSEUDO_KFUNC_CALL;
export const isHelperCall = (i: Insn, helper: number) => i.code === (BPF_JMP | BPF_CALL) && i.src === 0 && i.imm === helper;

/**
 * Where a pc-relative instruction points, or null. Jumps use off, except the 32-bit-range `gotol`
 * (JMP32|JA) and pseudo calls/func references, which use imm.
 */
export function relTarget(i: Insn, pc: number): { field: 'off' | 'imm'; target: number } | null {
  const c = cls(i.code);
  if (isLdImm64(i)) return i.src === BPF_PSEUDO_FUNC ? { field: 'imm', target: pc + 1 + i.imm } : null;
  if (c !== BPF_JMP && c !== BPF_JMP32) return null;
  const op = opOf(i.code);
  if (op === BPF_CALL) return i.src === BPF_PSEUDO_CALL ? { field: 'imm', target: pc + 1 + i.imm } : null;
  if (op === BPF_EXIT) return null;
  if (c === BPF_JMP32 && op === BPF_JA) return { field: 'imm', target: pc + 1 + i.imm };
  return { field: 'off', target: pc + 1 + i.off };
}

/**
 * Registers an instruction may write, as a bit set over r0..r10. Calls clobber r0-r5 (the
 * callee-saved r6-r9 survive helper, kfunc and bpf-to-bpf calls alike); atomics with a fetch
 * write their source register (cmpxchg writes r0); everything else writes dst or nothing.
 */
export function writtenRegs(i: Insn): number {
  const c = cls(i.code);
  if (c === BPF_ALU || c === BPF_ALU64 || c === BPF_LDX) return 1 << i.dst;
  if (c === BPF_LD) return isLdImm64(i) ? 1 << i.dst : 0x3f; // legacy LD_ABS/IND clobber r0-r5
  if (c === BPF_STX && (i.code & 0xe0) === BPF_ATOMIC) {
    // Fetching atomics and load-acquire write a register; mark every candidate conservatively.
    return i.imm & 0x01 || i.imm >= 0x100 ? (1 << i.src) | (1 << i.dst) | 1 : 0;
  }
  if ((c === BPF_JMP || c === BPF_JMP32) && opOf(i.code) === BPF_CALL) return 0x3f;
  return 0;
}

// Builders for the generated code.
export const I = {
  mov64Reg: (dst: number, src: number): Insn => ({ code: BPF_ALU64 | BPF_MOV | BPF_X, dst, src, off: 0, imm: 0 }),
  mov64Imm: (dst: number, imm: number): Insn => ({ code: BPF_ALU64 | BPF_MOV | BPF_K, dst, src: 0, off: 0, imm }),
  alu64Imm: (op: number, dst: number, imm: number): Insn => ({ code: BPF_ALU64 | op | BPF_K, dst, src: 0, off: 0, imm }),
  alu64Reg: (op: number, dst: number, src: number): Insn => ({ code: BPF_ALU64 | op | BPF_X, dst, src, off: 0, imm: 0 }),
  ldxDw: (dst: number, src: number, off: number): Insn => ({ code: BPF_LDX | BPF_MEM | BPF_DW, dst, src, off, imm: 0 }),
  stxDw: (dst: number, src: number, off: number): Insn => ({ code: BPF_STX | BPF_MEM | BPF_DW, dst, src, off, imm: 0 }),
  jmpImm: (op: number, dst: number, imm: number, off: number): Insn => ({ code: BPF_JMP | op | BPF_K, dst, src: 0, off, imm }),
  mov32Reg: (dst: number, src: number): Insn => ({ code: BPF_ALU | BPF_MOV | BPF_X, dst, src, off: 0, imm: 0 }),
  mov32Imm: (dst: number, imm: number): Insn => ({ code: BPF_ALU | BPF_MOV | BPF_K, dst, src: 0, off: 0, imm }),
  alu32Reg: (op: number, dst: number, src: number): Insn => ({ code: BPF_ALU | op | BPF_X, dst, src, off: 0, imm: 0 }),
  jmp32Imm: (op: number, dst: number, imm: number, off: number): Insn => ({ code: BPF_JMP32 | op | BPF_K, dst, src: 0, off, imm }),
  ja: (off: number): Insn => ({ code: BPF_JMP | BPF_JA, dst: 0, src: 0, off, imm: 0 }),
  call: (helper: number): Insn => ({ code: BPF_JMP | BPF_CALL, dst: 0, src: 0, off: 0, imm: helper }),
  pseudoCall: (rel: number): Insn => ({ code: BPF_JMP | BPF_CALL, dst: 0, src: BPF_PSEUDO_CALL, off: 0, imm: rel }),
  exit: (): Insn => ({ code: BPF_JMP | BPF_EXIT, dst: 0, src: 0, off: 0, imm: 0 }),
  /** two slots: the map reference (fd or value + offset) is resolved by the kernel at load */
  ldMap: (dst: number, kind: number, fd: number, valueOff = 0): Insn[] => [
    { code: LD_IMM64, dst, src: kind, off: 0, imm: fd },
    { code: 0, dst: 0, src: 0, off: 0, imm: valueOff },
  ],
};
