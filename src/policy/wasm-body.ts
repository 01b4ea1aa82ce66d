/**
 * The instruction walker of the fuel rewrite (wasm-fuel.ts): decodes every instruction of one
 * function body, as a loop opcode can only be told apart from an immediate byte that happens to
 * be 0x03 by walking from the start of the body, and copies the body with the budget's code
 * inserted where the rewrite asks. An instruction it does not know is an error, never a guess.
 */

import type { Calls } from './wasm-calls.js';
import { WasmRewriteError, type Writer } from './wasm-binary.js';

/** What a loop's own code says about its iterations, as the first pass finds it. */
export interface LoopFacts {
  /** branches to the loop's label; with none its body runs once */
  backEdges: number;
  /**
   * The local that counts its iterations down to zero, or -1: its only branch back is a `br_if 0`
   * right after `local.get x; i32.const -1; i32.add; local.tee x`, and nothing else in its body
   * writes x. It then runs at most x times (2^32 when x is 0) each time it is entered.
   */
  counter: number;
  /**
   * The function its body calls before any control instruction (defined functions numbered from
   * 0), or -1: every iteration makes that call.
   */
  firstCallee: number;
}

/** What a body holds, as the first pass (no writer) finds it. */
export interface BodyStats extends Calls {
  loops: LoopFacts[];
}

/** The code inserted around each loop, by its position in the body: before it, and after its header (once per iteration). */
export type LoopCode = ReadonlyArray<{ before: Uint8Array | null; header: Uint8Array | null }>;

const OP_UNREACHABLE = 0x00;
const OP_LOOP = 0x03;
const OP_END = 0x0b;
const OP_BR = 0x0c;
const OP_BR_IF = 0x0d;
const OP_RETURN = 0x0f;
const OP_CALL = 0x10;
const OP_CALL_INDIRECT = 0x11;
const OP_RETURN_CALL = 0x12;
const OP_LOCAL_GET = 0x20;
const OP_LOCAL_SET = 0x21;
const OP_LOCAL_TEE = 0x22;
const OP_I32_CONST = 0x41;
const OP_I32_ADD = 0x6a;

// Immediates of each one-byte opcode, as a kind the walker skips; BAD for opcodes it does not
// know (SIMD 0xfd, threads 0xfe, exceptions, GC), which make the rewrite fail rather than guess.
const NONE = 0;
const LEB = 1; // one LEB128 integer: an index, a label, an i32/i64 constant
const LEB2 = 2;
const BLOCK = 3; // block type
const BR_TABLE = 4;
const BYTES4 = 5;
const BYTES8 = 6;
const MEMARG = 7;
const PREFIX_FC = 8;
const SELECT_T = 9;
const BYTE = 10; // ref.null's heap type
const BAD = 255;

const IMMEDIATES = (() => {
  const t = new Uint8Array(256).fill(BAD);
  const set = (kind: number, ...ops: number[]) => ops.forEach((op) => (t[op] = kind));
  // unreachable nop else end return drop select ref.is_null
  set(NONE, OP_UNREACHABLE, 0x01, 0x05, OP_END, OP_RETURN, 0x1a, 0x1b, 0xd1);
  for (let op = 0x45; op <= 0xc4; op++) t[op] = NONE; // numeric instructions
  set(BLOCK, 0x02, OP_LOOP, 0x04); // block loop if
  // br br_if call return_call local.get/set/tee global.get/set table.get/set memory.size/grow
  // i32.const i64.const ref.func
  set(LEB, OP_BR, OP_BR_IF, OP_CALL, OP_RETURN_CALL, OP_LOCAL_GET, OP_LOCAL_SET, OP_LOCAL_TEE, 0x23, 0x24, 0x25, 0x26, 0x3f, 0x40, OP_I32_CONST, 0x42, 0xd2);
  set(LEB2, OP_CALL_INDIRECT, 0x13); // call_indirect return_call_indirect
  set(BR_TABLE, 0x0e);
  set(SELECT_T, 0x1c);
  for (let op = 0x28; op <= 0x3e; op++) t[op] = MEMARG; // loads and stores
  set(BYTES4, 0x43); // f32.const
  set(BYTES8, 0x44); // f64.const
  set(BYTE, 0xd0); // ref.null
  set(PREFIX_FC, 0xfc);
  return t;
})();

// Immediates after 0xfc <n>: saturating truncations (0..7) have none; memory.init, memory.copy,
// table.init, table.copy two indices; data.drop, memory.fill, elem.drop, table.grow/size/fill one.
const FC_IMMEDIATES = [0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1];

/** A loop while the walker is inside it. */
interface OpenLoop {
  facts: LoopFacts;
  /** where its writes to locals start in the body's log of them */
  writesFrom: number;
  /** the local its last `br_if 0` counts down, when it does */
  countdown: { x: number } | null;
}

/** The LEB128 integer at `p` (at most 5 bytes). */
function u32At(b: Uint8Array, p: number): number {
  let n = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = b[p++];
    n += (byte & 0x7f) * 2 ** shift;
    if (!(byte & 0x80) || shift > 28) return n;
  }
}

/**
 * Walks one function body's instructions from `start` (after its locals) to `end`, copying them
 * to `w` (when given) with `loopCode` inserted around each loop, and reports its loops and calls.
 * One flat loop, no calls per instruction but at loops and branches: this runs on every cold
 * `bpfd load` of a module built without the budget, mostly before the JIT gets to it. Reads past
 * `end` yield undefined (LEB loops stop on it), and are caught after each instruction.
 */
export function rewriteBody(b: Uint8Array, start: number, end: number, w: Writer | null, loopCode: LoopCode | null, fn: number, importedFunctions: number): BodyStats {
  let p = start;
  let copied = start;
  let instructions = 0;
  const loops: LoopFacts[] = [];
  const callees: number[] = [];
  let opaque = false;
  // the open blocks, innermost last: the loop, or null for a block, an if and the body itself
  const open: Array<OpenLoop | null> = [null];
  const openLoops: OpenLoop[] = [];
  // loops whose body has had no control instruction yet
  const straight: OpenLoop[] = [];
  // the locals written (local.set, local.tee), in order
  const writes: number[] = [];
  // where the last four instructions start, for a count down's `local.get; i32.const; i32.add; local.tee`
  const recent = [-1, -1, -1, -1];
  const insert = (at: number, code: Uint8Array) => {
    w!.bytes(b, copied, at);
    w!.array(code);
    copied = at;
  };
  const control = () => {
    if (straight.length === 0) return;
    for (const l of straight) l.facts.firstCallee = -1;
    straight.length = 0;
  };
  // A branch to label `n`: a branch back when it names a loop.
  const branch = (n: number) => {
    const target = open[open.length - 1 - n];
    if (target) target.facts.backEdges++;
  };
  while (open.length > 0) {
    if (p >= end) throw new WasmRewriteError(`function ${fn} has no final end (byte ${end})`);
    const at = p;
    const op = b[p++];
    instructions++;
    switch (IMMEDIATES[op]) {
      case NONE:
        if (op === OP_END) {
          control();
          if (open.pop()) closeLoop(openLoops.pop()!, writes);
        } else if (op === OP_RETURN || op === OP_UNREACHABLE || op === 0x05) control(); // 0x05: else
        break;
      case LEB: {
        if (op === OP_LOCAL_SET || op === OP_LOCAL_TEE) {
          if (openLoops.length > 0) writes.push(u32At(b, p));
        } else if (op === OP_BR || op === OP_BR_IF) {
          control();
          const n = u32At(b, p);
          branch(n);
          const inner = open[open.length - 1];
          if (op === OP_BR_IF && n === 0 && inner) inner.countdown = countdown(b, recent, instructions);
        } else if (op === OP_CALL || op === OP_RETURN_CALL) {
          const callee = u32At(b, p);
          const defined = callee - importedFunctions;
          if (defined < 0) opaque = true;
          else callees.push(defined);
          if (op === OP_CALL && defined >= 0) {
            for (const l of straight) l.facts.firstCallee = defined;
            straight.length = 0;
          } else control();
        }
        while (b[p++] & 0x80);
        break;
      }
      case LEB2: // call_indirect, return_call_indirect
        opaque = true;
        control();
        while (b[p++] & 0x80);
        while (b[p++] & 0x80);
        break;
      case BLOCK: {
        // 0x40 (empty) and value types are one byte, a type index an s33; typed references
        // (0x63, 0x64 + heap type) belong to the GC proposal, which OPA does not use.
        const t = b[p];
        if (t === 0x63 || t === 0x64) throw new WasmRewriteError(`unsupported block type 0x${t.toString(16)} at byte ${p} (function ${fn})`, true);
        while (b[p++] & 0x80);
        control();
        if (op !== OP_LOOP) {
          open.push(null);
          break;
        }
        const code = loopCode?.[loops.length];
        const facts: LoopFacts = { backEdges: 0, counter: -1, firstCallee: -1 };
        const loop: OpenLoop = { facts, writesFrom: writes.length, countdown: null };
        loops.push(facts);
        open.push(loop);
        openLoops.push(loop);
        straight.push(loop);
        if (code?.before) insert(at, code.before);
        if (code?.header) insert(p, code.header);
        break;
      }
      case BR_TABLE: {
        control();
        const n = u32At(b, p);
        while (b[p++] & 0x80);
        for (let i = 0; i <= n && p < end; i++) {
          branch(u32At(b, p));
          while (b[p++] & 0x80);
        }
        break;
      }
      case MEMARG: {
        const memoryIndexFollows = b[p] & 0x40; // multi-memory flag in the alignment
        while (b[p++] & 0x80);
        if (memoryIndexFollows) while (b[p++] & 0x80);
        while (b[p++] & 0x80); // offset
        break;
      }
      case BYTES4:
        p += 4;
        break;
      case BYTES8:
        p += 8;
        break;
      case BYTE:
        p++;
        break;
      case SELECT_T:
        p += 1 + b[p]; // a count under 128 (one LEB byte) followed by one-byte value types
        if (b[at + 1] & 0x80) throw new WasmRewriteError(`unsupported select at byte ${at} (function ${fn})`, true);
        break;
      case PREFIX_FC: {
        const sub = b[p++];
        if (sub >= FC_IMMEDIATES.length) throw new WasmRewriteError(`unsupported instruction 0xfc ${sub} at byte ${at} (function ${fn})`, true);
        for (let i = FC_IMMEDIATES[sub]; i > 0; i--) while (b[p++] & 0x80);
        break;
      }
      default:
        throw new WasmRewriteError(`unsupported instruction 0x${op.toString(16)} at byte ${at} (function ${fn})`, true);
    }
    recent[instructions & 3] = at;
  }
  if (p !== end) throw new WasmRewriteError(`function ${fn} ends at byte ${p}, its body at byte ${end}`);
  w?.bytes(b, copied, end);
  return { instructions, loops, callees, opaque };
}

/**
 * The local a `br_if 0` (instruction number `at`) counts down, when the four instructions before
 * it are `local.get x; i32.const -1; i32.add; local.tee x`, else null. `recent` holds where the
 * last four instructions start, by instruction number modulo 4.
 */
function countdown(b: Uint8Array, recent: number[], at: number): { x: number } | null {
  const get = recent[(at - 4) & 3];
  const minusOne = recent[(at - 3) & 3];
  const add = recent[(at - 2) & 3];
  const tee = recent[(at - 1) & 3];
  if (get < 0 || b[get] !== OP_LOCAL_GET || b[minusOne] !== OP_I32_CONST || b[minusOne + 1] !== 0x7f || b[add] !== OP_I32_ADD || b[tee] !== OP_LOCAL_TEE) return null;
  if (minusOne !== add - 2 || tee !== add + 1) return null; // one-byte -1, nothing between
  const x = u32At(b, get + 1);
  let afterGet = get + 1;
  while (b[afterGet++] & 0x80);
  return x === u32At(b, tee + 1) && afterGet === minusOne ? { x } : null;
}

/**
 * A loop's `end`: it counts down when a count down's `br_if 0` is its only branch back and the tee
 * before it the only write to the counter in its body (`writes` from where the loop began, nested
 * loops included). Then between two passes of that branch the counter goes down by exactly one,
 * and the loop goes round again only while it is not zero.
 */
function closeLoop(loop: OpenLoop, writes: number[]): void {
  const c = loop.countdown;
  if (!c || loop.facts.backEdges !== 1) return;
  let n = 0;
  for (let i = loop.writesFrom; i < writes.length; i++) if (writes[i] === c.x) n++;
  if (n === 1) loop.facts.counter = c.x;
}
