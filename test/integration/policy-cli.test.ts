import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BPFD, fixture, kernelProgIds, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();

describe('policy decides every change, through the real CLI', { skip }, () => {
  let env: Env;
  let net: VethPair;
  before(() => {
    env = makeEnv();
    net = makeVethPair();
    writeFileSync(
      env.env.BPFD_POLICY_DATA!,
      JSON.stringify({
        reserved_priorities: [{ min: 0, max: 9, applications: ['firewall'], description: 'early drop of hostile traffic' }],
        ordering: [{ before: 'firewall', after: 'monitoring' }],
      }),
    );
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
  });

  const attachArgs = () => ['--iface', net.ifB, '--netns', net.nsPathB];

  test('a load into a reserved priority band is denied: exit 3, reasons printed, nothing loaded, decision logged', () => {
    const before = kernelProgIds();
    const r = env.run('load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', ...attachArgs(), '--priority', '5');
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /denied by policy/);
    assert.match(r.stderr, /reserved/i);
    assert.deepEqual([...kernelProgIds()].filter((id) => !before.has(id)), []);
    assert.deepEqual(env.pins(), []);
    assert.ok(net.ping(), 'nothing attached');
    const log = env.run('policy', 'log', '--limit', '1', '-o', 'json').json();
    assert.equal(log.length, 1);
    assert.equal(log[0].action, 'load');
    assert.equal(log[0].allow, false);
    assert.match(log[0].reasons.join('\n'), /reserved/i);
    assert.match(log[0].policy_sha256, /^[0-9a-f]{64}$/);
  });

  test('the application that owns the band may use it; ordering rules are checked against what is there', () => {
    const fw = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', ...attachArgs(), '--priority', '5', '--application', 'firewall', '-o', 'json');
    assert.equal(fw.status, 0, fw.stderr);
    // monitoring must run after firewall: a monitoring program before it is denied
    const early = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...attachArgs(), '--priority', '3', '--application', 'monitoring');
    assert.equal(early.status, 3, early.stderr);
    const beforeDry = kernelProgIds();
    const dry = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...attachArgs(), '--priority', '20', '--application', 'monitoring', '--dry-run', '-o', 'json');
    assert.equal(dry.status, 0, dry.stderr);
    assert.equal(dry.json().allow, true);
    assert.deepEqual(dry.json().order.map((o: any) => [o.position, o.name, o.new]), [[0, 'xdp_pass', false], [1, 'xdp_count', true]]);
    assert.deepEqual([...kernelProgIds()].filter((id) => !beforeDry.has(id)), [], 'dry run loads nothing');
    assert.equal(env.run('list', '-o', 'json').json().length, 1);
    const dryText = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...attachArgs(), '--priority', '20', '--application', 'monitoring', '--dry-run');
    assert.match(dryText.stdout, /would allow/);
    assert.match(dryText.stdout, /1\s+-\s+xdp_count\s+20\s+monitoring\s+<- new/);
    const late = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...attachArgs(), '--priority', '20', '--application', 'monitoring', '-o', 'json');
    assert.equal(late.status, 0, late.stderr);
    const order = env.run('list', '-o', 'json').json().map((p: any) => [p.application, p.links[0].position]);
    assert.deepEqual(order, [['firewall', 0], ['monitoring', 1]]);
    for (const p of env.run('list', '-o', 'json').json()) assert.equal(env.run('unload', String(p.id)).status, 0);
  });

  test('no valid policy means deny, even for root', () => {
    const broken = path.join(env.dir, 'broken.wasm');
    writeFileSync(broken, 'not wasm');
    for (const policy of ['/nonexistent/policy.wasm', broken]) {
      const e = makeEnv({ BPFD_POLICY: policy });
      try {
        const r = e.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass');
        assert.equal(r.status, 3, r.stderr);
        assert.match(r.stderr, /denied by policy/);
        assert.deepEqual(e.pins(), []);
        assert.match(e.run('version').stdout, new RegExp(policy === broken ? 'policy sha256: [0-9a-f]{64}' : 'missing'));
      } finally {
        e.cleanup();
      }
    }
  });

  test('BPFD_TIMINGS=1 reports the policy and the decision-log write of a change, and nothing without it', () => {
    const args = ['load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...attachArgs(), '--priority', '30', '--dry-run'];
    const timed = spawnSync(BPFD, args, { env: { ...env.env, BPFD_TIMINGS: '1' }, encoding: 'utf8' });
    assert.equal(timed.status, 0, timed.stderr);
    const line = /^bpfd timings: (.*)$/m.exec(timed.stderr);
    assert.ok(line, `a timings line on stderr: ${timed.stderr}`);
    const spans = new Map(line[1].split(', ').map((part) => {
      const m = /^(.+) ([0-9.]+) ms$/.exec(part);
      assert.ok(m, `span "${part}" reads NAME N ms`);
      return [m[1], Number(m[2])] as const;
    }));
    for (const name of ['policy', 'policy module', 'decision log', 'lock held', 'process']) assert.ok(spans.has(name), `span ${name} in ${line[1]}`);
    assert.ok(spans.get('policy')! >= spans.get('decision log')!, 'the decision-log write is inside the policy span');
    assert.ok(spans.get('process')! > spans.get('lock held')!);
    const quiet = env.run(...args);
    assert.equal(quiet.status, 0, quiet.stderr);
    assert.doesNotMatch(quiet.stderr, /timings/);
  });

  // The policy module compiles on background threads while a change takes the lock and checks the
  // store: without the early start its compile runs after the lock, on the command's own time.
  test('attach, detach and unload start the policy compile before they take the lock (BPFD_TIMINGS=timeline)', () => {
    const timeline = (...args: string[]) => {
      const r = spawnSync(BPFD, args, { env: { ...env.env, BPFD_TIMINGS: 'timeline' }, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const line = /^bpfd timeline: (.*)$/m.exec(r.stderr)?.[1] ?? '';
      const at = (name: string) => Number(new RegExp(`(?:^|, )${name} @([0-9.]+)`).exec(line)?.[1] ?? NaN);
      assert.ok(at('policy compile started') < at('lock taken'), `${args[0]}: the compile starts before the lock is taken: ${line}`);
      return r.stdout;
    };
    const loaded = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
    assert.equal(loaded.status, 0, loaded.stderr);
    const id = String(JSON.parse(loaded.stdout).id);
    let unloaded = false;
    try {
      const attached = JSON.parse(timeline('attach', id, ...attachArgs(), '--priority', '45', '-o', 'json'));
      timeline('detach', String(attached.links[0].id));
      timeline('unload', id);
      unloaded = true;
    } finally {
      if (!unloaded) env.run('unload', id); // the next tests share the interface
    }
    assert.doesNotMatch(env.run('list', '-o', 'json').stdout, new RegExp(`"id": ${id}\\b`));
  });

  // bench/cli.ts takes a load's kernel time from these spans of the same process
  test("BPFD_TIMINGS=1 of a real attach splits out the kernel's prog-load and link syscalls", () => {
    const args = ['load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', ...attachArgs(), '--priority', '40', '-o', 'json'];
    const timed = spawnSync(BPFD, args, { env: { ...env.env, BPFD_TIMINGS: '1' }, encoding: 'utf8' });
    assert.equal(timed.status, 0, timed.stderr);
    const span = (name: string) => Number(new RegExp(`(?:: |, )${name} ([0-9.]+) ms`).exec(timed.stderr)?.[1] ?? NaN);
    const [syscalls, link, steps] = [span('kernel syscalls'), span('link create'), span('kernel load and attach')];
    assert.ok(link > 0, `an XDP link was created and timed: ${timed.stderr}`);
    assert.ok(syscalls >= link, `the link create is among the kernel syscalls: ${timed.stderr}`);
    assert.ok(steps >= syscalls, `the syscalls are inside the load-and-attach steps: ${timed.stderr}`);
    assert.equal(env.run('unload', String(JSON.parse(timed.stdout).id)).status, 0);
  });
});
