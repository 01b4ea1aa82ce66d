import { BPF_CALL, BPF_JMP, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL, decodeInsns } from '../base/insn.js';
import { HELPER_NAMES } from './helper-names.js';
import type { PolicyMap, PolicyProgram, PolicySubject } from './input.js';
import { groupNames, passwdName, readGroupFile } from '../base/accounts.js';

/**
 * Facts the policy decides on, taken from the bytecode itself rather than from what the request
 * claims: which helpers and kfuncs the code calls and how long it is. They are read from the ELF
 * before anything reaches the kernel, so a denied program never gets loaded.
 */

const INSN_SIZE = 8;
const SHT_REL = 9;

/**
 * What the facts are read from: a parsed BPF object (loader/elf.ts's BpfElf fits). Declared here
 * so that the policy layer depends on no other layer beside base.
 */
export interface BytecodeObject {
  path: string;
  sha256: string;
  license: string;
  programs: ReadonlyArray<{ name: string; section: string; type: string; insnOffset: number; insnCount: number }>;
  sections: ReadonlyArray<{ index: number; name: string; type: number; info: number; size: number }>;
  symbols: ReadonlyArray<{ name: string }>;
  sectionData(name: string): Buffer | null;
}

export interface InsnFacts {
  insn_count: number;
  helpers: string[];
  kfuncs: string[];
  /** true when the code calls subprograms (their code lives elsewhere, usually .text) */
  calls_subprograms: boolean;
}

/**
 * Scans little-endian eBPF instructions. Kfunc calls carry a BTF id that is 0 in an object file
 * (libbpf fills it from a relocation at load), so their names come from the caller, usually from
 * the relocation's symbol; unnamed ones are reported as "kfunc#<imm>".
 */
export function insnFacts(insns: Uint8Array, kfuncNameAt: (insnIndex: number) => string | undefined = () => undefined): InsnFacts {
  const decoded = decodeInsns(Buffer.from(insns.buffer, insns.byteOffset, insns.byteLength));
  const helpers = new Set<string>();
  const kfuncs = new Set<string>();
  let callsSubprograms = false;
  decoded.forEach((insn, i) => {
    if (insn.code !== (BPF_JMP | BPF_CALL)) return;
    if (insn.src === 0) helpers.add(helperName(insn.imm));
    else if (insn.src === BPF_PSEUDO_CALL) callsSubprograms = true;
    else if (insn.src === BPF_PSEUDO_KFUNC_CALL) kfuncs.add(kfuncNameAt(i) ?? `kfunc#${insn.imm}`);
  });
  return { insn_count: decoded.length, helpers: [...helpers].sort(), kfuncs: [...kfuncs].sort(), calls_subprograms: callsSubprograms };
}

/** A helper id this header did not know keeps its number, so policies can still match it. */
export function helperName(id: number): string {
  return HELPER_NAMES[id] ?? `bpf_helper_${id}`;
}

/**
 * Facts about one program of an object file. Subprograms are attributed conservatively: when the
 * program calls any, everything in .text counts as its code, so a helper hidden in a subprogram
 * cannot slip past a forbidden-helper rule. The maps come from the caller (libbpf knows their
 * types and sizes once the object is opened; the ELF alone would need a BTF parser).
 */
export function elfProgramFacts(elf: BytecodeObject, name: string, maps: PolicyMap[] = []): PolicyProgram {
  const fn = elf.programs.find((p) => p.name === name);
  if (!fn) {
    const names = elf.programs.map((p) => p.name).join(', ') || 'none';
    throw new Error(`${elf.path} has no program named ${name} (programs: ${names})`);
  }
  const own = codeFacts(elf, fn.section, fn.insnOffset, fn.insnCount);
  const parts = [own];
  if (own.calls_subprograms) {
    const text = elf.sections.find((s) => s.name === '.text');
    if (text && text.size > 0) parts.push(codeFacts(elf, '.text', 0, text.size / INSN_SIZE));
  }
  return {
    name,
    type: fn.type,
    section: fn.section,
    license: elf.license,
    sha256: elf.sha256,
    insn_count: parts.reduce((n, p) => n + p.insn_count, 0),
    helpers: [...new Set(parts.flatMap((p) => p.helpers))].sort(),
    kfuncs: [...new Set(parts.flatMap((p) => p.kfuncs))].sort(),
    maps,
  };
}

function codeFacts(elf: BytecodeObject, sectionName: string, first: number, count: number): InsnFacts {
  const data = elf.sectionData(sectionName);
  if (!data) throw new Error(`${elf.path}: section ${sectionName} has no data`);
  const code = data.subarray(first * INSN_SIZE, (first + count) * INSN_SIZE);
  const relocated = relocationSymbols(elf, sectionName);
  return insnFacts(code, (i) => relocated.get(first + i));
}

/** Instruction index -> symbol name, from the REL section that applies to the code section. */
function relocationSymbols(elf: BytecodeObject, sectionName: string): Map<number, string> {
  const out = new Map<number, string>();
  const target = elf.sections.find((s) => s.name === sectionName);
  if (!target) return out;
  for (const rel of elf.sections.filter((s) => s.type === SHT_REL && s.info === target.index)) {
    const data = elf.sectionData(rel.name);
    if (!data) continue;
    for (let o = 0; o + 16 <= data.length; o += 16) {
      const offset = Number(data.readBigUInt64LE(o));
      const sym = elf.symbols[Number(data.readBigUInt64LE(o + 8) >> 32n)];
      if (sym?.name) out.set(offset / INSN_SIZE, sym.name);
    }
  }
  return out;
}

/** The caller of a local command: the policy's subject for `bpfd …` run in a shell. */
export function subjectFromProcess(): PolicySubject {
  const uid = process.getuid?.() ?? -1;
  const gid = process.getgid?.() ?? -1;
  // from the passwd database (base/accounts.ts says why not os.userInfo())
  const username = passwdName(uid) ?? String(uid);
  return { uid, gid, groups: groupNames(process.getgroups?.() ?? [gid]), username, pid: process.pid, via: 'cli' };
}

/**
 * A caller known only by its peer credentials (the service socket): the username and the
 * supplementary groups come from /etc/passwd and /etc/group, as login would set them.
 */
export function subjectFromCredentials(cred: { uid: number; gid: number; pid: number }, via: 'cli' | 'sudo' | 'socket' | 'tcp' = 'socket'): PolicySubject {
  const username = passwdName(cred.uid) ?? String(cred.uid);
  const gids = new Set<number>([cred.gid]);
  for (const g of readGroupFile()) if (g.members.includes(username)) gids.add(g.gid);
  return { uid: cred.uid, gid: cred.gid, groups: groupNames([...gids]), username, pid: cred.pid, via };
}

