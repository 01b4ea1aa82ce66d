import { type Context, requireRoot } from './context.js';
import { detect, type Finding, type FindingKind } from './disagreements.js';
import { repair } from './repair.js';
import { runningLinkIds } from './dispatcher-members.js';
import { describeAppMountFinding } from './app-mount-check.js';
import { pinnedMapId } from '../loader/app-bpffs.js';

/** One disagreement as `bpfd doctor` prints it. */
export interface FindingView {
  kind: FindingKind;
  /** what it is about: a program, a pin, an interface */
  subject: string;
  detail: string;
  /** what --fix (and every bpfd command that changes something) does about it, or what to run */
  remedy: string;
  /** with --fix: whether it was fixed, and what was done (or why not) */
  fixed?: boolean;
  done?: string;
}

export interface DoctorReport {
  healthy: boolean;
  findings: FindingView[];
  /** with --fix: what a fresh look still finds afterwards */
  remaining?: FindingView[];
}

/**
 * Reports every disagreement between store, pins and kernel; with `fix`, applies the same repair
 * every command applies before it acts, then looks again. It holds the writer lock either way:
 * a command half-way through its work would otherwise look like damage.
 */
export async function doctor(ctx: Context, opts: { fix: boolean }): Promise<DoctorReport> {
  requireRoot('bpfd doctor', "reading bpfd's pins and looking kernel objects up by id require CAP_SYS_ADMIN");
  return ctx.exclusive(async () => {
    const found = detect(ctx, { deep: true, dispatchers: runningLinkIds, pins: pinnedMapId });
    if (!opts.fix) return { healthy: found.findings.length === 0, findings: found.findings.map(describe) };
    const outcomes = new Map(repair(ctx, found).map((o) => [o.finding, o]));
    const findings = found.findings.map((f) => {
      const o = outcomes.get(f);
      return { ...describe(f), fixed: o?.ok ?? false, done: o?.done ?? 'nothing automatic: see the remedy' };
    });
    const remaining = detect(ctx, { deep: true, dispatchers: runningLinkIds, pins: pinnedMapId }).findings.map(describe);
    return { healthy: remaining.length === 0, findings, remaining };
  });
}

const programName = (p: { id: number; name: string }) => `program ${p.id} (${p.name})`;

export function describe(f: Finding): FindingView {
  const view = (subject: string, detail: string, remedy: string): FindingView => ({ kind: f.kind, subject, detail, remedy });
  switch (f.kind) {
    case 'program-gone':
      return view(programName(f.program), 'recorded as loaded, but its pin is gone, and with it the program (removed by hand?)', 'forget the record');
    case 'previous-boot':
      return view(programName(f.program), `loaded in an earlier boot (${f.program.boot_id}) without --persist`, 'forget the record');
    case 'previous-boot-persisted':
      return view(programName(f.program), `loaded with --persist in an earlier boot (${f.program.boot_id})`, 'keep it as pending restore');
    case 'pending-restore': {
      const ifaces = f.pending.links.map((l) => l.iface).join(', ');
      return view(`${programName(f.pending.program)} of boot ${f.pending.program.boot_id}`, `persisted, not loaded in this boot${ifaces ? ` (attached to ${ifaces})` : ''}`, 'run: bpfd system restore');
    }
    case 'orphan-pin':
      return view(f.path, 'pinned under bpfd\'s bpffs, but no record owns it', 'unpin it (the kernel frees the object)');
    case 'temp-dir':
      return view(f.path, `maps pinned by a load in process ${f.pid}, which died before finishing`, 'remove it');
    case 'dispatcher-diverged':
      return view(
        `${f.iface.iface}${f.iface.netns ? ` in ${f.iface.netns}` : ''}`,
        `the dispatcher runs links ${f.running.join(', ') || 'none'}, the records say ${f.links.map((l) => l.id).sort((a, b) => a - b).join(', ')}`,
        'recompose the dispatcher from the records',
      );
    case 'empty-interface':
      return view(f.path, 'a dispatcher is attached there, but no recorded program is', 'detach it');
    default: {
      const d = describeAppMountFinding(f);
      return view(d.subject, d.detail, d.remedy);
    }
  }
}
