import { bpfdCommand, defineCommand, outputOption } from './command.js';
import { linkCells, printJson, table, writeOut } from './output.js';
import { ctxFor, lockOption } from './programs.js';
import { ExitCode } from './exit-codes.js';
import type { RestoreReport } from '../core/restore.js';
import { serviceCommand } from './service.js';

const restoreCommand = bpfdCommand({
  name: 'system restore',
  description:
    'Load and attach again the programs loaded with --persist before the last reboot (see: bpfd list --pending), ' +
    'from the copies of their objects in the store, in their order on each interface. Each is checked against the policy ' +
    'in force now, as a load by the caller. Run at boot by systemd/bpfd-restore.service. Exit 0 when all came back, ' +
    '1 when any failed (the others are restored all the same; the failed ones stay pending)',
  options: { ...lockOption, ...outputOption },
  async run(p) {
    const { restore } = await import('../core/restore.js');
    const report = await restore(await ctxFor(p, 'bpfd system restore'));
    if (p.values.output === 'json') printJson(report);
    else printReport(report);
    if (report.failed.length) process.exitCode = ExitCode.failed;
  },
});

function printReport(r: RestoreReport): void {
  if (r.restored.length === 0 && r.failed.length === 0) {
    writeOut('nothing to restore\n');
    return;
  }
  if (r.restored.length) {
    const rows = r.restored.flatMap((x) =>
      (x.links.length ? x.links : [null]).map((l) => {
        const c = l ? linkCells(l) : null;
        return [String(x.previous_id), String(x.id), x.name, c?.iface ?? '-', c?.priority ?? '-', l ? String(l.position) : '-', l ? String(l.id) : '-', l?.kind ?? '-'];
      }),
    );
    writeOut(`restored ${r.restored.length}:\n` + table(['PREV-ID', 'ID', 'NAME', 'IFACE', 'PRIORITY', 'POSITION', 'LINK', 'KIND'], rows));
  }
  for (const f of r.failed) {
    process.stderr.write(`bpfd: could not restore ${f.name} (id ${f.previous_id} in boot ${f.key.split('/')[0]}): ${f.reason}\n`);
    for (const d of f.details) process.stderr.write(`  ${d}\n`);
  }
  if (r.failed.length) process.stderr.write(`bpfd: ${r.failed.length} not restored; they stay pending (bpfd list --pending) for another bpfd system restore\n`);
}

export const systemCommand = defineCommand({
  meta: { name: 'system', description: 'Host-level tasks: restore persisted programs after a reboot; serve the bpfman.v1 API' },
  subCommands: { restore: restoreCommand, service: serviceCommand },
});
