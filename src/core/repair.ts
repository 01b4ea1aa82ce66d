import { rmSync } from 'node:fs';
import type { Context } from './context.js';
import { pendingOf, type Detection, type Finding } from './disagreements.js';
import { applyXdpMembers, orderLinks } from './dispatcher-members.js';
import { isAppMountFinding } from './app-mount-check.js';
import { syncAppMounts } from './app-mount-sync.js';

export interface RepairOutcome {
  finding: Finding;
  /** what was done, or why it could not be */
  done: string;
  ok: boolean;
}

/**
 * Applies what detect() found; the caller holds the writer lock. Store changes go in one
 * transaction first (so a crash half-way leaves the old records, and the next command finds the
 * same disagreements again), then pins, then dispatchers. Pending restores are left alone:
 * only `bpfd system restore` resolves them.
 */
export function repair(ctx: Context, d: Detection): RepairOutcome[] {
  const store = ctx.store();
  const outcomes: RepairOutcome[] = [];
  const records = d.findings.filter((f) => f.kind === 'program-gone' || f.kind === 'previous-boot' || f.kind === 'previous-boot-persisted');
  if (records.length) {
    store.forgetPrograms(records.map(({ kind, program, links }) => ({ program, links, pending: kind === 'previous-boot-persisted' ? pendingOf(program, links) : null })));
    for (const f of records) {
      outcomes.push({ finding: f, ok: true, done: f.kind === 'previous-boot-persisted' ? 'kept for bpfd system restore' : 'record removed' });
    }
  }
  for (const f of d.findings) {
    if (f.kind === 'orphan-pin' || f.kind === 'temp-dir' || f.kind === 'empty-interface') {
      outcomes.push(attempt(f, () => {
        rmSync(f.path, { recursive: true, force: true });
        return f.kind === 'empty-interface' ? 'link unpinned, dispatcher detached' : 'removed';
      }));
    } else if (f.kind === 'dispatcher-diverged') {
      outcomes.push(attempt(f, () => {
        applyXdpMembers(ctx, f.iface, orderLinks(f.links), f.links[0].mode);
        return `recomposed with links ${f.links.map((l) => l.id).sort((a, b) => a - b).join(', ')}`;
      }));
    }
  }
  // applications' mounts last: they pin maps of the programs the records above kept
  const appFindings = d.findings.filter(isAppMountFinding);
  if (appFindings.length) outcomes.push(...syncAppMounts(ctx, d.programs, appFindings));
  return outcomes;
}

function attempt(finding: Finding, fn: () => string): RepairOutcome {
  try {
    return { finding, ok: true, done: fn() };
  } catch (e) {
    return { finding, ok: false, done: (e as Error).message };
  }
}
