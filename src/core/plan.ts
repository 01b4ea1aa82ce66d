import { failed, invalidInput, notFound } from '../base/errors.js';
import { checkMemberCount, checkModeJoin, type XdpMode } from '../dispatcher/planner.js';
import type { LinkRecord, ProgramRecord, ProgramType } from '../state/records.js';
import type { XdpAttachOptions } from './attach-options.js';
import { ifaceKeyString, keyOfLink, orderLinks, type IfaceKey } from './iface-key.js';

/**
 * Plans, as plain data, from pure functions: what an operation will do, decided from the
 * reconciled records before anything touches the kernel or the store, so every refusal costs
 * nothing. The operations in programs.ts execute them (steps.ts). Unit-tested without a kernel
 * (test/unit/core-plan.test.ts).
 */

export interface Records {
  programs: ProgramRecord[];
  links: LinkRecord[];
}

/** What `load --dry-run` answers: the policy's decision and the order the interface would run. */
export interface DryRunResult {
  dry_run: true;
  allow: boolean;
  reasons: string[];
  order: Array<{ position: number; id: number | null; name: string; priority: number; application: string | null; new: boolean }>;
}

/** Joining an interface: the links already on it and the mode it runs (or will run) in. */
export interface JoinPlan {
  target: IfaceKey;
  /** the interface's links now, in store order (the policy sees them so) */
  existing: LinkRecord[];
  /** the mode to ask for: the one requested, else the one the interface already runs in */
  mode: XdpMode | undefined;
}

export interface LoadPlan {
  /** pin directory of the program whose maps this one shares */
  shareMapsFrom: string | undefined;
  join: JoinPlan | null;
}

/** The named function of the object and its type, or an invalid-input error saying what is there. */
export function programIn(
  elf: { path: string; programs: ReadonlyArray<{ name: string; section: string; type: ProgramType }> },
  name: string,
  type: ProgramType | undefined,
  attaching: boolean,
): { section: string; type: ProgramType } {
  const fn = elf.programs.find((p) => p.name === name);
  if (!fn) {
    const names = elf.programs.map((p) => `${p.name} (section ${p.section})`).join(', ') || 'none';
    throw invalidInput(`function ${name} is not a program in ${elf.path}`, [`programs in the object: ${names}`]);
  }
  const t = type ?? fn.type;
  if (t === 'unspec') throw invalidInput(`cannot tell the program type of section '${fn.section}'; pass --type`);
  if (attaching && t !== 'xdp') throw invalidInput(`--iface attaches XDP programs; ${name} is a ${t} program`);
  return { section: fn.section, type: t };
}

/** A program joining `target`: the member limit and the mode rule, checked against what is there. */
export function planJoin(state: Records, target: IfaceKey, mode: XdpMode | undefined): JoinPlan {
  const existing = state.links.filter((l) => ifaceKeyString(l) === ifaceKeyString(target));
  checkMemberCount(target.iface, existing.length + 1, orderLinks(existing).map((l) => `${l.prog_id} (priority ${l.priority})`));
  const running = existing[0]?.mode;
  checkModeJoin(target.iface, running, mode);
  return { target, existing, mode: mode ?? running };
}

export function planLoad(state: Records, req: { mapOwnerId?: number; persist?: boolean; attach?: XdpAttachOptions }, target: IfaceKey | null): LoadPlan {
  let shareMapsFrom: string | undefined;
  if (req.mapOwnerId !== undefined) {
    const owner = state.programs.find((p) => p.id === req.mapOwnerId);
    if (!owner) throw invalidInput(`--map-owner-id ${req.mapOwnerId}: no program with that id is loaded by bpfd`);
    if (req.persist && !owner.persist) {
      throw invalidInput(`--persist with --map-owner-id ${req.mapOwnerId}: program ${req.mapOwnerId} is not persisted, so after a reboot there would be no maps to share`, [
        `load program ${req.mapOwnerId} with --persist too, or leave out --persist`,
      ]);
    }
    shareMapsFrom = owner.maps.pin_path;
  }
  return { shareMapsFrom, join: target && req.attach ? planJoin(state, target, req.attach.mode) : null };
}

/** The order the interface would run in with the new program added: `load --dry-run`. */
export function dryRunOrder(state: Records, join: JoinPlan | null, req: { name: string; priority: number; application?: string | null }): DryRunResult['order'] {
  if (!join) return [];
  const pending = { id: 0, priority: req.priority, seq: Number.MAX_SAFE_INTEGER };
  return orderLinks<{ id: number; priority: number; seq: number }>([...join.existing, pending]).map((l, position) => {
    if (l === pending) return { position, id: null, name: req.name, priority: l.priority, application: req.application ?? null, new: true };
    const p = state.programs.find((x) => x.id === (l as LinkRecord).prog_id);
    return { position, id: p?.id ?? null, name: p?.name ?? '?', priority: l.priority, application: p?.application ?? null, new: false };
  });
}

/** A program that may be attached: loaded by bpfd, and XDP. */
export function attachableProgram(state: Records, id: number): ProgramRecord {
  const program = loadedProgram(state, id);
  if (program.type !== 'xdp') throw invalidInput(`program ${id} is a ${program.type} program; only XDP programs attach to interfaces here`);
  return program;
}

/** An attach of a loaded program to `target`, where it must not be yet. */
export function planAttach(state: Records, program: ProgramRecord, target: IfaceKey, mode: XdpMode | undefined): JoinPlan {
  if (state.links.some((l) => ifaceKeyString(l) === ifaceKeyString(target) && l.prog_id === program.id)) {
    throw invalidInput(`program ${program.id} is already attached to ${target.iface}`);
  }
  return planJoin(state, target, mode);
}

/**
 * An unload: the program. One whose maps others share goes too, as in bpfman: the maps stay
 * for the programs that use them (removeProgram unpins them with the last one).
 */
export function planUnload(state: Records, id: number): ProgramRecord {
  return loadedProgram(state, id);
}

export function loadedProgram(state: Records, id: number): ProgramRecord {
  const program = state.programs.find((p) => p.id === id);
  if (!program) throw notFound(`no program with id ${id} is loaded by bpfd (see: bpfd list)`);
  return program;
}

/** Removing links: each interface they leave, with the links that stay on it, in run order. */
export function planRemoveLinks(all: LinkRecord[], gone: LinkRecord[]): Array<{ target: IfaceKey; survivors: LinkRecord[]; mode: XdpMode }> {
  const goneIds = new Set(gone.map((l) => l.id));
  const ifaces = new Map<string, LinkRecord>();
  for (const l of gone) ifaces.set(ifaceKeyString(l), l);
  return [...ifaces].map(([key, l]) => ({
    target: keyOfLink(l),
    survivors: orderLinks(all.filter((x) => ifaceKeyString(x) === key && !goneIds.has(x.id))),
    mode: l.mode,
  }));
}
