import { resolvePaths } from '../base/paths.js';
import { ExitCode } from './exit-codes.js';
import { nowMs } from '../base/timings.js';
import { bpfdCommand } from './command.js';
import { printJson, writeOut } from './output.js';
import { judge, readCasesFile } from './policy-cases.js';

/**
 * `bpfd policy test CASES`: a table of requests and the decisions they must get, run against a
 * policy module and data document without root or a kernel, as a CI step.
 */

interface CaseResult {
  name: string;
  ok: boolean;
  expected: { allow: boolean; reasons: string[] };
  got: { allow: boolean; reasons: string[] };
  problems: string[];
  policy: string;
  data: string;
  duration_us: number;
}

export const policyTestCommand = bpfdCommand({
  name: 'policy test',
  description: 'Run a table of requests against the policy, each with the decision it must get (exit 0 all hold, 1 one does not, 2 malformed file)',
  more: `
A cases file (JSON or YAML) is a list of cases, or {data: FILE, policy: FILE.wasm, cases: [...]}:

  data: policy-data.json
  cases:
    - name: netops may load a counter on eth0
      request: {object: xdp_count.o, name: xdp_count, as: alice:1001, groups: [netops],
                iface: eth0, priority: 150, existing: eth0.json}
      expect: {allow: true, reasons: ['allowed by grant "netops"']}

A request has the fields of bpfd policy eval's flags (groups for --group, proceed-on a list or
a comma list, metadata an object); its paths are relative to the cases file. expect.reasons are
substrings that must each appear in some reason. A case's request.data / request.policy win over
--data / --policy, which win over the file's, which win over BPFD_POLICY_DATA / BPFD_POLICY.
No root, no kernel: in CI, one step:  bpfd policy test cases.yaml
A complete example: policies/examples/ci/ (walked through in policies/README.md).`,
  positionals: [{ name: 'cases', description: 'the cases file (.json, .yaml or .yml)' }],
  options: {
    data: { type: 'string', description: "data document for the cases that do not name their own (instead of the file's, or BPFD_POLICY_DATA)", valueHint: 'FILE' },
    policy: { type: 'string', description: "policy module for the cases that do not name their own (instead of the file's, or the active one)", valueHint: 'FILE.wasm' },
    output: { type: 'string', short: 'o', description: 'output format: table, json or tap', valueHint: 'table|json|tap', default: 'table' },
  },
  outputs: ['table', 'json', 'tap'],
  async run({ values, positionals }) {
    const file = await readCasesFile(positionals[0]);
    const paths = resolvePaths();
    const { evaluate } = await import('../policy/engine.js');
    const results: CaseResult[] = [];
    const started = nowMs();
    for (const c of file.cases) {
      const policy = c.policy ?? (values.policy as string | undefined) ?? file.policy ?? paths.policy;
      const data = c.data ?? (values.data as string | undefined) ?? file.data ?? paths.policyData;
      const d = await evaluate(c.input, { policy, policyData: data });
      const got = { allow: d.allow, reasons: d.reasons };
      const problems = judge(c, got);
      results.push({ name: c.name, ok: problems.length === 0, expected: c.expect, got, problems, policy, data, duration_us: Math.round(d.durationUs) });
    }
    const failed = results.filter((r) => !r.ok).length;
    const totalUs = Math.round((nowMs() - started) * 1000);
    if (values.output === 'json') printJson({ file: file.path, cases: results, passed: results.length - failed, failed, duration_us: totalUs });
    else if (values.output === 'tap') writeOut(tap(results));
    else writeOut(text(file.path, results, failed));
    process.exitCode = failed ? ExitCode.failed : ExitCode.ok;
  },
});

const decisionWords = (d: { allow: boolean; reasons: string[] }) => `${d.allow ? 'allow' : 'deny'}${d.reasons.length ? '' : ' (no reasons)'}`;

function text(file: string, results: CaseResult[], failed: number): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.ok ? 'ok  ' : 'FAIL'}  ${r.name}`);
    if (r.ok) continue;
    const wanted = r.expected.reasons.map((s) => JSON.stringify(s)).join(', ');
    lines.push(`      expected: ${r.expected.allow ? 'allow' : 'deny'}${wanted ? `, with reasons containing ${wanted}` : ''}`);
    lines.push(`      got:      ${decisionWords(r.got)}`);
    for (const reason of r.got.reasons) lines.push(`        ${reason}`);
    for (const p of r.problems.filter((x) => x.startsWith('expected a reason'))) lines.push(`      ${p}`);
  }
  lines.push(`${file}: ${results.length} cases, ${results.length - failed} hold, ${failed} ${failed === 1 ? 'does' : 'do'} not`);
  return lines.join('\n') + '\n';
}

function tap(results: CaseResult[]): string {
  const yamlString = (s: string) => JSON.stringify(s);
  const lines = ['TAP version 13', `1..${results.length}`];
  results.forEach((r, i) => {
    lines.push(`${r.ok ? 'ok' : 'not ok'} ${i + 1} - ${r.name.replace(/#/g, '\\#')}`);
    if (r.ok) return;
    lines.push('  ---');
    lines.push(`  message: ${yamlString(r.problems.join('; '))}`);
    lines.push(`  expected: {allow: ${r.expected.allow}, reasons: [${r.expected.reasons.map(yamlString).join(', ')}]}`);
    lines.push(`  got: {allow: ${r.got.allow}, reasons: [${r.got.reasons.map(yamlString).join(', ')}]}`);
    lines.push('  ...');
  });
  return lines.join('\n') + '\n';
}
