import { elfProgramFacts, type BytecodeObject } from './facts.js';
import type { PolicyMap, PolicyProgram, PolicyTailCall } from './input.js';

/**
 * Facts about everything a load request runs, not only the program it names: bpfd also loads
 * every program the object's prog arrays name as initial values (tail-call targets, see
 * loader/object.ts), and a tail call runs that code with the same context. So the request's
 * helpers, kfuncs and instruction count are those of the named program (with its subprograms)
 * merged with every target's, and each target is listed by name with its own facts: a
 * forbidden-helper rule sees a helper whichever of them calls it.
 */
/** An object as the loader sees it: with the tail-call targets its prog arrays name. */
export interface LoadableObject extends BytecodeObject {
  progArrayTargets: readonly string[];
}

export function requestFacts(elf: LoadableObject, name: string, maps: PolicyMap[] = []): PolicyProgram {
  const own = elfProgramFacts(elf, name, maps);
  const targets = [...new Set(elf.progArrayTargets)].filter((t) => t !== name && elf.programs.some((p) => p.name === t));
  if (targets.length === 0) return { ...own, tail_calls: [] };
  const tailCalls: PolicyTailCall[] = targets.sort().map((t) => {
    const f = elfProgramFacts(elf, t);
    return { name: t, section: f.section, insn_count: f.insn_count, helpers: f.helpers, kfuncs: f.kfuncs };
  });
  const merged = (key: 'helpers' | 'kfuncs') => [...new Set([...own[key], ...tailCalls.flatMap((t) => t[key])])].sort();
  return {
    ...own,
    insn_count: own.insn_count + tailCalls.reduce((n, t) => n + t.insn_count, 0),
    helpers: merged('helpers'),
    kfuncs: merged('kfuncs'),
    tail_calls: tailCalls,
  };
}
