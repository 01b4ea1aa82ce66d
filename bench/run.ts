import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUN, benchCli } from './cli.js';
import { benchDispatcher } from './dispatcher.js';
import { benchElfGate } from './elf-gate.js';
import { benchPolicyCases } from './policy-cases.js';
import { benchRecovery } from './recovery.js';
import { benchService } from './service.js';
import { benchOci } from './oci.js';

/** `npm run bench`: every benchmark in one run, each printed beside its reference. Needs root. */
if (process.getuid?.() !== 0) {
  console.error('bench: run as root (sudo npm run bench): it loads programs and creates network namespaces');
  process.exit(1);
}
// Under `sudo npm run bench` bpfd would judge the user who ran sudo and refuse the benchmarks'
// scratch BPFD_* dirs: the benchmarks act as root, so they drop sudo's variables.
for (const k of ['SUDO_UID', 'SUDO_GID', 'SUDO_USER', 'SUDO_COMMAND']) delete process.env[k];

/**
 * The policy benchmark runs under Bun, the runtime of the executable: a decision costs what the
 * engine costs on JavaScriptCore, not on node's V8. Its lines, then the ratio to OPA's own
 * opa_eval measured in the same process.
 */
async function benchPolicyUnderBun(): Promise<string[]> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'policy.js');
  const r = spawnSync(BUN, [script], { encoding: 'utf8', cwd: path.resolve(path.dirname(script), '..', '..') });
  if (r.status !== 0) throw new Error(`policy bench under Bun failed (${r.status}): ${r.stderr}`);
  const lines = r.stdout.trimEnd().split('\n');
  const us = (label: RegExp, which: 'p50' | 'p99') => Number(new RegExp(`${label.source}.*?${which} ([0-9.]+) us`).exec(r.stdout)?.[1] ?? NaN);
  const bpfd50 = us(/evaluate\(\) as bpfd runs it/, 'p50');
  const bpfd99 = us(/evaluate\(\) as bpfd runs it/, 'p99');
  const opa50 = us(/opa_eval, OPA's own module/, 'p50');
  const ratio = bpfd50 / opa50;
  lines.unshift(`(under Bun ${spawnSync(BUN, ['--version'], { encoding: 'utf8' }).stdout.trim()}, the runtime of dist/bpfd)`);
  lines.push(
    `bpfd's decision vs opa_eval, same run: ${ratio.toFixed(2)}x (target <= 1.3x: ${ratio <= 1.3 ? 'met' : 'MISSED'}), ` +
      `p99 ${bpfd99.toFixed(1)} us (target < 100 us: ${bpfd99 < 100 ? 'met' : 'MISSED'})`,
  );
  return lines;
}

const sections: Array<[string, () => Promise<string[]>]> = [
  ['CLI', () => benchCli()],
  ['Strict ELF gate', () => benchElfGate()],
  ['XDP dispatcher', () => benchDispatcher()],
  ['Policy', () => benchPolicyUnderBun()],
  ['Policy cases (bpfd policy test)', () => benchPolicyCases()],
  ['Lock and recovery check', () => benchRecovery()],
  ['Service (bpfman.v1 over the unix socket)', () => benchService()],
  ['Images', () => benchOci()],
];
// `npm run bench -- CLI Policy`: only the sections named (case-insensitive prefixes), for a quick re-measure
const only = process.argv.slice(2).map((a) => a.toLowerCase());
for (const [name, run] of sections) {
  if (only.length && !only.some((o) => name.toLowerCase().startsWith(o))) continue;
  console.log(`\n### ${name}`);
  for (const line of await run()) console.log(line);
}
