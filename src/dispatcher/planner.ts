import { failed, invalidInput, limitReached } from '../base/errors.js';

/**
 * Which member runs where on one interface, and when the chain goes on. Pure: no kernel, so the
 * ordering rules the CLI promises are unit-tested directly.
 */

export const XDP_ACTIONS = ['aborted', 'drop', 'pass', 'tx', 'redirect'] as const;
export type XdpActionName = (typeof XDP_ACTIONS)[number];
export type ProceedOnName = XdpActionName | 'dispatcher_return';

/** A member returning this asks the dispatcher to go on (libxdp's XDP_DISPATCHER_RETVAL). */
export const DISPATCHER_RETURN = 31;
export const MAX_XDP_MEMBERS = 10;
export const DEFAULT_PROCEED_ON: ProceedOnName[] = ['pass', 'dispatcher_return'];
export const MIN_PRIORITY = 0;
export const MAX_PRIORITY = 1000;
export const DEFAULT_PRIORITY = 50;
export type XdpMode = 'skb' | 'drv';

const ACTION_BIT: Record<ProceedOnName, number> = {
  aborted: 0,
  drop: 1,
  pass: 2,
  tx: 3,
  redirect: 4,
  dispatcher_return: DISPATCHER_RETURN,
};

/** Parses `--proceed-on` values (comma-separated or repeated); duplicates collapse. */
export function parseProceedOn(input: string | string[] | undefined): ProceedOnName[] {
  if (input === undefined) return [...DEFAULT_PROCEED_ON];
  const parts = (Array.isArray(input) ? input : [input]).flatMap((s) => s.split(',')).map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (parts.length === 0) throw invalidInput('--proceed-on needs at least one action', [`actions: ${Object.keys(ACTION_BIT).join(', ')}`]);
  const out: ProceedOnName[] = [];
  for (const p of parts) {
    // Accept the kernel's spelling too (XDP_PASS), since that is what people copy from C.
    const name = p.replace(/^xdp_/, '') as ProceedOnName;
    if (!(name in ACTION_BIT)) throw invalidInput(`unknown --proceed-on action '${p}'`, [`actions: ${Object.keys(ACTION_BIT).join(', ')}`]);
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

/** Bit `1 << action` for each name; dispatcher_return is bit 31. */
export function proceedOnMask(names: readonly ProceedOnName[]): number {
  let mask = 0;
  for (const n of names) mask |= 2 ** ACTION_BIT[n];
  return mask >>> 0;
}

export function maskToProceedOn(mask: number): ProceedOnName[] {
  return (Object.keys(ACTION_BIT) as ProceedOnName[]).filter((n) => (mask >>> ACTION_BIT[n]) & 1);
}

/** The priority rule, the one place it is written: whole numbers MIN..MAX, lower runs first. */
export function validatePriority(p: number, given: string | number = p): number {
  if (!Number.isInteger(p) || p < MIN_PRIORITY || p > MAX_PRIORITY) {
    throw invalidInput(`--priority ${given} is out of range: give a whole number from ${MIN_PRIORITY} to ${MAX_PRIORITY} (lower runs first, default ${DEFAULT_PRIORITY})`);
  }
  return p;
}

/**
 * The member limit, the one place it is written: `count` programs are wanted on the interface
 * (`there` names those already on it, for the message).
 */
export function checkMemberCount(iface: string, count: number, there: string[] = []): void {
  if (count <= MAX_XDP_MEMBERS) return;
  throw limitReached(`interface ${iface} already has ${MAX_XDP_MEMBERS} XDP programs (the maximum); detach or unload one of them before adding another`, [
    ...(there.length ? [`programs there: ${there.join(', ')}`] : []),
    `programs wanted on ${iface}: ${count}`,
  ]);
}

/** The mode rule, the one place it is written: an interface runs all its XDP programs in one mode. */
export function checkModeJoin(iface: string, running: XdpMode | null | undefined, wanted: XdpMode | undefined): void {
  if (!running || !wanted || running === wanted) return;
  throw invalidInput(`${iface} runs its XDP programs in ${running} mode; --mode ${wanted} cannot be mixed in`, [
    `attach with --mode ${running}, or without --mode`,
  ]);
}

export interface PlanMember {
  linkId: number;
  progId: number;
  priority: number;
  /** attach order: breaks priority ties, earlier first */
  seq: number;
  proceedOn: readonly ProceedOnName[];
}

export interface Slot<M extends PlanMember = PlanMember> {
  position: number;
  member: M;
  mask: number;
}

/**
 * Orders an interface's members: priority ascending, ties by attach order, then link id so the
 * result never depends on input order. More than MAX_XDP_MEMBERS is refused here, before any
 * kernel work.
 */
export function planSlots<M extends PlanMember>(iface: string, members: readonly M[]): Slot<M>[] {
  checkMemberCount(iface, members.length);
  const seen = new Set<number>();
  for (const m of members) {
    validatePriority(m.priority);
    if (seen.has(m.linkId)) throw failed(`link ${m.linkId} appears twice in the XDP plan for ${iface}`);
    seen.add(m.linkId);
  }
  const sorted = [...members].sort((a, b) => a.priority - b.priority || a.seq - b.seq || a.linkId - b.linkId);
  return sorted.map((member, position) => ({ position, member, mask: proceedOnMask(member.proceedOn) }));
}
