import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { BPFD, bpftool, fixture, kernelProgIds, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { ip, makeVethPair, type VethPair } from '../helpers/netns.js';
import { simulateReboot, xdpProgOn } from '../helpers/reboot.js';
import { openStore } from '../../src/state/store.js';

const skip = needsRoot();

interface Listed {
  id: number;
  name: string;
  metadata: Record<string, string>;
  application: string | null;
  bytecode: { path: string; sha256: string };
  maps: { pin_path: string; owner_id: number | null; names: string[] };
  kernel: { tag: string };
  links: Array<{ id: number; iface: string; netns: string | null; priority: number; position: number; proceed_on: string[]; mode: string; counters?: { packets: number; actions: Record<string, number> } }>;
}

describe('programs loaded with --persist come back after a reboot', { skip }, () => {
  let env: Env;
  let net: VethPair;
  let objects: string;
  beforeEach(() => {
    env = makeEnv();
    net = makeVethPair();
    // copies, so that a test can delete them: restore must not need the files
    objects = path.join(env.dir, 'objects');
    mkdirSync(objects);
    for (const f of ['xdp_count.o', 'xdp_pass.o', 'xdp_drop.o']) copyFileSync(fixture(f), path.join(objects, f));
  });
  afterEach(() => {
    env?.cleanup();
    net?.cleanup();
  });

  const at = (n: VethPair = net) => ['--iface', n.ifB, '--netns', n.nsPathB];
  const load = (obj: string, ...args: string[]) => {
    const r = env.run('load', 'file', '--path', path.join(objects, `${obj}.o`), '--name', obj, ...args, '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    return r.json() as Listed;
  };
  const listed = () => env.run('list', '-o', 'json').json() as Listed[];
  const restore = (hook?: string) => {
    const r = hook ? spawnSync(BPFD, ['system', 'restore', '-o', 'json'], { env: { ...env.env, BPFD_TEST_HOOK: hook }, encoding: 'utf8' }) : env.run('system', 'restore', '-o', 'json');
    const json = () => JSON.parse(r.stdout);
    return { status: r.status, stderr: r.stderr, report: json() as { restored: Array<{ previous_id: number; id: number; name: string }>; failed: Array<{ previous_id: number; name: string; reason: string; details: string[] }> } };
  };
  /**
   * bpfd's programs that appeared in the kernel since `before`: those of `keep` (by name), and any
   * other that does not go. Replaced dispatchers and undone programs are freed after an RCU grace
   * period, so each of the others is waited for (progGone, bounded).
   */
  const newPrograms = (before: Set<number>, keep: Array<number | null>) => {
    const ours = new Set(['bpfd_xdp', 'xdp_drop', 'xdp_pass', 'xdp_count', 'xdp_reject']);
    const made = (bpftool('prog', 'list') as Array<{ id: number; name: string }>).filter((p) => !before.has(p.id) && ours.has(p.name));
    return { kept: made.filter((p) => keep.includes(p.id)).map((p) => p.name).sort(), leftover: made.filter((p) => !keep.includes(p.id) && !progGone(p.id)).map((p) => p.name) };
  };
  const dumpMap = (prog: Listed, map: string) => bpftool('map', 'dump', 'pinned', path.join(prog.maps.pin_path, map))[0].formatted.value;
  const dispatcherCounters = (id: number) => (env.run('get', String(id), '-o', 'json').json() as Listed).links[0].counters;

  test('a reboot leaves nothing listed as loaded; restore brings back exactly the persisted programs, in order, from the stored objects', () => {
    // Load order and priorities differ, and two share priority 20: the order is (priority, attach order).
    const dropper = load('xdp_count', ...at(), '--priority', '20', '--mode', 'skb', '--global', 'verdict=01000000', '--metadata', 'role=dropper', '--persist');
    const counter = load('xdp_count', ...at(), '--priority', '10', '--proceed-on', 'pass', '--application', 'monitoring', '--metadata', 'role=counter', '--persist');
    const passer = load('xdp_pass', ...at(), '--priority', '20', '--metadata', 'role=after-drop', '--persist');
    const transient = load('xdp_pass', ...at(), '--priority', '15');
    const persisted = [counter, dropper, passer];
    const before = listed();
    assert.deepEqual(before.map((p) => p.id), [counter.id, transient.id, dropper.id, passer.id], 'order before the reboot');
    assert.equal(net.ping(), false, 'the dropper drops before the reboot');

    const dispatcher = xdpProgOn(net.nsB, net.ifB);
    assert.ok(dispatcher, 'a dispatcher runs before the reboot');
    simulateReboot(env, [...before.map((p) => p.id), dispatcher]);
    assert.equal(xdpProgOn(net.nsB, net.ifB), null, 'nothing is attached after the reboot');
    // The dropper also dropped ARP, so the first ping after it may wait on address resolution:
    // send three. With anything of the old boot still dropping, none would come back.
    assert.ok(net.ping(3, 2), 'pings pass after the reboot: nothing of the old boot runs');
    rmSync(objects, { recursive: true });

    assert.deepEqual(listed(), [], 'nothing stale is listed as loaded');
    const got = env.run('get', String(dropper.id));
    assert.equal(got.status, 4, got.stderr);
    assert.match(got.stderr, /earlier boot and waits to be restored/);
    const pending = env.run('list', '--pending', '-o', 'json').json() as Array<{ previous_id: number; name: string; links: Listed['links'] }>;
    assert.deepEqual(pending.map((p) => p.previous_id), [counter.id, dropper.id, passer.id], 'the three persisted programs wait, in interface order; the other is gone');
    assert.match(env.run('list', '--pending').stdout, /restore them with: bpfd system restore/);

    const r = restore();
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.report.failed, []);
    assert.deepEqual(r.report.restored.map((x) => x.previous_id).sort(), persisted.map((p) => p.id).sort());

    const after = listed();
    assert.deepEqual(after.map((p) => p.metadata.role), ['counter', 'dropper', 'after-drop'], 'exactly the persisted programs, in priority then attach order');
    assert.deepEqual(after.map((p) => p.links.map((l) => [l.position, l.priority])), [[[0, 10]], [[1, 20]], [[2, 20]]]);
    assert.deepEqual(env.run('list', '--pending', '-o', 'json').json(), [], 'nothing waits any more');
    for (const [was, now] of persisted.map((p, i) => [p, after[i]] as const)) {
      assert.notEqual(now.id, was.id, 'a new kernel program');
      assert.equal(now.name, was.name);
      assert.deepEqual(now.metadata, was.metadata);
      assert.equal(now.application, was.application);
      assert.deepEqual(now.bytecode, was.bytecode, 'the record still names the original file and its sha256');
      assert.deepEqual([...now.maps.names].sort(), [...was.maps.names].sort());
      assert.equal(now.maps.pin_path, `${env.bpffs}/maps/${now.id}`);
      const [l, w] = [now.links[0], was.links[0]];
      assert.equal(w.mode, 'skb', 'the interface ran in skb mode before the reboot');
      assert.deepEqual([l.id, l.iface, l.netns, l.priority, l.proceed_on, l.mode], [w.id, w.iface, w.netns, w.priority, w.proceed_on, w.mode], 'the link keeps its id, place, proceed-on and the recorded mode');
    }
    assert.equal(dumpMap(after[1], 'rodata')['.rodata'][0].verdict, 1, 'the --global came back');

    // the dispatcher runs the three, and packets show their order: counter, dropper, then nothing
    const running = xdpProgOn(net.nsB, net.ifB);
    assert.ok(running !== null && running !== dispatcher);
    assert.equal(bpftool('prog', 'show', 'id', String(running)).name, 'bpfd_xdp');
    assert.match(spawnSync('ip', ['-n', net.nsB, '-d', 'link', 'show', net.ifB], { encoding: 'utf8' }).stdout, /xdpgeneric/, 'restored in skb mode');
    assert.equal(net.ping(3), false, 'the restored dropper drops');
    assert.ok(dumpMap(after[0], 'xdp_stats').packets >= 3, 'the restored counter counts');
    assert.ok(dumpMap(after[1], 'xdp_stats').packets >= 3, 'the dropper counts what it drops');
    assert.ok(dispatcherCounters(after[0].id)!.packets >= 3, 'the dispatcher runs the counter');
    assert.ok(dispatcherCounters(after[1].id)!.actions.drop >= 3, 'the dispatcher runs the dropper');
    assert.equal(dispatcherCounters(after[2].id)!.packets, 0, 'the program after the dropper sees nothing');

    const again = restore();
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(again.report, { restored: [], failed: [] }, 'a second restore has nothing to do');
    assert.deepEqual(listed().map((p) => p.id), after.map((p) => p.id), 'and changes nothing');
    assert.equal(env.run('doctor').status, 0, 'doctor finds everything in agreement');
  });

  test('a program that cannot come back is reported, stays pending, and does not keep the others from coming back', () => {
    const other = makeVethPair();
    try {
      const lost = load('xdp_pass', ...at(other), '--persist');
      const dropper = load('xdp_drop', ...at(), '--priority', '30', '--persist');
      const denied = load('xdp_count', ...at(), '--priority', '40', '--persist');
      // attached here, then there: its restore loads it and attaches it here before it fails
      // there, so its undo must take all of that back
      const halfway = load('xdp_count', ...at(), '--priority', '50', '--metadata', 'role=halfway', '--persist');
      const there = env.run('attach', String(halfway.id), ...at(other), '--priority', '50', '-o', 'json');
      assert.equal(there.status, 0, there.stderr);
      simulateReboot(env, [lost.id, dropper.id, denied.id, halfway.id]);
      ip('-n', other.nsB, 'link', 'del', other.ifB); // its interface does not come back after the reboot
      // and the rules changed while the machine was down
      writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ reserved_priorities: [{ min: 35, max: 45, applications: ['firewall'] }] }));

      const kernelBefore = kernelProgIds();
      const r = restore('restore:after-load=note');
      assert.equal(r.status, 1, 'exit 1 when any failed');
      assert.equal(r.stderr.match(/test hook: reached restore:after-load/g)?.length, 2, 'two were loaded: the dropper, and the half-way one whose undo this tests');
      assert.deepEqual(r.report.restored.map((x) => x.previous_id), [dropper.id]);
      const restoredId = r.report.restored[0].id;
      const why = new Map(r.report.failed.map((f) => [f.previous_id, f]));
      assert.match(why.get(lost.id)!.reason, new RegExp(`interface ${other.ifB} does not exist in network namespace ${other.nsPathB}`));
      assert.match(why.get(denied.id)!.reason, /denied by policy/);
      assert.match(why.get(denied.id)!.details.join('\n'), /priority 40 is in the band 35\.\.45 reserved for/);
      assert.match(why.get(halfway.id)!.reason, new RegExp(`interface ${other.ifB} does not exist`), 'the second link failed, after the load and the first link');
      // The kernel holds the restored dropper and the dispatcher running it, nothing of the failed
      // ones: not the undone program, nor a dispatcher that ran it.
      const made = newPrograms(kernelBefore, [restoredId, xdpProgOn(net.nsB, net.ifB)]);
      assert.deepEqual(made.kept, ['bpfd_xdp', 'xdp_drop'], 'the restored dropper and its dispatcher');
      assert.deepEqual(made.leftover, [], 'nothing of the failed ones stays in the kernel');
      // doctor compares what the dispatcher runs with the records: the dropper alone
      const doctor = env.run('doctor', '-o', 'json').json() as { findings: Array<{ kind: string; detail: string }> };
      assert.deepEqual(doctor.findings.filter((f) => f.kind !== 'pending-restore'), [], 'store, pins, kernel and dispatcher agree; only the pending ones are reported');
      assert.equal(net.ping(), false, 'the dropper came back all the same');
      assert.deepEqual(listed().map((p) => p.name), ['xdp_drop']);
      assert.deepEqual((env.run('list', '--pending', '-o', 'json').json() as Array<{ previous_id: number }>).map((p) => p.previous_id).sort(), [lost.id, denied.id, halfway.id].sort());
      // the failed ones left nothing behind: only the restored dropper is pinned and recorded
      assert.deepEqual(env.pins().filter((p) => p.startsWith('progs/')), [`progs/${restoredId}`], 'no pin of a failed restore');
      assert.deepEqual(env.pins().filter((p) => p.startsWith('maps/') && !p.startsWith(`maps/${restoredId}/`)), [], 'no maps of a failed restore');
      const store = openStore(env.env.BPFD_STATE_DIR!);
      try {
        assert.deepEqual(store.programs().map((p) => p.id), [restoredId], 'no record of a failed restore');
        assert.deepEqual(store.links().map((l) => l.prog_id), [restoredId], 'no link of a failed restore');
      } finally {
        store.close();
      }

      const text = env.run('system', 'restore');
      assert.equal(text.status, 1);
      assert.match(text.stderr, new RegExp(`could not restore xdp_count \\(id ${denied.id} in boot [0-9a-f-]+\\): denied by policy`));
      assert.match(text.stderr, /3 not restored; they stay pending/);

      writeFileSync(env.env.BPFD_POLICY_DATA!, '{}');
      const later = restore();
      assert.equal(later.status, 1, 'the interface is still missing');
      assert.deepEqual(later.report.restored.map((x) => x.previous_id), [denied.id], 'once the policy allows it, it comes back');
      assert.deepEqual(listed().map((p) => [p.name, p.links[0].priority]), [['xdp_drop', 30], ['xdp_count', 40]]);
    } finally {
      other.cleanup();
    }
  });

  test('restore keeps a non-root owner for later decisions, loads the stored copy of a changed file; a missing netns and a verifier refusal are reported and leave nothing', () => {
    const other = makeVethPair();
    try {
      const owned = load('xdp_count', ...at(), '--priority', '10', '--persist');
      const changed = load('xdp_pass', ...at(), '--priority', '20', '--persist');
      const elsewhere = load('xdp_pass', ...at(other), '--persist');
      const refused = load('xdp_drop', ...at(), '--priority', '30', '--persist');
      // Only root loads through the CLI today (the socket will bring other owners): record one
      // through the store API, as a load by uid 4321 would have.
      const store = openStore(env.env.BPFD_STATE_DIR!);
      const rec = store.programs().find((p) => p.id === owned.id)!;
      store.commitLoad({ program: { ...rec, owner: { uid: 4321, username: 'alice' } }, image: null, object: null, link: null });
      store.close();
      simulateReboot(env, [owned.id, changed.id, elsewhere.id, refused.id]);

      // While the machine was down: the file changed (restore must load the copy it kept), a netns is
      // gone, and one stored object became code the verifier refuses (the stored bytes replaced,
      // through the store API, by xdp_reject.o: it reads packet data without a bounds check).
      // xdp_pass_drops.o has a program of the same name, which drops: the file loads, and differs
      copyFileSync(fixture('xdp_pass_drops.o'), path.join(objects, 'xdp_pass.o'));
      other.cleanup();
      assert.equal(listed().length, 0, 'the first command after the reboot moves the records aside, as pending');
      const s = openStore(env.env.BPFD_STATE_DIR!);
      const pend = s.pendingRestores().find((p) => p.program.id === refused.id)!;
      const rejectBytes = readFileSync(fixture('xdp_reject.o'));
      const rejectSha = createHash('sha256').update(rejectBytes).digest('hex');
      const swapped = { ...pend.program, id: 0x7ffffff0, name: 'xdp_reject', bytecode: { path: fixture('xdp_reject.o'), sha256: rejectSha } };
      s.forgetPrograms([{ program: swapped, links: [], pending: { ...pend, program: { ...swapped, id: pend.program.id } } }]);
      s.commitLoad({ program: swapped, image: null, object: rejectBytes, link: null });
      s.removeProgram(swapped); // the pending entry still names the object: the store keeps it
      assert.ok(s.storedObject(rejectSha), 'the tampered object is stored');
      s.close();

      const kernelBefore = kernelProgIds();
      const r = restore();
      assert.equal(r.status, 1, 'exit 1 when any failed');
      assert.deepEqual(r.report.restored.map((x) => x.previous_id).sort(), [owned.id, changed.id].sort());
      const why = new Map(r.report.failed.map((f) => [f.previous_id, f]));
      assert.deepEqual([...why.keys()].sort(), [elsewhere.id, refused.id].sort());
      assert.match(why.get(elsewhere.id)!.reason, new RegExp(other.nsPathB.replace(/[/.]/g, '\\$&')), 'the missing netns is named');
      assert.match([why.get(refused.id)!.reason, ...why.get(refused.id)!.details].join('\n'), /verifier|invalid access to packet|R\d+ /, 'the verifier refusal is reported');
      const pendingNow = (env.run('list', '--pending', '-o', 'json').json() as Array<{ previous_id: number }>).map((p) => p.previous_id).sort();
      assert.deepEqual(pendingNow, [elsewhere.id, refused.id].sort(), 'the failed ones stay pending');

      // nothing of the failed ones in the kernel or the bpffs
      const restoredIds = r.report.restored.map((x) => x.id);
      const made = newPrograms(kernelBefore, [...restoredIds, xdpProgOn(net.nsB, net.ifB)]);
      assert.deepEqual(made.kept, ['bpfd_xdp', 'xdp_count', 'xdp_pass'], 'the two restored and their dispatcher');
      assert.deepEqual(made.leftover, [], 'nothing else');
      assert.deepEqual(env.pins().filter((p) => p.startsWith('progs/')), restoredIds.map((id) => `progs/${id}`).sort(), 'no pin of a failed restore');
      assert.deepEqual(env.pins().filter((p) => p.startsWith('maps/') && !restoredIds.some((id) => p.startsWith(`maps/${id}/`))), [], 'no maps of a failed restore');

      // the changed file did not matter: the stored copy came back, which passes packets
      const now = listed();
      const back = now.find((p) => p.name === 'xdp_pass')!;
      assert.deepEqual(back.bytecode, changed.bytecode, 'still the original file and sha256');
      const tagOf = (id: number) => (env.run('get', String(id), '-o', 'json').json() as { kernel: { tag: string } }).kernel.tag;
      assert.match(changed.kernel.tag, /^[0-9a-f]{16}$/);
      assert.equal(tagOf(back.id), changed.kernel.tag, 'the kernel runs the same code as before the reboot');
      assert.ok(net.ping(3, 2), 'xdp_pass, not the dropping xdp_pass now in its file, runs');

      // the owner came back, and the policy sees it: a grant without manage_others cannot unload it
      const mine = now.find((p) => p.name === 'xdp_count')! as unknown as { id: number; owner: { uid: number; username: string } };
      assert.deepEqual(mine.owner, { uid: 4321, username: 'alice' });
      writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ root_allowed: false, grants: [{ name: 'ops', uids: [0], actions: ['unload'] }] }));
      const u = env.run('unload', String(mine.id));
      assert.equal(u.status, 3, u.stderr);
      assert.match(u.stderr, /the program belongs to uid 4321 and the grant does not allow managing others' programs/);
      const logged = env.run('policy', 'log', '--limit', '1', '-o', 'json').json() as Array<{ action: string; allow: boolean; reasons: string[] }>;
      assert.equal(logged[0].action, 'unload');
      assert.equal(logged[0].allow, false);
      assert.match(logged[0].reasons.join('\n'), /belongs to uid 4321/);
      writeFileSync(env.env.BPFD_POLICY_DATA!, '{}');
    } finally {
      other.cleanup();
    }
  });

  test('a restore killed half-way is completed by the next one, never loaded twice', () => {
    const both = load('xdp_count', ...at(), '--persist');
    const a = env.run('attach', String(both.id), '--iface', net.ifA, '--netns', net.nsPathA, '--priority', '70', '-o', 'json');
    assert.equal(a.status, 0, a.stderr);
    const links = (a.json() as Listed).links.map((l) => l.id).sort();
    simulateReboot(env, [both.id]);
    const killed = spawnSync(BPFD, ['system', 'restore'], { env: { ...env.env, BPFD_TEST_HOOK: 'restore:after-load=kill' }, encoding: 'utf8' });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    const half = listed();
    assert.equal(half.length, 1);
    assert.equal(half[0].links.length, 1, 'killed after loading with its first link');
    assert.equal((env.run('list', '--pending', '-o', 'json').json() as unknown[]).length, 1, 'still pending');

    const r = restore();
    assert.equal(r.status, 0, r.stderr);
    const done = listed();
    assert.deepEqual(done.map((p) => p.id), [half[0].id], 'the same program, completed');
    assert.deepEqual(done[0].links.map((l) => l.id).sort(), links, 'with both links, under their ids');
    assert.deepEqual(env.run('list', '--pending', '-o', 'json').json(), []);
    assert.ok(net.ping(2), 'the counter passes packets');
    assert.ok(dumpMap(done[0], 'xdp_stats').packets >= 4, 'and counts them on both ends');
  });

  test('programs sharing maps come back sharing them; --persist refuses to share the maps of a program that is not persisted', () => {
    const owner = load('xdp_count', ...at(), '--priority', '10', '--persist');
    const user = load('xdp_count', '--map-owner-id', String(owner.id), '--persist');
    const plain = load('xdp_count');
    const refused = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--map-owner-id', String(plain.id), '--persist');
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`--persist with --map-owner-id ${plain.id}: program ${plain.id} is not persisted`));

    simulateReboot(env, [owner.id, user.id, plain.id]);
    const r = restore();
    assert.equal(r.status, 0, r.stderr);
    const [o, u] = [...listed()].sort((x, y) => x.id - y.id);
    assert.equal(u.maps.owner_id, o.id, 'the user shares the restored owner\'s maps');
    assert.equal(u.maps.pin_path, o.maps.pin_path);
    const ids = (prog: Listed) => (env.run('get', String(prog.id), '-o', 'json').json() as { kernel: { map_ids: number[] } }).kernel.map_ids;
    assert.ok(ids(u).some((m) => ids(o).includes(m)), 'the kernel programs use the same map');
  });

  test('the store keeps a persisted object while a record names it, and drops it after the last unload', () => {
    const objectKeys = () => {
      const store = openStore(env.env.BPFD_STATE_DIR!);
      try {
        return store.storedObjectDigests().map((sha256) => `object:${sha256}`);
      } finally {
        store.close();
      }
    };
    const plain = load('xdp_pass');
    assert.deepEqual(objectKeys(), [], 'a load without --persist keeps no copy');
    const a = load('xdp_count', '--persist');
    const b = load('xdp_count', '--persist', '--metadata', 'second=yes');
    assert.deepEqual(objectKeys(), [`object:${a.bytecode.sha256}`], 'one copy for both');
    assert.equal(env.run('unload', String(a.id)).status, 0);
    assert.deepEqual(objectKeys(), [`object:${a.bytecode.sha256}`], 'still named by the other');
    assert.equal(env.run('unload', String(b.id)).status, 0);
    assert.deepEqual(objectKeys(), [], 'gone with the last record');
    assert.equal(env.run('unload', String(plain.id)).status, 0);
  });

  test('system restore needs root and says so', () => {
    const r = env.runAs(65534, 'system', 'restore');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bpfd system restore needs root/);
  });
});
