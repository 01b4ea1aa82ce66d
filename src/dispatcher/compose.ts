import { failed } from '../base/errors.js';
import { BpfAttachType, BpfFlag, BpfProgType } from '../loader/abi.js';
import { closeFd, objGet } from '../loader/bpf.js';
import { loadBtf, loadProgram, VerifierError } from '../loader/prog-load.js';
import { COUNTER_BLOCK, CPU_STRIDE_SHIFT, numPossibleCpus } from './counters.js';
import { buildFuncBtf } from './func-btf.js';
import type { RelocatableImage } from './image.js';
import { chooseInlining, freeCalleeSaved, memberShape, type MemberShape } from './inlining.js';
import {
  BPF_ADD,
  BPF_FUNC_get_smp_processor_id,
  BPF_JLT,
  BPF_JGT,
  BPF_JLE,
  BPF_JSET,
  BPF_LSH,
  BPF_PSEUDO_FUNC,
  BPF_PSEUDO_MAP_VALUE,
  encodeInsns,
  I,
  type Insn,
  isExit,
  isLdImm64,
  isPseudoCall,
  relTarget,
} from '../base/insn.js';
import { DISPATCHER_RETURN } from './planner.js';

/**
 * Builds the composed XDP dispatcher (DESIGN.md §3) from member images:
 *
 *   main:  c = r1; [p = this CPU's counters]
 *          per slot: r1 = c; <inlined body | call member>; [count r0 at p]
 *                    if r0 > 31 || !((1 << r0) & mask) return r0
 *          return XDP_PASS
 *   then every called member whole, and the subprograms of inlined members.
 *
 * c and p live in callee-saved registers, so called members cannot disturb them; an inlined body
 * is given a ctx register it never writes, and p is computed again after a body that writes it.
 * The main has no stack of its own. Member code is copied unchanged except that its
 * pc-relative targets are re-resolved for where it now sits, inlined `exit`s become jumps to the
 * slot's check, and map references get fds of the reopened pins.
 */

const XDP_ABORTED = 0;
const XDP_PASS = 2;
const OTHER_BUCKET = 5;

export interface ComposeSlot {
  image: RelocatableImage;
  /** proceed-on mask: bit `1 << action`, dispatcher_return = bit 31 */
  mask: number;
  /** index of this member's counter block; null to not count */
  counterIndex: number | null;
}

export interface ComposeRequest {
  slots: ComposeSlot[];
  /** fd of the per-CPU counters map; without it nothing is counted */
  countersFd?: number;
  /** paste eligible members into the main function (default true) */
  inline?: boolean;
  name?: string;
}

export interface ComposedProgram {
  fd: number;
  /** per slot: whether its member was inlined */
  inlined: boolean[];
  insnCount: number;
  license: string;
  frags: boolean;
}

type Label = string;
interface Entry {
  insn: Insn;
  fix?: { field: 'off' | 'imm'; label: Label };
}

class Asm {
  readonly out: Entry[] = [];
  private readonly labels = new Map<Label, number>();
  get pc() {
    return this.out.length;
  }
  bind(label: Label) {
    if (this.labels.has(label)) throw new Error(`label ${label} bound twice`);
    this.labels.set(label, this.pc);
  }
  emit(insn: Insn, fix?: Entry['fix']) {
    this.out.push({ insn: { ...insn }, fix });
  }
  emitAll(insns: Insn[]) {
    for (const i of insns) this.emit(i);
  }
  addressOf(label: Label): number {
    const a = this.labels.get(label);
    if (a === undefined) throw new Error(`unbound label ${label}`);
    return a;
  }
  resolve(): Insn[] {
    return this.out.map((e, pc) => {
      if (!e.fix) return e.insn;
      const rel = this.addressOf(e.fix.label) - (pc + 1);
      if (e.fix.field === 'off' && (rel < -32768 || rel > 32767)) throw failed('composed XDP dispatcher is too large: a jump does not fit');
      return { ...e.insn, [e.fix.field]: rel };
    });
  }
}

export interface BuiltDispatcher {
  insns: Insn[];
  funcs: Array<{ insnOff: number; name: string }>;
  inlined: boolean[];
}

/**
 * Generates the instructions (no kernel calls). fdOf maps a pin to an open fd.
 */
export function buildDispatcher(
  slots: ComposeSlot[],
  fdOf: (pin: string) => number,
  opts: { countersFd?: number; inline: boolean },
): BuiltDispatcher {
  const shapes = slots.map((s) => memberShape(s.image));
  const inlined = chooseInlining(shapes, opts.inline);
  const counting = opts.countersFd !== undefined && slots.some((s) => s.counterIndex !== null);
  const a = new Asm();
  const lbl = (slot: number, pc: number) => `s${slot}@${pc}`;

  // Register plan: ctx holder c and counter pointer p among r6..r9.
  const writes = (n: number) => (inlined[n] ? shapes[n].mainWrites : 0);
  const survives = (r: number, from: number) => {
    let n = from;
    while (n < slots.length && !((writes(n) >> r) & 1)) n++;
    return n - from;
  };
  const pick = (allowed: number[], from: number, avoid: number[]) => {
    const cands = allowed.filter((r) => !avoid.includes(r));
    const pool = cands.length ? cands : allowed;
    return pool.reduce((best, r) => (survives(r, from) > survives(best, from) ? r : best), pool[0]);
  };
  const all = [6, 7, 8, 9];
  let c = pick(slots.length ? (inlined[0] ? freeCalleeSaved(shapes[0]) : all) : all, 0, []);
  a.emit(I.mov64Reg(c, 1));

  let p: number | null = null;
  const lookupCounters = (into: number) => {
    // This CPU's region of the counters map: value address + (cpu << CPU_STRIDE_SHIFT).
    a.emit(I.call(BPF_FUNC_get_smp_processor_id));
    // Always below the possible-CPU count; the check proves the offset to the verifier. Were it
    // ever not, fail closed rather than skip members. (Local, so no jump spans inlined bodies.)
    a.emit(I.jmpImm(BPF_JLT, 0, numPossibleCpus(), 2));
    a.emit(I.mov64Imm(0, XDP_ABORTED));
    a.emit(I.exit());
    a.emit(I.alu64Imm(BPF_LSH, 0, CPU_STRIDE_SHIFT));
    a.emitAll(I.ldMap(into, BPF_PSEUDO_MAP_VALUE, opts.countersFd!, 0));
    a.emit(I.alu64Reg(BPF_ADD, into, 0));
  };
  if (counting && slots.length) {
    p = pick(all, 0, [c]);
    lookupCounters(p);
  }

  slots.forEach((slot, n) => {
    if (inlined[n]) {
      const ok = freeCalleeSaved(shapes[n]);
      if (!ok.includes(c)) {
        const next = pick(ok, n, p === null ? [] : [p]);
        a.emit(I.mov64Reg(next, c));
        if (next === p) p = null;
        c = next;
      }
      if (p !== null && (writes(n) >> p) & 1) p = null;
    }
    a.emit(I.mov64Reg(1, c));
    if (inlined[n]) emitInlinedBody(a, shapes[n], slot, n, lbl, fdOf);
    else a.emit(I.pseudoCall(0), { field: 'imm', label: lbl(n, 0) });
    a.bind(`done${n}`);

    if (counting && slot.counterIndex !== null) {
      if (p === null) {
        // The body took the pointer's register: keep the verdict in a free one across the lookup.
        const keep = pick(all, n + 1, [c]);
        a.emit(I.mov64Reg(keep, 0));
        p = pick(all, n + 1, [c, keep]);
        lookupCounters(p);
        a.emit(I.mov64Reg(0, keep));
      }
      const off = slot.counterIndex * COUNTER_BLOCK;
      // Members return int: judge the low 32 bits only, as the kernel does with a verdict.
      a.emit(I.mov32Reg(1, 0));
      a.emit(I.jmpImm(BPF_JLE, 1, OTHER_BUCKET, 1));
      a.emit(I.mov64Imm(1, OTHER_BUCKET));
      a.emit(I.alu64Imm(BPF_LSH, 1, 3));
      a.emit(I.mov64Reg(2, p));
      a.emit(I.alu64Reg(BPF_ADD, 2, 1));
      a.emit(I.ldxDw(1, 2, off));
      a.emit(I.alu64Imm(BPF_ADD, 1, 1));
      a.emit(I.stxDw(2, 1, off));
    }
    // Go on only if (1 << r0) & mask; shifts past 31 are out of range, so guard first.
    if (slot.mask === 0) a.emit(I.exit());
    else {
      a.emit(I.jmp32Imm(BPF_JGT, 0, DISPATCHER_RETURN, 3));
      a.emit(I.mov32Imm(1, 1));
      a.emit(I.alu32Reg(BPF_LSH, 1, 0));
      a.emit(I.jmp32Imm(BPF_JSET, 1, slot.mask | 0, 1));
      a.emit(I.exit());
    }
  });
  a.emit(I.mov64Imm(0, XDP_PASS));
  a.emit(I.exit());

  // Subprograms: called members whole, inlined members from their first subprogram on.
  const funcs: Array<{ insnOff: number; name: string }> = [{ insnOff: 0, name: 'bpfd_dispatcher' }];
  slots.forEach((slot, n) => {
    const s = shapes[n];
    const from = inlined[n] ? s.mainEnd : 0;
    for (let pc = from; pc < s.insns.length; pc++) {
      const f = slot.image.funcStarts.indexOf(pc);
      if (f >= 0) funcs.push({ insnOff: a.pc, name: f === 0 ? `slot${n}` : `slot${n}_f${f}` });
      a.bind(lbl(n, pc));
      const i = s.insns[pc];
      a.emit(patchMap(slot, pc, i, fdOf), fixFor(i, pc, n, lbl));
      if (isLdImm64(i)) a.emit(s.insns[++pc]);
    }
  });
  const insns = a.resolve();
  checkFuncStarts(insns, funcs);
  return { insns, funcs, inlined };
}

function emitInlinedBody(
  a: Asm,
  s: MemberShape,
  slot: ComposeSlot,
  n: number,
  lbl: (slot: number, pc: number) => string,
  fdOf: (pin: string) => number,
) {
  for (let pc = 0; pc < s.mainEnd; pc++) {
    a.bind(lbl(n, pc));
    const i = s.insns[pc];
    if (isExit(i)) {
      // The last exit falls through into the check; earlier ones jump there.
      if (pc !== s.mainEnd - 1) a.emit(I.ja(0), { field: 'off', label: `done${n}` });
      continue;
    }
    a.emit(patchMap(slot, pc, i, fdOf), fixFor(i, pc, n, lbl));
    if (isLdImm64(i)) a.emit(s.insns[++pc]);
  }
}

function patchMap(slot: ComposeSlot, pc: number, i: Insn, fdOf: (pin: string) => number): Insn {
  if (!isLdImm64(i) || i.src === BPF_PSEUDO_FUNC) return i;
  const ref = slot.image.maps.find((m) => m.insn === pc);
  return ref ? { ...i, imm: fdOf(ref.pin) } : i;
}

function fixFor(i: Insn, pc: number, n: number, lbl: (slot: number, pc: number) => string): Entry['fix'] {
  const rel = relTarget(i, pc);
  return rel ? { field: rel.field, label: lbl(n, rel.target) } : undefined;
}

/** func_info must name exactly the functions the verifier finds: insn 0 and every call target. */
function checkFuncStarts(insns: Insn[], funcs: Array<{ insnOff: number }>) {
  const starts = new Set<number>([0]);
  insns.forEach((i, pc) => {
    if (isPseudoCall(i) || (isLdImm64(i) && i.src === BPF_PSEUDO_FUNC)) starts.add(pc + 1 + i.imm);
  });
  const ours = funcs.map((f) => f.insnOff);
  const theirs = [...starts].sort((x, y) => x - y);
  if (ours.length !== theirs.length || ours.some((o, k) => o !== theirs[k])) {
    throw failed('internal error composing the XDP dispatcher: function boundaries do not match the calls', [
      `func_info: ${ours.join(',')}`,
      `call targets: ${theirs.join(',')}`,
    ]);
  }
}

/**
 * Reopens the members' map pins, builds and loads the dispatcher. If the kernel refuses the
 * inlined form (the stack estimate can be wrong), it tries again with every member called,
 * which is always within the limits each member met alone.
 */
export function composeAndLoad(req: ComposeRequest): ComposedProgram {
  const fds = new Map<string, number>();
  const fdOf = (pin: string) => {
    let fd = fds.get(pin);
    if (fd === undefined) {
      fd = objGet(pin);
      fds.set(pin, fd);
    }
    return fd;
  };
  const images = req.slots.map((s) => s.image);
  const license = images.length && images.every((i) => i.gplCompatible) ? 'GPL' : images.length === 0 ? 'GPL' : 'Proprietary';
  const frags = images.length > 0 && images.every((i) => i.frags);
  try {
    const attempt = (inline: boolean): ComposedProgram => {
      const built = buildDispatcher(req.slots, fdOf, { countersFd: req.countersFd, inline });
      const { btf, funcInfo } = buildFuncBtf(built.funcs);
      const btfFd = loadBtf(btf);
      try {
        const { fd } = loadProgram({
          progType: BpfProgType.XDP,
          insns: encodeInsns(built.insns),
          license,
          name: req.name ?? 'bpfd_dispatch',
          expectedAttachType: BpfAttachType.XDP,
          progFlags: frags ? BpfFlag.F_XDP_HAS_FRAGS : 0,
          btfFd,
          funcInfo,
        });
        return { fd, inlined: built.inlined, insnCount: built.insns.length, license, frags };
      } finally {
        closeFd(btfFd);
      }
    };
    const wantInline = req.inline ?? true;
    try {
      return attempt(wantInline);
    } catch (e) {
      if (!wantInline || !(e instanceof VerifierError)) throw e;
      return attempt(false);
    }
  } catch (e) {
    if (e instanceof VerifierError) {
      throw failed(`the kernel refused the composed XDP dispatcher (${e.message})`, e.details);
    }
    throw e;
  } finally {
    for (const fd of fds.values()) closeFd(fd);
  }
}

