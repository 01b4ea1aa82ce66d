/**
 * An evaluation budget ("fuel") written into a WebAssembly module, so that a runaway policy stops
 * by itself inside the call instead of needing a watchdog thread around every evaluation.
 *
 * The rewrite adds one mutable i64 global and charges one unit of the budget at the top of every
 * loop iteration and at the entry of every function that needs it (wasm-calls.ts: those that call
 * through a table or the host, lie on a cycle of calls, or account for too much uncharged work),
 * trapping (`unreachable`) when it is exhausted. The code run between two charges is bounded by
 * the size of the module, so a bounded number of charges bounds the whole evaluation, whatever
 * the code does: loops, recursion (even without loops: f calling f twice is exponential), tail
 * calls, call trees.
 *
 * Three kinds of loop need no charge per iteration (wasm-body.ts finds them): one that never
 * branches back runs once; one whose every iteration starts by calling a function charged at
 * entry pays through that call; and one that counts a local down to zero by one per iteration,
 * its only way back, is charged the count once before it starts (at most that many iterations
 * follow, each bounded as any other). The last two are the tight loops of OPA's string hashing
 * and comparison, where a charge per iteration costs most.
 *
 * The global stays internal: JavaScriptCore keeps an exported mutable global behind an
 * indirection, which every charge would pay for. The host sets the budget before each call and,
 * after a trap, reads it (a function that runs out stores 0 before it traps) to tell an exhausted
 * budget from another trap, through two functions the rewrite exports, FUEL_SET_EXPORT and
 * FUEL_GET_EXPORT.
 *
 * Every addition goes at the end of its index space: the global after imported and defined
 * globals, the accessors' types and functions after the existing ones. No existing index moves,
 * so calls, tables, exports and the name section stay valid.
 */

/** Sets the remaining budget: (i64) -> (). */
export const FUEL_SET_EXPORT = 'bpfd_fuel_set';
/** Reads the remaining budget: () -> i64; 0 after a trap means the budget ran out. */
export const FUEL_GET_EXPORT = 'bpfd_fuel_get';
/**
 * The budget as bpfd built it before the accessors: the mutable i64 global itself, exported.
 * Modules carrying it are still accepted (module.ts), never produced.
 */
export const LEGACY_FUEL_EXPORT = 'bpfd_fuel';

import { rewriteBody, type LoopCode, type LoopFacts } from './wasm-body.js';
import { chargedAtEntry } from './wasm-calls.js';
import {
  importCounts, leb, Reader, readSections, SEC_CODE, SEC_EXPORT, SEC_FUNCTION, SEC_GLOBAL, SEC_IMPORT, SEC_TYPE, SECTION_RANK, sleb64, Writer,
  WasmRewriteError, type Section,
} from './wasm-binary.js';

export { WasmRewriteError } from './wasm-binary.js';

export interface FuelStats {
  /** defined functions */
  functions: number;
  /** functions charged at entry (wasm-calls.ts says which) */
  charged: number;
  /** instructions decoded, `end`s included */
  instructions: number;
  /** loops */
  loops: number;
  /** of which charged per iteration (the others: see above) */
  chargedLoops: number;
  /** of which charged their count before they start */
  countedLoops: number;
}

const I64 = 0x7e;
const OP_END = 0x0b;

/** One function body of the code section: its locals from `start`, its instructions from `code`. */
interface Body {
  start: number;
  code: number;
  end: number;
}

/** if (fuel == 0) unreachable; fuel -= 1, on the global */
function globalCharge(g: number[]): Uint8Array {
  return Uint8Array.from([0x23, ...g, 0x50, 0x04, 0x40, 0x00, 0x0b, 0x23, ...g, 0x42, 0x01, 0x7d, 0x24, ...g]);
}

/**
 * Before a loop that counts local `x` down: n = x == 0 ? 2^32 : x (unsigned), its most
 * iterations; if (fuel < n) { fuel = 0; unreachable } fuel -= n
 */
function countedCharge(g: number[], x: number): Uint8Array {
  const n = [0x20, ...leb(x), 0x41, 0x01, 0x6b, 0xad, 0x42, 0x01, 0x7c]; // local.get x; i32.const 1; i32.sub; i64.extend_i32_u; i64.const 1; i64.add
  return Uint8Array.from([0x23, ...g, ...n, 0x54, 0x04, 0x40, 0x42, 0x00, 0x24, ...g, 0x00, 0x0b, 0x23, ...g, ...n, 0x7d, 0x24, ...g]);
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

/** The budget the module carries, from its exports: accessors, the older global, or none. */
export function fuelExportKind(wasm: Uint8Array): 'accessors' | 'global' | null {
  const exportSec = readSections(wasm).find((s) => s.id === SEC_EXPORT);
  if (exportsName(wasm, exportSec, FUEL_SET_EXPORT)) return 'accessors';
  return exportsName(wasm, exportSec, LEGACY_FUEL_EXPORT) ? 'global' : null;
}

/**
 * Whether the module already carries a budget (its exports name FUEL_SET_EXPORT, or the older
 * LEGACY_FUEL_EXPORT): fuel added at build time (bpfd policy build, npm run policy:build), which
 * spares a cold start the rewrite. Reads only the section headers and the export section.
 */
export function hasFuelExport(wasm: Uint8Array): boolean {
  return fuelExportKind(wasm) !== null;
}

const funcType = (params: number[], results: number[]) => [0x60, params.length, ...params, results.length, ...results];
const exportEntry = (name: string, kind: number, index: number) => [...leb(name.length), ...Buffer.from(name, 'latin1'), kind, ...leb(index)];
const functionBody = (code: number[]) => [...leb(code.length + 1), 0x00, ...code]; // no locals

/**
 * Returns the module with fuel added. Throws WasmRewriteError for anything it cannot decode, or a
 * module that already carries a budget.
 */
export function addFuel(wasm: Uint8Array, initialFuel: bigint): { bytes: Uint8Array<ArrayBuffer>; stats: FuelStats } {
  if (initialFuel < 0n || initialFuel >= 2n ** 63n) throw new RangeError(`initial fuel ${initialFuel} is not a non-negative i64`);
  const sections = readSections(wasm);
  const find = (id: number) => sections.find((s) => s.id === id);
  const count = (id: number) => {
    const s = find(id);
    return s ? new Reader(wasm, s.start, s.end).u32() : 0;
  };
  const exportSec = find(SEC_EXPORT);
  for (const name of [FUEL_SET_EXPORT, FUEL_GET_EXPORT, LEGACY_FUEL_EXPORT]) {
    if (exportsName(wasm, exportSec, name)) throw new WasmRewriteError(`the module already exports ${name}`, true);
  }
  const imported = importCounts(wasm, find(SEC_IMPORT));
  const g = leb(imported.globals + count(SEC_GLOBAL));
  const types = count(SEC_TYPE);
  const setFn = imported.functions + count(SEC_FUNCTION);
  const stats: FuelStats = { functions: 0, charged: 0, instructions: 0, loops: 0, chargedLoops: 0, countedLoops: 0 };
  // First pass: loops, and who calls whom, to charge at entry only the functions that need it.
  const codeSec = find(SEC_CODE);
  const bodies = codeSec ? codeBodies(wasm, codeSec) : [];
  const found = bodies.map((f, fn) => rewriteBody(wasm, f.code, f.end, null, null, fn, imported.functions));
  const charged = chargedAtEntry(found);
  const charge = globalCharge(g);
  const loopCode = (loop: LoopFacts): LoopCode[number] => {
    if (loop.backEdges === 0) return { before: null, header: null };
    if (loop.counter >= 0) {
      stats.countedLoops++;
      return { before: countedCharge(g, loop.counter), header: null };
    }
    if (loop.firstCallee >= 0 && charged[loop.firstCallee]) return { before: null, header: null };
    stats.chargedLoops++;
    return { before: null, header: charge };
  };

  // What each section gains, at the end of its vector: the accessors' types and functions, the
  // global (its initial value pays for instantiation, a start function, and whatever the host
  // calls before it sets a budget of its own), the exports.
  const added = new Map<number, number[][]>([
    [SEC_TYPE, [funcType([I64], []), funcType([], [I64])]],
    [SEC_FUNCTION, [leb(types), leb(types + 1)]],
    [SEC_GLOBAL, [[I64, 0x01, 0x42, ...sleb64(initialFuel), OP_END]]],
    [SEC_EXPORT, [exportEntry(FUEL_SET_EXPORT, 0x00, setFn), exportEntry(FUEL_GET_EXPORT, 0x00, setFn + 1)]],
    [SEC_CODE, [functionBody([0x20, 0x00, 0x24, ...g, OP_END]), functionBody([0x23, ...g, OP_END])]],
  ]);

  const w = new Writer(wasm.length + (wasm.length >> 2) + 64);
  w.bytes(wasm, 0, 8);
  const section = (id: number, existing: number, body: () => void) => {
    const extra = added.get(id)!;
    added.delete(id);
    w.array([id]);
    const size = w.placeholder();
    w.u32(existing + extra.length);
    body();
    for (const e of extra) w.array(e);
    w.patch(size, w.len - size - 5);
  };
  // A section that does not exist yet goes before the first section that must follow it.
  const flushBefore = (rank: number) => {
    for (const id of [...added.keys()].filter((id) => SECTION_RANK[id] < rank)) section(id, 0, () => {});
  };
  const writeBody = (f: Body, fn: number) => {
    const sizeAt = w.placeholder();
    w.bytes(wasm, f.start, f.code);
    if (charged[fn]) {
      w.array(charge);
      stats.charged++;
    }
    const { instructions, loops } = rewriteBody(wasm, f.code, f.end, w, found[fn].loops.map(loopCode), fn, imported.functions);
    w.patch(sizeAt, w.len - sizeAt - 5);
    stats.functions++;
    stats.instructions += instructions;
    stats.loops += loops.length;
  };

  for (const s of sections) {
    if (s.id !== 0) flushBefore(SECTION_RANK[s.id]);
    const r = new Reader(wasm, s.start, s.end);
    if (s.id === SEC_CODE) section(SEC_CODE, bodies.length, () => bodies.forEach(writeBody));
    else if (added.has(s.id)) {
      const n = r.u32();
      section(s.id, n, () => w.bytes(wasm, r.pos, s.end));
    } else w.bytes(wasm, s.header, s.end);
  }
  flushBefore(Infinity);
  return { bytes: w.buf.subarray(0, w.len), stats };
}
