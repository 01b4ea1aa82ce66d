import { bpfdCommand, outputOption } from './command.js';
import { printJson, table, writeOut } from './output.js';
import { ctxFor, lockOption } from './programs.js';
import { ExitCode } from './exit-codes.js';
import type { FindingView } from '../core/doctor.js';

export const doctorCommand = bpfdCommand({
  name: 'doctor',
  description:
    "Report where store, pins and kernel disagree (programs gone, pins no record owns, dead loads' temp dirs, dispatchers " +
    'not running what is recorded, applications\' bpffs mounts and pins that disagree with their shares, pending restores); change nothing unless --fix. Exit 0 healthy, 1 problems left',
  options: {
    fix: { type: 'boolean', description: 'repair what every changing bpfd command would repair first, report what was done, then look again' },
    ...lockOption,
    ...outputOption,
  },
  async run(p) {
    const { doctor } = await import('../core/doctor.js');
    const report = await doctor(await ctxFor(p, `bpfd doctor${p.values.fix ? ' --fix' : ''}`), { fix: p.values.fix === true });
    if (p.values.output === 'json') printJson(report);
    else if (report.remaining === undefined) {
      writeOut(report.healthy ? 'healthy: store, pins and kernel agree\n' : `${report.findings.length} problem(s):\n` + findingsTable(report.findings) + 'fix with: bpfd doctor --fix\n');
    } else {
      if (report.findings.length) writeOut('repairs:\n' + table(['KIND', 'SUBJECT', 'RESULT'], report.findings.map((f) => [f.kind, f.subject, `${f.fixed ? 'fixed' : 'not fixed'}: ${f.done}`])));
      writeOut(report.healthy ? 'healthy: store, pins and kernel agree\n' : `still ${report.remaining.length} problem(s):\n` + findingsTable(report.remaining));
    }
    if (!report.healthy) process.exitCode = ExitCode.failed;
  },
});

function findingsTable(findings: FindingView[]): string {
  return table(['KIND', 'SUBJECT', 'PROBLEM', 'REMEDY'], findings.map((f) => [f.kind, f.subject, f.detail, f.remedy]));
}
