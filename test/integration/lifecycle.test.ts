import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BPFD, bpftool, fixture, kernelProgIds, makeEnv, progGone, needsRoot, type Env } from '../helpers/bpfd.js';
import { ip, makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();

describe('load, list, get, unload of a real XDP program', { skip }, () => {
  let env: Env;
  let net: VethPair;
  before(() => {
    env = makeEnv();
    net = makeVethPair();
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
  });

  test('a drop program drops pings while loaded and they pass again after unload', () => {
    assert.ok(net.ping(), 'ping must work before anything is loaded');
    const r = env.run('load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', '--iface', net.ifB, '--netns', net.nsPathB, '--priority', '50', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const prog = r.json();
    assert.equal(prog.name, 'xdp_drop');
    assert.equal(prog.type, 'xdp');
    assert.equal(prog.links.length, 1);
    assert.equal(prog.links[0].iface, net.ifB);
    assert.equal(prog.links[0].priority, 50);
    assert.deepEqual(prog.links[0].proceed_on, ['pass', 'dispatcher_return']);
    assert.equal(prog.bytecode.path, fixture('xdp_drop.o'));
    assert.match(prog.bytecode.sha256, /^[0-9a-f]{64}$/);
    assert.equal(net.ping(), false, 'ping must fail while xdp_drop is attached');

    const u = env.run('unload', String(prog.id));
    assert.equal(u.status, 0, u.stderr);
    assert.ok(net.ping(), 'ping must work again after unload');
    assert.ok(progGone(prog.id), 'the program is gone from the kernel');
    assert.deepEqual(env.pins(), [], 'no pins are left behind');
    assert.deepEqual(env.run('list', '-o', 'json').json(), []);
  });

  test('a counting program counts pings in its pinned map, and records survive between processes', () => {
    const r = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--iface', net.ifB, '--netns', net.nsPathB, '--metadata', 'app=demo', '--metadata', 'team=net', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const id: number = r.json().id;
    assert.ok(net.ping(5), 'the counting program passes packets');
    const dump = bpftool('map', 'dump', 'pinned', `${env.bpffs}/maps/${id}/xdp_stats`);
    const packets = dump[0].formatted.value.packets as number;
    assert.ok(packets >= 5, `at least 5 packets counted, got ${packets}`);
    const bss = bpftool('map', 'dump', 'pinned', `${env.bpffs}/maps/${id}/bss`);
    assert.ok(bss[0].formatted.value['.bss'][0].last_len > 0, 'last_len in .bss was written');

    // another process: list and get see the same program and agree with the kernel
    const list = env.run('list', '-o', 'json').json();
    assert.deepEqual(list.map((p: any) => p.id), [id]);
    assert.deepEqual(list[0].metadata, { app: 'demo', team: 'net' });
    assert.equal(env.run('list', '--metadata', 'app=other', '-o', 'json').json().length, 0);
    // a filter that matches: each pair must hold, and the program is listed
    assert.deepEqual(env.run('list', '--metadata', 'app=demo', '-o', 'json').json().map((p: any) => p.id), [id]);
    assert.deepEqual(env.run('list', '--metadata', 'app=demo', '--metadata', 'team=net', '-o', 'json').json().map((p: any) => p.id), [id]);
    assert.deepEqual(env.run('list', '--metadata', 'app=demo', '--metadata', 'team=ops', '-o', 'json').json(), []);
    assert.match(env.run('list', '--metadata', 'app=demo').stdout, new RegExp(`^\\s*${id}\\s`, 'm'));
    const got = env.run('get', String(id), '-o', 'json').json();
    const k = bpftool('prog', 'show', 'id', String(id));
    assert.equal(got.kernel.tag, k.tag);
    assert.equal(k.name, 'xdp_count');
    assert.equal(k.type, 'xdp');
    assert.deepEqual([...got.kernel.map_ids].sort(), [...k.map_ids].sort());
    assert.equal(got.maps.pin_path, `${env.bpffs}/maps/${id}`);
    assert.deepEqual([...got.maps.names].sort(), ['bss', 'rodata', 'xdp_stats']);
    const table = env.run('list');
    assert.match(table.stdout, new RegExp(`^${id}\\s+xdp_count\\s+xdp\\s+${net.ifB}@${net.nsB}\\s+50\\s+0`, 'm'));
    assert.equal(env.run('unload', String(id)).status, 0);
  });

  test('--global sets a .rodata variable before load: verdict=1 makes the counter drop', () => {
    const r = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--global', 'verdict=01000000', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(net.ping(), false, 'verdict XDP_DROP drops');
    const ro = bpftool('map', 'dump', 'pinned', `${env.bpffs}/maps/${r.json().id}/rodata`);
    assert.equal(ro[0].formatted.value['.rodata'][0].verdict, 1);
    assert.equal(env.run('unload', String(r.json().id)).status, 0);
    assert.ok(net.ping());
  });

  test('load without attach options only loads; attach and detach add and remove the link', () => {
    const r = env.run('load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const id = r.json().id;
    assert.deepEqual(r.json().links, []);
    assert.ok(net.ping(), 'not attached yet');
    const a = env.run('attach', String(id), '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json');
    assert.equal(a.status, 0, a.stderr);
    assert.equal(net.ping(), false, 'attached now');
    const linkId = a.json().links[0].id;
    assert.equal(env.run('detach', String(linkId)).status, 0);
    assert.ok(net.ping(), 'detached');
    assert.equal(env.run('get', String(id), '-o', 'json').json().links.length, 0, 'still loaded, no links');
    assert.equal(env.run('unload', String(id)).status, 0);
  });

  test('--mode skb attaches in generic mode', () => {
    const r = env.run('load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', '--iface', net.ifB, '--netns', net.nsPathB, '--mode', 'skb', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.json().links[0].mode, 'skb');
    // bpftool sees one program on the interface, bpfd's dispatcher, in generic mode
    const shown = ip('-n', net.nsB, '-d', 'link', 'show', net.ifB);
    assert.match(shown, /xdpgeneric/);
    const dispatcherId = Number(/prog\/xdp id (\d+)/.exec(shown)?.[1]);
    assert.equal(bpftool('prog', 'show', 'id', String(dispatcherId)).name, 'bpfd_xdp');
    assert.equal(net.ping(), false);
    assert.equal(env.run('unload', String(r.json().id)).status, 0);
  });

  test('list --all adds kernel programs bpfd does not manage, but not its own dispatchers', () => {
    const mine = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json');
    assert.equal(mine.status, 0, mine.stderr);
    const foreignPin = `${env.bpffs}/foreign`;
    const load = spawnSync('bpftool', ['prog', 'load', fixture('xdp_drop.o'), foreignPin], { encoding: 'utf8' });
    assert.equal(load.status, 0, load.stderr);
    try {
      const foreignId: number = bpftool('prog', 'show', 'pinned', foreignPin).id;
      const dispatcherId = Number(/prog\/xdp id (\d+)/.exec(ip('-n', net.nsB, 'link', 'show', net.ifB))?.[1]);
      const all = env.run('list', '--all', '-o', 'json').json() as Array<{ id: number; managed?: boolean }>;
      assert.ok(all.some((p) => p.id === mine.json().id && p.managed === undefined), 'the managed program is listed as usual');
      assert.ok(all.some((p) => p.id === foreignId && p.managed === false), 'the foreign program is listed as unmanaged');
      assert.ok(!all.some((p) => p.id === dispatcherId), "bpfd's dispatcher is not shown as someone else's program");
      assert.ok(!env.run('list', '-o', 'json').json().some((p: { id: number }) => p.id === foreignId), 'plain list shows only managed programs');
      assert.match(env.run('list', '--all').stdout, new RegExp(`Not managed by bpfd:[\\s\\S]*^${foreignId}\\s+xdp_drop\\s+xdp`, 'm'));
    } finally {
      rmSync(foreignPin, { force: true });
    }
    assert.equal(env.run('unload', String(mine.json().id)).status, 0);
  });

  test('a program that vanished from the kernel is not listed as loaded', () => {
    const r = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
    const id = r.json().id;
    // Remove the only pin behind bpfd's back: the kernel frees the program.
    bpftool('prog', 'show', 'id', String(id));
    rmSync(`${env.bpffs}/progs/${id}`);
    assert.ok(progGone(id));
    assert.deepEqual(env.run('list', '-o', 'json').json(), []);
    assert.equal(env.run('get', String(id)).status, 4);
  });

  test('a load while signals keep arriving (a profiler) still lands: the verifier is not interrupted', () => {
    // The verifier gives up with EAGAIN whenever a signal is pending; the executable's own
    // sampling profiler (Bun's, switched on through BUN_OPTIONS) at a 5 us interval signals the
    // main thread that often. Unless loads hold signals back, most of these fail.
    const profiles = path.join(env.dir, 'profiles');
    const profiled = { ...env.env, BUN_OPTIONS: `--cpu-prof --cpu-prof-interval 5 --cpu-prof-dir ${profiles}` };
    for (let i = 0; i < 5; i++) {
      const r = spawnSync(
        BPFD,
        ['load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json'],
        { env: profiled, encoding: 'utf8' },
      );
      assert.equal(r.status, 0, `load ${i + 1} under the profiler: ${r.stderr}`);
      const id = JSON.parse(r.stdout).id as number;
      assert.equal(net.ping(), false, 'the drop program runs');
      assert.equal(env.run('unload', String(id)).status, 0);
      // 3 packets, 2 s: the ARP requests the drop program dropped are probed again at the kernel's pace
      assert.ok(net.ping(3, 2), 'traffic flows after unload');
    }
    rmSync(profiles, { recursive: true, force: true });
    assert.deepEqual(env.pins(), []);
  });
});

