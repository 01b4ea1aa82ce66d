import type { RelocatableImage } from './image.js';
import {
  BPF_ADD,
  BPF_ALU,
  BPF_ALU64,
  BPF_FUNC_tail_call,
  BPF_LDX,
  BPF_MOV,
  BPF_ST,
  BPF_STX,
  BPF_X,
  cls,
  decodeInsns,
  type Insn,
  isHelperCall,
  isLdImm64,
  opOf,
  writtenRegs,
} from '../base/insn.js';

/**
 * Whether a member's main function can be pasted into the dispatcher's main instead of being
 * called (a call and its return cost ~7.5 ns here, most of a slot's overhead). Inlining is safe
 * when the body has no tail call (a tail call from the main frame would never come back to the
 * chain) and leaves one callee-saved register untouched to carry ctx past it. It changes stack
 * accounting: inlined bodies share the main's frame, so the frame grows to the deepest of them
 * and every called member's chain sits on top of it; `chooseInlining` keeps that within the
 * verifier's limits using a conservative estimate, and the composer still falls back to calls
 * if the kernel disagrees.
 */

const CALLEE_SAVED = [6, 7, 8, 9];
const MAX_STACK = 512;
const TAIL_CALL_STACK = 256;

export interface MemberShape {
  insns: Insn[];
  /** end (exclusive) of the member's main function */
  mainEnd: number;
  /** r0..r10 bit set the main function may write */
  mainWrites: number;
  /** stack bytes each function uses, rounded as the JIT does; MAX_STACK when unknown */
  frameDepths: number[];
  /** upper bound of any call chain inside the member: the sum of its frames */
  chainBound: number;
  /** chainBound minus the smallest frame that makes a tail call (what sits below that call) */
  belowTailCall: number | null;
  tailCalls: boolean;
}

const round16 = (n: number) => Math.min(MAX_STACK, Math.ceil(n / 16) * 16);

export function memberShape(img: RelocatableImage): MemberShape {
  const insns = decodeInsns(img.insns);
  const starts = [...img.funcStarts, insns.length];
  const frameDepths: number[] = [];
  const tailFrames: number[] = [];
  for (let f = 0; f + 1 < starts.length; f++) {
    const depth = round16(stackDepth(insns, starts[f], starts[f + 1]));
    frameDepths.push(depth);
    for (let pc = starts[f]; pc < starts[f + 1]; pc++) if (isHelperCall(insns[pc], BPF_FUNC_tail_call)) tailFrames.push(depth);
  }
  const mainEnd = starts[1];
  let mainWrites = 0;
  for (let pc = 0; pc < mainEnd; pc++) {
    mainWrites |= writtenRegs(insns[pc]);
    if (isLdImm64(insns[pc])) pc++;
  }
  const chainBound = frameDepths.reduce((a, b) => a + b, 0);
  return {
    insns,
    mainEnd,
    mainWrites,
    frameDepths,
    chainBound,
    belowTailCall: tailFrames.length ? chainBound - Math.min(...tailFrames) : null,
    tailCalls: img.tailCalls,
  };
}

/** Callee-saved registers the member's main function never writes. */
export const freeCalleeSaved = (s: MemberShape) => CALLEE_SAVED.filter((r) => !((s.mainWrites >> r) & 1));

export const canInline = (s: MemberShape) => !s.tailCalls && freeCalleeSaved(s).length > 0;

/**
 * Largest stack offset reached through r10 in [from, to): direct r10-based accesses, and
 * pointers derived from r10 by moves and constant adds (how clang passes stack buffers to
 * helpers). Anything it cannot follow (a spilled frame pointer, arithmetic other than constant
 * adds) makes the answer MAX_STACK, which only costs the inlining, never correctness.
 */
export function stackDepth(insns: Insn[], from: number, to: number): number {
  let depth = 0;
  const fp = new Map<number, number>([[10, 0]]);
  const reach = (off: number) => {
    if (-off > depth) depth = -off;
  };
  for (let pc = from; pc < to; pc++) {
    const i = insns[pc];
    const c = cls(i.code);
    if (isLdImm64(i)) {
      fp.delete(i.dst);
      pc++;
      continue;
    }
    if (c === BPF_LDX && fp.has(i.src)) reach(fp.get(i.src)! + i.off);
    if ((c === BPF_ST || c === BPF_STX) && fp.has(i.dst)) reach(fp.get(i.dst)! + i.off);
    if (c === BPF_STX && fp.has(i.src) && i.src !== 10) return MAX_STACK;
    if (c === BPF_STX && i.src === 10) return MAX_STACK;
    if (c === BPF_ALU64 && opOf(i.code) === BPF_MOV && (i.code & BPF_X) && fp.has(i.src)) {
      fp.set(i.dst, fp.get(i.src)!);
      reach(fp.get(i.src)!);
      continue;
    }
    if (c === BPF_ALU64 && opOf(i.code) === BPF_ADD && !(i.code & BPF_X) && fp.has(i.dst) && i.dst !== 10) {
      fp.set(i.dst, fp.get(i.dst)! + i.imm);
      reach(fp.get(i.dst)!);
      continue;
    }
    // Any other use of a frame pointer as an operand of arithmetic is beyond this estimate.
    if ((c === BPF_ALU64 || c === BPF_ALU) && (i.code & BPF_X) && fp.has(i.src)) return MAX_STACK;
    if ((c === BPF_ALU64 || c === BPF_ALU) && fp.has(i.dst)) {
      if (i.dst === 10) return MAX_STACK;
      fp.delete(i.dst);
      continue;
    }
    const w = writtenRegs(i);
    for (const r of [...fp.keys()]) if (r !== 10 && (w >> r) & 1) fp.delete(r);
  }
  return depth;
}

/**
 * Picks the members to inline: every eligible one, then, while the estimated stack would break
 * the verifier's limits (512 bytes per chain, under 256 below a tail call), stops inlining the
 * one with the deepest frame.
 */
export function chooseInlining(shapes: MemberShape[], enabled: boolean): boolean[] {
  const inline = shapes.map((s) => enabled && canInline(s));
  for (;;) {
    const mainFrame = Math.max(0, ...shapes.map((s, n) => (inline[n] ? s.frameDepths[0] : 0)));
    const fits = shapes.every((s, n) => {
      const above = inline[n] ? s.chainBound - s.frameDepths[0] : s.chainBound;
      if (mainFrame + above > MAX_STACK) return false;
      if (s.belowTailCall !== null && mainFrame + s.belowTailCall >= TAIL_CALL_STACK) return false;
      return true;
    });
    if (fits) return inline;
    let deepest = -1;
    shapes.forEach((s, n) => {
      if (inline[n] && (deepest < 0 || s.frameDepths[0] > shapes[deepest].frameDepths[0])) deepest = n;
    });
    if (deepest < 0) return inline;
    inline[deepest] = false;
  }
}
