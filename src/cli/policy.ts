import { readFileSync } from 'node:fs';
import { policyLabel, resolvePaths } from '../base/paths.js';
import { invalidInput } from '../base/errors.js';
import { ExitCode } from './exit-codes.js';
import type { Decision } from '../policy/engine.js';

type PolicyInfo = typeof import('../policy/engine.js').policyInfo;
import type { DecisionRecord } from '../state/decision-log.js';
import { bpfdCommand, defineCommand, outputOption } from './command.js';
import { printJson, table, writeOut } from './output.js';
import { inputFromFlags, requestFlagsGiven, requestOptions } from './policy-eval-flags.js';
import { policyBuildCommand, policyCapabilitiesCommand, policyCheckCommand } from './policy-module.js';
import { policyTestCommand } from './policy-test.js';

/** `bpfd policy eval` and `bpfd policy log`: see what the policy decides, and what it decided. */

const evalCommand = bpfdCommand({
  name: 'policy eval',
  description: 'Ask the policy about a request without making it: the decision and its reasons (exit 0 allowed, 3 denied)',
  more: `
The request is described with load's flags and built into policy input by the code a real request
uses: the bytecode facts are read from --object as load reads them, --as/--group stand in for the
caller, --existing for the programs already on the interface. Needs neither root nor a kernel.

Examples:
  bpfd policy eval --object xdp_count.o --name xdp_count --as alice:1001 --group netops \\
      --iface eth0 --priority 150 --data policy-data.json
  bpfd policy eval --object xdp_drop.o --name xdp_drop --action detach --owner 0 --as 1001 --iface eth0
  bpfd policy eval --action pull --image registry.example.com/net/xdp:v1 --as 1001 --group netops
  bpfd list -o json > eth0.json    # on a host: what is already there, for --existing eth0.json
  bpfd policy eval --input input.json    # a whole input written by hand (policies/README.md)

--explain prints the input that was evaluated. A table of such requests with the decisions they
must get is a cases file for bpfd policy test.`,
  options: {
    ...requestOptions,
    input: { type: 'string', description: 'a whole policy input as JSON instead of a request (see policies/README.md); - reads stdin', valueHint: 'FILE' },
    data: { type: 'string', description: 'data document to use instead of BPFD_POLICY_DATA, to try an edit before installing it', valueHint: 'FILE' },
    policy: { type: 'string', description: 'policy module to use instead of the active one (BPFD_POLICY, /etc/bpfd/policy.wasm)', valueHint: 'FILE.wasm' },
    explain: { type: 'boolean', description: 'also print the input that was evaluated' },
    ...outputOption,
  },
  async run({ values }) {
    const file = values.input as string | undefined;
    let input: unknown;
    if (file) {
      const extra = requestFlagsGiven(values);
      if (extra.length) throw invalidInput(`--input is the whole input: leave out ${extra.join(', ')}`);
      input = readInput(file);
    } else input = await inputFromFlags(values);
    const paths = resolvePaths();
    if (values.data) paths.policyData = values.data as string;
    if (values.policy) paths.policy = values.policy as string;
    // Loaded here, not at the top: every bpfd command imports this file for its --help.
    const { evaluate, inputSha256, policyInfo } = await import('../policy/engine.js');
    const decision = await evaluate(input, paths);
    if (values.output === 'json') {
      printJson({
        allow: decision.allow,
        reasons: decision.reasons,
        policy: { path: paths.policy, sha256: decision.policySha256 },
        data: paths.policyData,
        input_sha256: inputSha256(decision),
        duration_us: Math.round(decision.durationUs),
        ...(values.explain ? { input } : {}),
      });
    } else {
      writeOut(decisionText(decision, paths.policy, paths.policyData, policyInfo));
      if (values.explain) writeOut(`Input:\n${JSON.stringify(input, null, 2)}\n`);
    }
    process.exitCode = decision.allow ? ExitCode.ok : ExitCode.denied;
  },
});

const logCommand = bpfdCommand({
  name: 'policy log',
  description: 'Recent policy decisions from the store, newest first',
  options: {
    limit: { type: 'string', description: 'how many decisions to show (default 20)', valueHint: 'N', default: '20' },
    ...outputOption,
  },
  async run({ values }) {
    const raw = values.limit as string;
    if (!/^\d+$/.test(raw) || Number(raw) < 1) throw invalidInput(`--limit ${raw}: give a positive whole number`);
    // the store (lmdb) loads only for the command that reads it
    const { recentDecisions } = await import('../state/decision-log.js');
    const { openStore } = await import('../core/store-open.js');
    const records = recentDecisions(openStore(resolvePaths().stateDir), Number(raw));
    if (values.output === 'json') printJson(records);
    else writeOut(records.length ? logTable(records) : 'no policy decisions recorded yet\n');
  },
});

export const policyCommand = defineCommand({
  meta: { name: 'policy', description: 'The policy: evaluate a request, test a table of cases, check or build a module, show recent decisions' },
  subCommands: {
    eval: evalCommand,
    test: policyTestCommand,
    check: policyCheckCommand,
    build: policyBuildCommand,
    capabilities: policyCapabilitiesCommand,
    log: logCommand,
  },
});

function readInput(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw invalidInput(`cannot read input ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidInput(`input ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function decisionText(d: Decision, policyPath: string, dataPath: string, policyInfo: PolicyInfo): string {
  const lines = [
    `Decision: ${d.allow ? 'allow' : 'deny'}`,
    `Policy:   ${policyLabel(policyPath)} (sha256 ${d.policySha256 ?? policyInfo({ policy: policyPath }).sha256 ?? 'unreadable'})`,
    `Data:     ${dataPath}`,
    'Reasons:',
    ...(d.reasons.length ? d.reasons.map((r) => `  ${r}`) : ['  (none given)']),
  ];
  return lines.join('\n') + '\n';
}

function logTable(records: DecisionRecord[]): string {
  return table(
    ['SEQ', 'TIME', 'UID', 'USER', 'VIA', 'ACTION', 'RESULT', 'REASONS'],
    records.map((r) => [
      String(r.seq),
      r.time,
      String(r.subject.uid),
      r.subject.username,
      r.subject.via,
      r.action,
      r.allow ? 'allow' : 'deny',
      r.reasons.length > 1 ? `${r.reasons[0]} (+${r.reasons.length - 1} more)` : (r.reasons[0] ?? ''),
    ]),
  );
}
