import { readFileSync } from 'node:fs';
import { defineCommand } from 'citty';
import { resolvePaths } from '../base/paths.js';
import { invalidInput } from '../base/errors.js';
import { ExitCode } from './exit-codes.js';
import type { Decision } from '../policy/engine.js';

type PolicyInfo = typeof import('../policy/engine.js').policyInfo;
import type { DecisionRecord } from '../state/decision-log.js';
import { bpfdCommand, outputOption } from './command.js';
import { printJson, table, writeOut } from './output.js';

/** `bpfd policy eval` and `bpfd policy log`: see what the policy decides, and what it decided. */

const evalCommand = bpfdCommand({
  name: 'policy eval',
  description: 'Evaluate the active policy on an input document and print the decision, without acting (exit 0 allowed, 3 denied)',
  options: {
    input: { type: 'string', description: 'policy input as JSON (see policies/README.md); - reads stdin', valueHint: 'FILE' },
    data: { type: 'string', description: 'data document to use instead of BPFD_POLICY_DATA, to try an edit before installing it', valueHint: 'FILE' },
    ...outputOption,
  },
  async run({ values }) {
    const file = values.input as string | undefined;
    if (!file) throw invalidInput('missing --input FILE (see: bpfd policy eval --help)', ['policies/examples/input-load.json is an example input']);
    const input = readInput(file);
    const paths = resolvePaths();
    if (values.data) paths.policyData = values.data as string;
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
      });
    } else writeOut(decisionText(decision, paths.policy, paths.policyData, policyInfo));
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
    const { openStore } = await import('../state/store.js');
    const records = recentDecisions(openStore(resolvePaths().stateDir), Number(raw));
    if (values.output === 'json') printJson(records);
    else writeOut(records.length ? logTable(records) : 'no policy decisions recorded yet\n');
  },
});

export const policyCommand = defineCommand({
  meta: { name: 'policy', description: 'Inspect the policy: evaluate an input, show recent decisions' },
  subCommands: { eval: evalCommand, log: logCommand },
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
    `Policy:   ${policyPath} (sha256 ${d.policySha256 ?? policyInfo({ policy: policyPath }).sha256 ?? 'unreadable'})`,
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
