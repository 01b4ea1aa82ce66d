import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, renameSync, rmSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { BPFD, bpftool, fixture, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { ip, makeVethPair, type VethPair } from '../helpers/netns.js';
import { simulateReboot } from '../helpers/reboot.js';

const skip = needsRoot();

interface Finding {
  kind: string;
  subject: string;
  detail: string;
  remedy: string;
  fixed?: boolean;
  done?: string;
}
interface Report {
  healthy: boolean;
  findings: Finding[];
  remaining?: Finding[];
}

/**
 * Each kind of disagreement made for real (a kill -9 at a step, a pin removed or added by hand, a
 * simulated reboot): doctor reports it, changes nothing without --fix, and with --fix repairs
 * it and then finds everything in agreement.
 */
describe('bpfd doctor', { skip }, () => {
  let env: Env;
  let net: VethPair;
  beforeEach(() => {
    env = makeEnv();
    net = makeVethPair();
    // the bpffs and the store exist, as on any host where bpfd has run
    const r = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(env.run('unload', String(r.json().id)).status, 0);
  });
  afterEach(() => {
    env?.cleanup();
    net?.cleanup();
  });

  const at = () => ['--iface', net.ifB, '--netns', net.nsPathB];
  const load = (obj: string, ...args: string[]) => {
    const r = env.run('load', 'file', '--path', fixture(`${obj}.o`), '--name', obj, ...args, '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    return r.json() as { id: number; links: Array<{ id: number }> };
  };
  const killedAt = (step: string, ...args: string[]) => {
    const r = spawnSync(BPFD, args, { env: { ...env.env, BPFD_TEST_HOOK: `${step}=kill` }, encoding: 'utf8' });
    assert.equal(r.signal, 'SIGKILL', `killed at ${step}: ${r.stderr}`);
  };
  const doctor = (...args: string[]) => {
    const r = env.run('doctor', ...args, '-o', 'json');
    return { status: r.status, stderr: r.stderr, report: r.json() as Report };
  };
  const kinds = (fs: Finding[]) => fs.map((f) => f.kind).sort();
  /** What --fix says it did for each kind (src/core/repair.ts). */
  const DONE: Record<string, RegExp> = {
    'program-gone': /^record removed$/,
    'previous-boot': /^record removed$/,
    'previous-boot-persisted': /^kept for bpfd system restore$/,
    'orphan-pin': /^removed$/,
    'temp-dir': /^removed$/,
    'empty-interface': /^link unpinned, dispatcher detached$/,
    'dispatcher-diverged': /^recomposed with links \d+(, \d+)*$/,
  };
  const assertAllFixed = (findings: Finding[]) => {
    assert.ok(findings.length > 0, 'there was something to fix');
    for (const f of findings) {
      assert.equal(f.fixed, true, `${f.kind} ${f.subject}: ${f.done}`);
      assert.match(f.done ?? '', DONE[f.kind], `${f.kind} ${f.subject}: reports what it did`);
    }
  };
  /**
   * Whether pings pass. A dropper drops ARP too, which leaves the sender's neighbour entry failed
   * for a while after the dropper is gone: forget it first, so a ping tests the XDP path only.
   * Three pings: while something drops, none of them comes back.
   */
  const pingsPass = () => {
    ip('-n', net.nsA, 'neigh', 'flush', 'dev', net.ifA);
    return net.ping(3, 2);
  };

  /**
   * Doctor without --fix reports exactly `expected` (kinds) twice over, leaving pins and traffic
   * as they were; --fix repairs each and leaves a healthy host. Returns the first report.
   */
  function diagnoseAndFix(expected: string[], traffic: { broken: boolean; fixed: boolean }): Report {
    const pins = env.pins();
    const first = doctor();
    assert.equal(first.status, 1, `problems found: exit 1 (${first.stderr})`);
    assert.equal(first.report.healthy, false);
    assert.deepEqual(kinds(first.report.findings), [...expected].sort());
    assert.deepEqual(env.pins(), pins, 'without --fix no pin changed');
    assert.equal(pingsPass(), !traffic.broken, 'without --fix traffic is as it was');
    assert.deepEqual(doctor().report, first.report, 'a second look finds the same: nothing was repaired');

    const text = env.run('doctor');
    assert.equal(text.status, 1);
    assert.match(text.stdout, new RegExp(`^${expected.length} problem\\(s\\):`, 'm'));
    assert.match(text.stdout, /fix with: bpfd doctor --fix/);

    const fixed = doctor('--fix');
    assert.equal(fixed.status, 0, `fixed: exit 0 (${JSON.stringify(fixed.report)} ${fixed.stderr})`);
    assert.equal(fixed.report.healthy, true);
    assert.deepEqual(kinds(fixed.report.findings), [...expected].sort());
    assertAllFixed(fixed.report.findings);
    assert.deepEqual(fixed.report.remaining, []);
    assert.equal(pingsPass(), !traffic.fixed, 'traffic after the repair');
    const after = env.run('doctor');
    assert.equal(after.status, 0, after.stdout);
    assert.match(after.stdout, /^healthy: store, pins and kernel agree$/m);
    return first.report;
  }

  test('a healthy host: exit 0, nothing reported', () => {
    load('xdp_pass', ...at(), '--priority', '10');
    const r = doctor();
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.report, { healthy: true, findings: [] });
  });

  test('a record whose program is gone (its pin removed by hand), and the maps it leaves', () => {
    const p = load('xdp_count');
    rmSync(path.join(env.bpffs, 'progs', String(p.id)));
    assert.ok(progGone(p.id));
    const report = diagnoseAndFix(['program-gone', 'orphan-pin'], { broken: false, fixed: false });
    assert.equal(report.findings.find((f) => f.kind === 'program-gone')!.subject, `program ${p.id} (xdp_count)`);
    assert.equal(report.findings.find((f) => f.kind === 'orphan-pin')!.subject, path.join(env.bpffs, 'maps', String(p.id)));
    assert.deepEqual(env.pins(), []);
    assert.deepEqual(env.run('list', '-o', 'json').json(), []);
  });

  test('a stray pin no record owns', () => {
    const stray = path.join(env.bpffs, 'progs', '999999999');
    const r = spawnSync('bpftool', ['prog', 'load', fixture('xdp_pass.o'), stray], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const id: number = bpftool('prog', 'show', 'pinned', stray).id;
    const report = diagnoseAndFix(['orphan-pin'], { broken: false, fixed: false });
    assert.equal(report.findings[0].subject, stray);
    assert.ok(progGone(id), 'unpinned, the kernel freed it');
  });

  test('the temp dir of a load killed after pinning its maps', () => {
    killedAt('load:maps-pinned', 'load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count');
    const tmp = readdirSync(path.join(env.bpffs, 'maps')).filter((n) => n.startsWith('tmp_'));
    assert.equal(tmp.length, 1, 'the killed load left its temp dir');
    const report = diagnoseAndFix(['temp-dir'], { broken: false, fixed: false });
    assert.equal(report.findings[0].subject, path.join(env.bpffs, 'maps', tmp[0]));
    assert.match(report.findings[0].detail, /which died before finishing/);
    assert.deepEqual(env.pins(), []);
  });

  test('a dispatcher that runs other programs than the records say (detach killed after the kernel step)', () => {
    load('xdp_pass', ...at(), '--priority', '10');
    const drop = load('xdp_drop', ...at(), '--priority', '20');
    assert.equal(net.ping(), false);
    killedAt('detach:after-kernel', 'detach', String(drop.links[0].id));
    // the kernel no longer runs xdp_drop, but the detach was never recorded: the records win
    const report = diagnoseAndFix(['dispatcher-diverged'], { broken: false, fixed: true });
    assert.match(report.findings[0].detail, new RegExp(`the dispatcher runs links \\d+, the records say \\d+, ${drop.links[0].id}`));
    assert.equal(report.findings[0].subject, `${net.ifB} in ${net.nsPathB}`);
  });

  test('an interface with a dispatcher but no recorded programs (load killed after attaching)', () => {
    killedAt('load:after-attach', 'load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', ...at());
    // xdp_drop runs, pinned, though no record names it
    const report = diagnoseAndFix(['empty-interface', 'orphan-pin', 'orphan-pin'], { broken: true, fixed: false });
    assert.ok(report.findings.some((f) => f.kind === 'empty-interface' && f.subject.startsWith(path.join(env.bpffs, 'xdp'))));
    assert.deepEqual(env.pins(), []);
  });

  test('records of an earlier boot: dropped, or kept as pending restore, which only restore resolves', () => {
    const kept = load('xdp_count', ...at(), '--persist');
    const gone = load('xdp_pass', ...at(), '--priority', '60');
    simulateReboot(env, [kept.id, gone.id]);

    const first = doctor();
    assert.equal(first.status, 1);
    assert.deepEqual(kinds(first.report.findings), ['previous-boot', 'previous-boot-persisted']);
    assert.deepEqual(doctor().report, first.report, 'unchanged without --fix');

    const fixed = doctor('--fix');
    assert.equal(fixed.status, 1, 'a pending restore is a problem --fix does not resolve');
    assertAllFixed(fixed.report.findings);
    assert.deepEqual(kinds(fixed.report.remaining!), ['pending-restore']);
    assert.equal(fixed.report.remaining![0].remedy, 'run: bpfd system restore');
    assert.match(env.run('doctor', '--fix').stdout, /still 1 problem\(s\):[\s\S]*pending-restore[\s\S]*run: bpfd system restore/);

    assert.equal(env.run('system', 'restore').status, 0);
    const healthy = doctor();
    assert.equal(healthy.status, 0, JSON.stringify(healthy.report));
    assert.deepEqual(healthy.report.findings, []);
  });

  test('a damaged store: the error names the file and how to recover, never a stack trace', () => {
    load('xdp_pass');
    const data = path.join(env.env.BPFD_STATE_DIR!, 'data.mdb');
    truncateSync(data, 100);
    try {
      for (const args of [['doctor'], ['doctor', '--fix']]) {
        const r = env.run(...args);
        assert.equal(r.status, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`cannot open the bpfd store in ${env.env.BPFD_STATE_DIR}: ${data} is truncated`));
        assert.match(r.stderr, /to recover: move .* aside/);
        assert.doesNotMatch(r.stderr, /internal error|at .*\.m?js:\d+/);
      }
    } finally {
      const state = env.env.BPFD_STATE_DIR!;
      renameSync(state, `${state}.damaged`);
    }
  });

  test('doctor needs root and says so', () => {
    const r = env.runAs(65534, 'doctor');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bpfd doctor needs root/);
  });
});
