import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BPFD, bpftool, fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();
const MEMBER_NAMES = new Set(['xdp_pass', 'xdp_drop']);

/**
 * kill -9 at every named step of load, attach, detach and unload (BPFD_TEST_HOOK, see
 * src/base/test-hooks.ts); the next command, a plain `list`, must leave store, pins, kernel and
 * traffic in agreement.
 */
describe('a bpfd killed at any step leaves nothing inconsistent behind', { skip }, () => {
  let env: Env;
  let net: VethPair;
  let baseline = 0;
  before(() => {
    env = makeEnv();
    net = makeVethPair();
    baseline = Math.max(0, ...(bpftool('prog', 'list') as Array<{ id: number }>).map((p) => p.id));
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
  });

  const at = () => ['--iface', net.ifB, '--netns', net.nsPathB];
  const load = (obj: string, name: string, attach: boolean, prio: string) =>
    env.run('load', 'file', '--path', fixture(obj), '--name', name, ...(attach ? [...at(), '--priority', prio] : []), '-o', 'json');
  /** runs bpfd with the test hook that SIGKILLs it at `step` */
  const killedAt = (step: string, args: string[]) => {
    const r = spawnSync(BPFD, args, { env: { ...env.env, BPFD_TEST_HOOK: `${step}=kill` }, encoding: 'utf8' });
    return { signal: r.signal, status: r.status, stderr: r.stderr };
  };

  function assertConsistent(label: string) {
    const listed = env.run('list', '-o', 'json');
    assert.equal(listed.status, 0, `${label}: list after the crash: ${listed.stderr}`);
    const progs = listed.json() as Array<{ id: number; name: string; links: Array<{ id: number }> }>;
    const ids = progs.map((p) => p.id).sort((a, b) => a - b);
    const pinned = env.pins().filter((p) => p.startsWith('progs/')).map((p) => Number(p.slice(6))).sort((a, b) => a - b);
    assert.deepEqual(pinned, ids, `${label}: pinned programs are exactly the listed ones`);
    // programs made during this test that are still in the kernel are exactly the listed ones
    const alive = () =>
      (bpftool('prog', 'list') as Array<{ id: number; name: string }>).filter((p) => p.id > baseline && MEMBER_NAMES.has(p.name)).map((p) => p.id).sort((a, b) => a - b);
    const deadline = Date.now() + 3000;
    while (JSON.stringify(alive()) !== JSON.stringify(ids) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    assert.deepEqual(alive(), ids, `${label}: kernel programs agree with the list`);
    // the dispatcher runs exactly the recorded links, and traffic shows it
    const links = progs.flatMap((p) => p.links.map((l) => l.id)).sort((a, b) => a - b);
    const running = progs.flatMap((p) => {
      const g = env.run('get', String(p.id), '-o', 'json').json();
      return g.links.filter((l: { counters?: unknown }) => l.counters).map((l: { id: number }) => l.id);
    }).sort((a: number, b: number) => a - b);
    assert.deepEqual(running, links, `${label}: the dispatcher runs the recorded links`);
    const dropAttached = progs.some((p) => p.name === 'xdp_drop' && p.links.length > 0);
    assert.equal(net.ping(), !dropAttached, `${label}: traffic matches the records (drop attached: ${dropAttached})`);
  }

  function reset() {
    for (const p of env.run('list', '-o', 'json').json() as Array<{ id: number }>) env.run('unload', String(p.id));
    assert.deepEqual(env.pins(), []);
  }

  const steps: Array<{ step: string; setup: () => number | null; args: (arg: number | null) => string[] }> = [
    ...['load:before-kernel', 'load:maps-pinned', 'load:after-pin', 'load:after-attach'].map((step) => ({
      step,
      setup: () => null,
      args: () => ['load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', ...at(), '--priority', '20'],
    })),
    {
      step: 'attach:after-kernel',
      setup: () => load('xdp_drop.o', 'xdp_drop', false, '20').json().id,
      args: (id) => ['attach', String(id), ...at(), '--priority', '20'],
    },
    ...['detach:after-kernel', 'detach:done'].map((step) => ({
      step,
      setup: () => load('xdp_drop.o', 'xdp_drop', true, '20').json().links[0].id,
      args: (link: number | null) => ['detach', String(link)],
    })),
    ...['unload:after-detach', 'unload:after-store'].map((step) => ({
      step,
      setup: () => load('xdp_drop.o', 'xdp_drop', true, '20').json().id,
      args: (id: number | null) => ['unload', String(id)],
    })),
  ];

  for (const { step, setup, args } of steps) {
    test(`killed at ${step}`, () => {
      const first = load('xdp_pass.o', 'xdp_pass', true, '10');
      assert.equal(first.status, 0, first.stderr);
      const r = killedAt(step, args(setup()));
      assert.equal(r.signal, 'SIGKILL', `the hook killed bpfd at ${step} (status ${r.status}, stderr ${r.stderr})`);
      // the dead writer's name stays in the lock file: that is what sends the next read to the kernel
      assert.notEqual(readFileSync(path.join(env.dir, 'run', 'lock'), 'utf8'), '', `${step}: the killed writer left its mark`);
      assertConsistent(step);
      assert.equal(readFileSync(path.join(env.dir, 'run', 'lock'), 'utf8'), '', `${step}: the repair cleared it`);
      reset();
      assert.ok(net.ping(), 'traffic flows once everything is unloaded');
    });
  }

  // The first command after the crash is a change, not a read: the load must repair what the dead
  // writer left on the interface under the lock, then join it, and agree with the kernel after.
  for (const step of ['load:after-pin', 'load:after-attach']) {
    test(`killed at ${step}, then a load on the same interface`, () => {
      const first = load('xdp_pass.o', 'xdp_pass', true, '10');
      assert.equal(first.status, 0, first.stderr);
      const r = killedAt(step, ['load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', ...at(), '--priority', '20']);
      assert.equal(r.signal, 'SIGKILL', `the hook killed bpfd at ${step} (status ${r.status}, stderr ${r.stderr})`);
      const next = load('xdp_drop.o', 'xdp_drop', true, '30');
      assert.equal(next.status, 0, `${step}: the load after the crash: ${next.stderr}`);
      assert.deepEqual(next.json().links.map((l: { position: number }) => l.position), [1], `${step}: the new program runs after xdp_pass only`);
      assertConsistent(`${step} then load`);
      assert.equal(net.ping(), false, `${step}: the dropper loaded after the crash drops`);
      reset();
      assert.ok(net.ping(), 'traffic flows once everything is unloaded');
    });
  }
});

