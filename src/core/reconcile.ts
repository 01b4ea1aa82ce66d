import type { Context } from './context.js';
import { detect, type Finding } from './disagreements.js';
import { repair as applyRepairs, type RepairOutcome } from './repair.js';
import { runningLinkIds } from './dispatcher-members.js';
import { pinnedMapId } from '../loader/app-bpffs.js';
import type { LinkRecord, ProgramRecord } from '../state/records.js';

export interface Reconciled {
  /** records whose programs run in this boot, and their links */
  programs: ProgramRecord[];
  links: LinkRecord[];
  findings: Finding[];
  /** empty unless repaired */
  repairs: RepairOutcome[];
}

/**
 * Brings store and kernel into agreement before a command acts. With repair (the caller holds
 * the writer lock) what detect() finds is applied; without it (a read that must not wait)
 * stale records are only hidden from the answer.
 */
export function reconcile(ctx: Context, repair: boolean): Reconciled {
  // What the kernel's dispatchers run changes behind the records only when a writer dies half-way
  // (a program that vanished shows in the pins, and its repair recomposes the interface anyway):
  // the writer after it asks the kernel, the others trust the records. Doctor always asks.
  const died = repair && ctx.previousHolderDied();
  const d = detect(ctx, repair ? { deep: true, dispatchers: died ? runningLinkIds : undefined, pins: died ? pinnedMapId : undefined } : { deep: false });
  const repairs = repair ? applyRepairs(ctx, d) : [];
  for (const r of repairs) {
    if (!r.ok) process.stderr.write(`bpfd: warning: could not repair (${r.finding.kind}): ${r.done}\n`);
  }
  return { ...d, repairs };
}
