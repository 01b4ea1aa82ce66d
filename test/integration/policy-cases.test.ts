import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeEnv, ROOT, type Env } from '../helpers/bpfd.js';
import { reasonTemplates, uncovered, type CaseOutcome } from '../helpers/policy-reasons.js';

// bpfd's own cases for the shipped policy, run through the shipped executable the way an
// administrator's CI job runs theirs: no root, no capabilities, no kernel.
const CASES = path.join(ROOT, 'policies', 'cases', 'cases.yaml');
const REGO = readFileSync(path.join(ROOT, 'policies', 'bpfd.rego'), 'utf8');
// the shipped policy is every non-test module in policies/ (one package, split into files)
const MODULES = readdirSync(path.join(ROOT, 'policies')).filter((f) => f.endsWith('.rego') && !f.endsWith('_test.rego')).sort();
const NOBODY = 65534;

describe('policies/cases/cases.yaml: the shipped policy against its own cases', () => {
  let env: Env;
  let outcomes: Array<CaseOutcome & { ok: boolean; problems: string[] }>;
  before(() => {
    env = makeEnv();
  });
  after(() => env?.cleanup());

  test('every case holds, run by an unprivileged uid with no capabilities', () => {
    const args = ['policy', 'test', CASES, '-o', 'json'];
    const r = process.getuid?.() === 0 ? env.runUnprivileged(NOBODY, ...args) : env.run(...args);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const out = r.json();
    outcomes = out.cases;
    assert.equal(out.failed, 0);
    assert.ok(outcomes.length >= 20, `${outcomes.length} cases`);
    for (const c of outcomes) assert.ok(c.ok, `${c.name}: ${c.problems.join('; ')}`);
  });

  test('every reason the shipped policy can give is asserted by at least one case', () => {
    assert.ok(outcomes, 'the cases ran');
    const templates = MODULES.flatMap((f) => reasonTemplates(readFileSync(path.join(ROOT, 'policies', f), 'utf8')).map((t) => ({ ...t, file: f })));
    assert.ok(templates.length >= 18, `found ${templates.length} reason rules in policies/${MODULES.join(', ')}`);
    const missing = uncovered(templates, outcomes).map((t) => `${(t as typeof t & { file?: string }).file} line ${t.line} (${t.set}): ${JSON.stringify(t.fragments)}`);
    assert.deepEqual(missing, [], `reasons with no case in policies/cases/cases.yaml:\n${missing.join('\n')}`);
  });

  test('the check notices a new reason that has no case, and a reason set it does not know', () => {
    assert.ok(outcomes, 'the cases ran');
    const more = `${REGO}\ndeny contains msg if {\n\tinput.action == "pull"\n\tmsg := concat("", ["no pulls on ", input.day])\n}\n`;
    const missing = uncovered(reasonTemplates(more), outcomes);
    assert.deepEqual(missing.map((t) => t.fragments), [['no pulls on ']]);
    assert.throws(() => reasonTemplates(`${REGO}\nwarnings contains "careful" if true\n`), /warnings is a set this check does not know/);
  });
});
