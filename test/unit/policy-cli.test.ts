import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { sha256Hex } from '../../src/base/sha256.js';
import { authorize } from '../../src/core/authorize.js';
import { openStore } from '../../src/state/store.js';
import { example, loadInput, policyEnv, ROOT, SHIPPED_POLICY, subject, type PolicyEnv } from '../helpers/policy.js';

// Runs the `policy` subcommands the way main.ts will mount them, in a child process so that
// exit status, stdout and stderr are the real ones.
const built = (p: string) => JSON.stringify(pathToFileURL(path.join(ROOT, 'build', 'src', p)).href);
const runner = `
import { runCommandLine } from ${built('cli/command.js')};
import { BpfdError } from ${built('base/errors.js')};
import { exitCodeOf } from ${built('cli/exit-codes.js')};
import { policyCommand } from ${built('cli/policy.js')};
try { await runCommandLine(policyCommand, process.argv.slice(1), ['bpfd', 'policy']); }
catch (e) { if (!(e instanceof BpfdError)) throw e; process.stderr.write('bpfd: ' + e.message + '\\n'); process.exitCode = exitCodeOf(e); }
`;

let env: PolicyEnv;
function bpfdPolicy(...args: string[]) {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', runner, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, BPFD_POLICY: SHIPPED_POLICY, BPFD_POLICY_DATA: env.paths.policyData, BPFD_STATE_DIR: env.paths.stateDir },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  env = policyEnv({ data: example('netops') });
});
after(() => env.cleanup());

describe('bpfd policy eval / log', () => {
  it('prints an allow and exits 0', () => {
    const file = path.join(env.dir, 'allow.json');
    writeFileSync(file, JSON.stringify(loadInput()));
    const r = bpfdPolicy('eval', '--input', file);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Decision: allow\n/);
    assert.match(r.stdout, /allowed by grant "netops"/);
  });

  it('prints a deny with its reasons as JSON and exits 3', () => {
    const file = path.join(env.dir, 'deny.json');
    const input = JSON.stringify(loadInput({ subject: subject({ groups: ['nobody'] }) }));
    writeFileSync(file, input);
    const r = bpfdPolicy('eval', '--input', file, '-o', 'json');
    assert.equal(r.status, 3);
    const out = JSON.parse(r.stdout);
    assert.equal(out.allow, false);
    assert.match(out.reasons[0], /has no grant/);
    assert.match(out.policy.sha256, /^[0-9a-f]{64}$/);
    assert.equal(out.input_sha256, sha256Hex(input));
  });

  it('tries another data document with --data', () => {
    const file = path.join(env.dir, 'root.json');
    writeFileSync(file, JSON.stringify(loadInput({ subject: subject({ uid: 0, username: 'root', groups: [] }) })));
    const data = path.join(env.dir, 'no-root.json');
    writeFileSync(data, JSON.stringify({ root_allowed: false }));
    assert.equal(bpfdPolicy('eval', '--input', file).status, 0);
    assert.equal(bpfdPolicy('eval', '--input', file, '--data', data).status, 3);
  });

  it('reports unreadable input as a usage error', () => {
    const r = bpfdPolicy('eval', '--input', path.join(env.dir, 'missing.json'));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^bpfd: cannot read input .*missing\.json: no such file\n/);
    const bad = path.join(env.dir, 'bad.json');
    writeFileSync(bad, '{');
    assert.match(bpfdPolicy('eval', '--input', bad).stderr, /^bpfd: input .*bad\.json is not valid JSON/);
    assert.equal(bpfdPolicy('eval').status, 2);
  });

  it('lists recent decisions newest first, limited', async () => {
    const store = openStore(env.paths.stateDir);
    await authorize(loadInput(), { paths: env.paths, store });
    await authorize(loadInput({ action: 'attach', subject: subject({ groups: [] }) }), { paths: env.paths, store });
    store.close();
    const r = bpfdPolicy('log', '--limit', '1', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const records = JSON.parse(r.stdout);
    assert.equal(records.length, 1);
    assert.equal(records[0].action, 'attach');
    assert.equal(records[0].allow, false);
    const t = bpfdPolicy('log');
    assert.match(t.stdout, /^SEQ\s+TIME\s+UID\s+USER\s+VIA\s+ACTION\s+RESULT\s+REASONS\n/);
    assert.match(t.stdout, /alice\s+cli\s+load\s+allow\s+allowed by grant "netops"/);
    assert.equal(bpfdPolicy('log', '--limit', 'x').status, 2);
  });
});
