import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { BpfdError } from '../../src/base/errors.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';
import { sha256Hex } from '../../src/base/sha256.js';
import { authorize } from '../../src/core/authorize.js';
import { checkResult, enforce, evaluate, inputSha256, policyInfo, prepareEngine, RECHECK_MS, resetEngines } from '../../src/policy/engine.js';
import { loadModule } from '../../src/policy/module.js';
import { appendDecision, recentDecisions } from '../../src/state/decision-log.js';
import { openStore } from '../../src/state/store.js';
import { LEGACY_POLICY, loadInput, policyEnv, SHIPPED_POLICY, subject, TEST_POLICIES, type PolicyEnv } from '../helpers/policy.js';

const envs: PolicyEnv[] = [];
const make = (opts: Parameters<typeof policyEnv>[0] = {}) => {
  const e = policyEnv(opts);
  envs.push(e);
  return e;
};
afterEach(() => {
  for (const e of envs.splice(0)) {
    try {
      openStore(e.paths.stateDir).close();
    } catch {
      // no store was opened
    }
    e.cleanup();
  }
  resetEngines();
});

const root = subject({ uid: 0, gid: 0, groups: ['root'], username: 'root' });
const testPolicy = (name: string) => path.join(TEST_POLICIES, `${name}.wasm`);

async function assertDeniedWith(policy: string, reason: RegExp, opts: { fuel?: bigint } = {}) {
  const e = make({ policy });
  const d = await evaluate(loadInput({ subject: root }), e.paths, opts);
  assert.equal(d.allow, false);
  assert.equal(d.reasons.length, 1, JSON.stringify(d.reasons));
  assert.match(d.reasons[0], reason);
  return d;
}

describe('policy engine fails closed', () => {
  it('denies when the module file is missing', async () => {
    const d = await assertDeniedWith('/nonexistent/policy.wasm', /^policy module \/nonexistent\/policy\.wasm cannot be read: the file does not exist$/);
    assert.equal(d.policySha256, null);
  });

  it('denies when the module is corrupt (truncated)', async () => {
    const e = make();
    const truncated = path.join(e.dir, 'truncated.wasm');
    writeFileSync(truncated, readFileSync(SHIPPED_POLICY).subarray(0, 4096));
    await assertDeniedWith(truncated, /is not a valid WebAssembly module/);
  });

  it('denies when the file is WebAssembly but not an OPA policy', async () => {
    const e = make();
    const empty = path.join(e.dir, 'empty.wasm');
    writeFileSync(empty, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    await assertDeniedWith(empty, /is not an OPA policy \(no opa_eval export\)/);
  });

  it('refuses at load a module that needs host builtins', async () => {
    await assert.rejects(loadModule(testPolicy('needs-sprintf')), /needs builtins bpfd does not provide: sprintf; rebuild it with --capabilities/);
    await assertDeniedWith(testPolicy('needs-sprintf'), /needs builtins bpfd does not provide: sprintf/);
  });

  it('denies an undefined result', async () => void (await assertDeniedWith(testPolicy('undefined'), /^policy result is undefined \(entrypoint undefined\/decision produced no value\)$/)));

  it('denies a malformed result', async () => void (await assertDeniedWith(testPolicy('malformed'), /^policy result is malformed: expected \{"allow": boolean, "reasons": \[string\]\}, got \{"allow":"yes","reasons":"trust me"\}$/)));

  it('denies when evaluation throws', async () => {
    const e = make({ policy: testPolicy('conflict') });
    const d = await evaluate({ a: true }, e.paths);
    assert.equal(d.allow, false);
    assert.match(d.reasons[0], /^policy evaluation failed: .*conflict/);
  });

  it('stops a runaway policy when its evaluation budget runs out, and denies', async () => {
    const d = await assertDeniedWith(
      testPolicy('loop'),
      /^policy evaluation ran out of its evaluation budget \(5000000 steps, BPFD_POLICY_FUEL\): the policy loops, or does far more work than a decision needs$/,
    );
    assert.match(d.policySha256 ?? '', /^[0-9a-f]{64}$/);
    // the process is still usable afterwards
    const ok = await evaluate(loadInput({ subject: root }), make().paths);
    assert.equal(ok.allow, true);
  });

  it('still uses a module an older bpfd built, whose budget is an exported global: decides, and stops when it runs out', async () => {
    const e = make({ policy: LEGACY_POLICY });
    assert.equal((await evaluate(loadInput({ subject: root }), e.paths)).allow, true);
    await assertDeniedWith(LEGACY_POLICY, /^policy evaluation ran out of its evaluation budget \(100 steps, BPFD_POLICY_FUEL\)/, { fuel: 100n });
  });

  it('denies when the data document is not JSON, or not an object', async () => {
    const e = make({ data: '{"grants": [' });
    const d = await evaluate(loadInput({ subject: root }), e.paths);
    assert.equal(d.allow, false);
    assert.match(d.reasons[0], /^policy data .*policy-data\.json is not valid JSON: /);
    const e2 = make({ data: [] });
    assert.match((await evaluate(loadInput({ subject: root }), e2.paths)).reasons[0], /must be a JSON object, not an array$/);
  });

  it('treats a missing data document as no grants, root still allowed', async () => {
    const e = make();
    assert.equal((await evaluate(loadInput({ subject: root }), e.paths)).allow, true);
    assert.equal((await evaluate(loadInput(), e.paths)).allow, false);
  });

  it('picks up an edited data document and a replaced module without a restart, once RECHECK_MS has passed', async () => {
    const data = make({ data: {} });
    const mod = make();
    mod.paths.policy = path.join(mod.dir, 'policy.wasm');
    copyFileSync(SHIPPED_POLICY, mod.paths.policy);
    // The window's clock, stepped by hand: the cached case is checked on every machine, however slow.
    let clock = 1_000_000;
    const now = () => clock;
    assert.equal((await evaluate(loadInput(), data.paths, { now })).allow, false);
    assert.equal((await evaluate(loadInput({ subject: root }), mod.paths, { now })).allow, true);
    data.writeData({ grants: [{ name: 'all-netops', groups: ['netops'] }] });
    copyFileSync(testPolicy('undefined'), mod.paths.policy);
    clock += RECHECK_MS - 1;
    // Inside the window the loaded engines decide without looking at the files.
    assert.equal((await evaluate(loadInput(), data.paths, { now })).allow, false);
    assert.equal((await evaluate(loadInput({ subject: root }), mod.paths, { now })).allow, true);
    clock += 1;
    assert.deepEqual((await evaluate(loadInput(), data.paths, { now })).reasons, ['allowed by grant "all-netops"']);
    assert.match((await evaluate(loadInput({ subject: root }), mod.paths, { now })).reasons[0], /^policy result is undefined/);
  });

  it('picks up an edit at once after resetEngines (a service reloading on SIGHUP)', async () => {
    const e = make({ data: {} });
    assert.equal((await evaluate(loadInput(), e.paths)).allow, false);
    e.writeData({ grants: [{ name: 'all-netops', groups: ['netops'] }] });
    resetEngines();
    assert.deepEqual((await evaluate(loadInput(), e.paths)).reasons, ['allowed by grant "all-netops"']);
  });

  it('decides with the module the file holds when consulted, not the one an early compile started on', async () => {
    const mod = make();
    mod.paths.policy = path.join(mod.dir, 'policy.wasm');
    copyFileSync(SHIPPED_POLICY, mod.paths.policy);
    prepareEngine(mod.paths); // as a load does at its start: the shipped policy starts compiling
    copyFileSync(testPolicy('undefined'), mod.paths.policy); // replaced before the policy is consulted
    const d = await evaluate(loadInput({ subject: root }), mod.paths);
    assert.match(d.reasons[0], /^policy result is undefined/);
    assert.equal(d.policySha256, sha256Hex(readFileSync(testPolicy('undefined'))));
    // and the same bytes use the early compile: the decision is the shipped policy's
    resetEngines();
    copyFileSync(SHIPPED_POLICY, mod.paths.policy);
    prepareEngine(mod.paths);
    const shipped = await evaluate(loadInput({ subject: root }), mod.paths);
    assert.equal(shipped.allow, true);
    assert.equal(shipped.policySha256, sha256Hex(readFileSync(SHIPPED_POLICY)));
  });

  it('checks the result shape strictly', () => {
    assert.equal(checkResult([{ result: { allow: true, reasons: [] } }], 'e').allow, true);
    for (const bad of [[], null, [{ result: null }], [{ result: [] }], [{ result: { allow: true } }], [{ result: { allow: true, reasons: [1] } }], [{ result: { allow: true, reasons: [] } }, { result: {} }]]) {
      assert.equal(checkResult(bad, 'e').allow, false, JSON.stringify(bad));
    }
  });
});

describe('authorize and the decision log', () => {
  it('logs each decision with subject, action, digests and duration', async () => {
    const e = make({ data: {} });
    const store = openStore(e.paths.stateDir);
    const denied = await authorize(loadInput(), { paths: e.paths, store });
    const allowed = await authorize(loadInput({ subject: root }), { paths: e.paths, store });
    const [newest, older] = recentDecisions(store, 10);
    assert.equal(newest.allow, true);
    assert.equal(older.allow, false);
    assert.deepEqual(older.reasons, denied.reasons);
    assert.deepEqual(older.subject, { uid: 1001, username: 'alice', pid: 4242, via: 'cli' });
    assert.equal(older.action, 'load');
    assert.equal(older.input_sha256, inputSha256(denied));
    assert.equal(older.input_sha256, sha256Hex(JSON.stringify(loadInput())));
    assert.equal(newest.policy_sha256, policyInfo(e.paths).sha256);
    assert.ok(newest.seq > older.seq);
    assert.ok(Number.isInteger(newest.duration_us) && newest.duration_us >= 0);
    assert.ok(!Number.isNaN(Date.parse(newest.time)));
    assert.equal(allowed.policySha256, newest.policy_sha256);
  });

  it('opens the store from paths when none is given', async () => {
    const e = make({ data: {} });
    await authorize(loadInput({ subject: root }), { paths: e.paths });
    assert.equal(recentDecisions(openStore(e.paths.stateDir)).length, 1);
  });

  it('keeps the log bounded, dropping the oldest', async () => {
    const e = make({ data: {} });
    const store = openStore(e.paths.stateDir);
    for (let i = 0; i < 12; i++) await authorize(loadInput({ subject: { ...root, pid: i } }), { paths: e.paths, store, logMax: 5 });
    const all = recentDecisions(store, 100);
    assert.deepEqual(all.map((d) => d.subject.pid), [11, 10, 9, 8, 7]);
    assert.deepEqual(recentDecisions(store, 2).map((d) => d.subject.pid), [11, 10]);
    assert.throws(() => appendDecision(store, { ...all[0] }, 0), /positive integer/);
  });

  it('logs denials from a broken module too', async () => {
    const e = make({ policy: '/nonexistent.wasm' });
    const store = openStore(e.paths.stateDir);
    await authorize(loadInput({ subject: root }), { paths: e.paths, store });
    const [d] = recentDecisions(store);
    assert.equal(d.allow, false);
    assert.equal(d.policy_sha256, null);
  });

  it('enforce throws the denied error with the reasons as details', async () => {
    const e = make({ data: {} });
    const d = await evaluate(loadInput(), e.paths);
    assert.throws(
      () => enforce(d),
      (err: unknown) => err instanceof BpfdError && err.kind === 'denied' && exitCodeOf(err) === 3 && err.details[0] === d.reasons[0],
    );
    enforce(await evaluate(loadInput({ subject: root }), e.paths));
  });

  it('reports the active module for bpfd version', () => {
    const info = policyInfo({ policy: SHIPPED_POLICY });
    assert.equal(info.path, SHIPPED_POLICY);
    assert.match(info.sha256 ?? '', /^[0-9a-f]{64}$/);
    assert.equal(policyInfo({ policy: '/nonexistent.wasm' }).sha256, null);
  });
});
