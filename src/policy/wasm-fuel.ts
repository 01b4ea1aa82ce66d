/**
 * An evaluation budget ("fuel") written into a WebAssembly module, so that a runaway policy stops
 * by itself inside the call instead of needing a watchdog thread around every evaluation.
 *
 * The rewrite adds one mutable i64 global, exported as FUEL_EXPORT, and charges one unit of it at
 * the top of every loop iteration and at the entry of every function that needs it (wasm-calls.ts:
 * those that make two or more calls, call through a table or the host, or lie on a cycle of
 * calls), trapping (`unreachable`) when it is exhausted. The code run between two charges is
 * bounded by the size of the module, so a bounded number of charges bounds the whole evaluation,
 * whatever the code does: loops, recursion (even without loops: f calling f twice is
 * exponential), tail calls. The host sets the budget
 * before each call and, after a trap, reads the global to tell an exhausted budget from another
 * trap.
 *
 * Only the global, export and code sections change. The new global goes at the end of the global
 * index space (after imported and defined globals), so no existing index moves, and no function
 * is added, so function indices, tables and the name section stay valid. Every instruction of
 * every body is decoded, because a loop opcode can only be told apart from an immediate byte that
 * happens to be 0x03 by walking from the start of the body; an instruction this walker does not
 * know is an error, never a guess.
 */

export const FUEL_EXPORT = 'bpfd_fuel';

import { chargedAtEntry, type Calls } from './wasm-calls.js';
import { importCounts, leb, Reader, readSections, SEC_CODE, SEC_EXPORT, SEC_GLOBAL, SEC_IMPORT, SECTION_RANK, sleb64, Writer, WasmRewriteError, type Section } from './wasm-binary.js';

export { WasmRewriteError } from './wasm-binary.js';

export interface FuelStats {
  /** defined functions */
  functions: number;
  /** functions charged at entry (wasm-calls.ts says which) */
  charged: number;
  /** instructions decoded, `end`s included */
  instructions: number;
  /** loops, each charged per iteration */
  loops: number;
}

const I64 = 0x7e;
const OP_LOOP = 0x03;
const OP_END = 0x0b;
const OP_CALL = 0x10;
const OP_RETURN_CALL = 0x12;

interface BodyStats extends Calls {
  loops: number;
}

/** One function body of the code section: its locals from `start`, its instructions from `code`. */
interface Body {
  start: number;
  code: number;
  end: number;
}


/** if (fuel == 0) unreachable; fuel -= 1 */
function chargeSequence(globalIndex: number): Uint8Array {
  const g = leb(globalIndex);
  return Uint8Array.from([0x23, ...g, 0x50, 0x04, 0x40, 0x00, 0x0b, 0x23, ...g, 0x42, 0x01, 0x7d, 0x24, ...g]);
}


/** Whether the export section names `name`; compares bytes, as this runs on every cold start. */
function exportsName(b: Uint8Array, s: Section | undefined, name: string): boolean {
  if (!s) return false;
  const want = Buffer.from(name, 'utf8');
  const r = new Reader(b, s.start, s.end);
  for (let n = r.u32(); n > 0; n--) {
    const len = r.u32();
    const at = r.pos;
    r.skip(len);
    if (len === want.length && want.equals(b.subarray(at, at + len))) return true;
    r.byte(); // kind
    r.u32(); // index
  }
  return false;
}

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
  set(NONE, 0x00, 0x01, 0x05, 0x0b, 0x0f, 0x1a, 0x1b, 0xd1);
  for (let op = 0x45; op <= 0xc4; op++) t[op] = NONE; // numeric instructions
  set(BLOCK, 0x02, 0x03, 0x04); // block loop if
  // br br_if call return_call local.get/set/tee global.get/set table.get/set memory.size/grow
  // i32.const i64.const ref.func
  set(LEB, 0x0c, 0x0d, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3f, 0x40, 0x41, 0x42, 0xd2);
  set(LEB2, 0x11, 0x13); // call_indirect return_call_indirect
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

/**
 * Walks one function body's instructions from `start` (after its locals) to `end`, copying them
 * to `w` (when given) with a charge after each loop header, and counts its calls. One flat loop, no
 * calls per instruction: this runs on every cold `bpfd load`, mostly before the JIT gets to it.
 * Reads past `end` yield undefined (LEB loops stop on it), and are caught after each instruction.
 */
function rewriteBody(b: Uint8Array, start: number, end: number, w: Writer | null, charge: Uint8Array, fn: number, importedFunctions: number): BodyStats {
  let p = start;
  let copied = start;
  let instructions = 0;
  let loops = 0;
  const callees: number[] = [];
  let opaque = false;
  let depth = 1; // the body is a block closed by its final `end`
  while (depth > 0) {
    if (p >= end) throw new WasmRewriteError(`function ${fn} has no final end (byte ${end})`);
    const at = p;
    const op = b[p++];
    instructions++;
    switch (IMMEDIATES[op]) {
      case NONE:
        if (op === OP_END) depth--;
        break;
      case LEB:
        if (op === OP_CALL || op === OP_RETURN_CALL) {
          let callee = 0;
          for (let shift = 0; ; shift += 7) {
            const byte = b[p++];
            callee += (byte & 0x7f) * 2 ** shift;
            if (!(byte & 0x80) || shift > 28) break;
          }
          if (callee < importedFunctions) opaque = true;
          else callees.push(callee - importedFunctions);
        } else while (b[p++] & 0x80);
        break;
      case LEB2: // call_indirect, return_call_indirect
        opaque = true;
        while (b[p++] & 0x80);
        while (b[p++] & 0x80);
        break;
      case BLOCK: {
        // 0x40 (empty) and value types are one byte, a type index an s33; typed references
        // (0x63, 0x64 + heap type) belong to the GC proposal, which OPA does not use.
        const t = b[p];
        if (t === 0x63 || t === 0x64) throw new WasmRewriteError(`unsupported block type 0x${t.toString(16)} at byte ${p} (function ${fn})`, true);
        while (b[p++] & 0x80);
        depth++;
        if (op === OP_LOOP) {
          loops++;
          if (!w) break;
          w.bytes(b, copied, p);
          w.array(charge);
          copied = p;
        }
        break;
      }
      case BR_TABLE: {
        let n = 0;
        for (let shift = 0; ; shift += 7) {
          const byte = b[p++];
          n += (byte & 0x7f) * 2 ** shift;
          if (!(byte & 0x80) || shift > 28) break;
        }
        for (let i = 0; i <= n && p < end; i++) while (b[p++] & 0x80);
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
  }
  if (p !== end) throw new WasmRewriteError(`function ${fn} ends at byte ${p}, its body at byte ${end}`);
  w?.bytes(b, copied, end);
  return { instructions, loops, callees, opaque };
}

/** The code section's function bodies, their local declarations checked. */
function codeBodies(wasm: Uint8Array, s: Section): Body[] {
  const r = new Reader(wasm, s.start, s.end);
  const bodies: Body[] = [];
  for (let fn = 0, count = r.u32(); fn < count; fn++) {
    const size = r.u32();
    const start = r.pos;
    const body = new Reader(wasm, start, start + size);
    r.skip(size);
    for (let n = body.u32(); n > 0; n--) {
      body.u32();
      const t = body.byte();
      if (t === 0x63 || t === 0x64) throw new WasmRewriteError(`unsupported local type 0x${t.toString(16)} in function ${fn}`, true);
    }
    bodies.push({ start, code: body.pos, end: body.end });
  }
  if (r.pos !== s.end) throw new WasmRewriteError(`code section has ${s.end - r.pos} bytes after its last function`);
  return bodies;
}

/**
 * Whether the module already exports FUEL_EXPORT: fuel added at build time (bpfd policy build,
 * npm run policy:build), which spares a cold start the rewrite. Reads only the section headers
 * and the export section.
 */
export function hasFuelExport(wasm: Uint8Array): boolean {
  return exportsName(wasm, readSections(wasm).find((s) => s.id === SEC_EXPORT), FUEL_EXPORT);
}

/**
 * Returns the module with fuel added. Throws WasmRewriteError for anything it cannot decode, or a
 * module that already exports FUEL_EXPORT.
 */
export function addFuel(wasm: Uint8Array, initialFuel: bigint): { bytes: Uint8Array<ArrayBuffer>; stats: FuelStats } {
  if (initialFuel < 0n || initialFuel >= 2n ** 63n) throw new RangeError(`initial fuel ${initialFuel} is not a non-negative i64`);
  const sections = readSections(wasm);
  const find = (id: number) => sections.find((s) => s.id === id);
  const exportSec = find(SEC_EXPORT);
  if (exportsName(wasm, exportSec, FUEL_EXPORT)) {
    throw new WasmRewriteError(`the module already exports ${FUEL_EXPORT}`, true);
  }
  const globalSec = find(SEC_GLOBAL);
  const definedGlobals = globalSec ? new Reader(wasm, globalSec.start, globalSec.end).u32() : 0;
  const imported = importCounts(wasm, find(SEC_IMPORT));
  const fuelIndex = imported.globals + definedGlobals;
  const charge = chargeSequence(fuelIndex);
  const stats: FuelStats = { functions: 0, charged: 0, instructions: 0, loops: 0 };
  // First pass: who calls whom, to charge at entry only the functions that need it.
  const codeSec = find(SEC_CODE);
  const bodies = codeSec ? codeBodies(wasm, codeSec) : [];
  const charged = chargedAtEntry(bodies.map((f, fn) => rewriteBody(wasm, f.code, f.end, null, charge, fn, imported.functions)));

  const w = new Writer(wasm.length + (wasm.length >> 2) + 64);
  w.bytes(wasm, 0, 8);
  const section = (id: number, body: () => void) => {
    w.array([id]);
    const size = w.placeholder();
    body();
    w.patch(size, w.len - size - 5);
  };
  // The initial value pays for instantiation (a start function) and whatever the host calls
  // before it sets a budget of its own.
  const newGlobal = () => w.array([I64, 0x01, 0x42, ...sleb64(initialFuel), OP_END]);
  const newExport = () => {
    w.u32(FUEL_EXPORT.length);
    w.array(Buffer.from(FUEL_EXPORT, 'latin1'));
    w.array([0x03]);
    w.u32(fuelIndex);
  };
  // A section that does not exist yet goes before the first section that must follow it.
  const pending = new Map<number, () => void>();
  if (!globalSec) pending.set(SEC_GLOBAL, () => section(SEC_GLOBAL, () => (w.u32(1), newGlobal())));
  if (!exportSec) pending.set(SEC_EXPORT, () => section(SEC_EXPORT, () => (w.u32(1), newExport())));
  const flushBefore = (rank: number) => {
    for (const [id, write] of pending) {
      if (SECTION_RANK[id] < rank) {
        write();
        pending.delete(id);
      }
    }
  };

  for (const s of sections) {
    if (s.id !== 0) flushBefore(SECTION_RANK[s.id]);
    const r = new Reader(wasm, s.start, s.end);
    if (s.id === SEC_GLOBAL || s.id === SEC_EXPORT) {
      const count = r.u32();
      section(s.id, () => {
        w.u32(count + 1);
        w.bytes(wasm, r.pos, s.end);
        if (s.id === SEC_GLOBAL) newGlobal();
        else newExport();
      });
    } else if (s.id === SEC_CODE) {
      section(SEC_CODE, () => {
        w.u32(bodies.length);
        bodies.forEach((f, fn) => {
          const sizeAt = w.placeholder();
          w.bytes(wasm, f.start, f.code);
          if (charged[fn]) {
            w.array(charge);
            stats.charged++;
          }
          const { instructions, loops } = rewriteBody(wasm, f.code, f.end, w, charge, fn, imported.functions);
          w.patch(sizeAt, w.len - sizeAt - 5);
          stats.functions++;
          stats.instructions += instructions;
          stats.loops += loops;
        });
      });
    } else {
      w.bytes(wasm, s.header, s.end);
    }
  }
  flushBefore(Infinity);
  return { bytes: w.buf.subarray(0, w.len), stats };
}
