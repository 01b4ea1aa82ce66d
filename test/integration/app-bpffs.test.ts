import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { bpftool, fixture, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { simulateReboot, xdpProgOn } from '../helpers/reboot.js';
import { asUser, buildBpfMapTool, cleanupDir, mapGone, mountsUnder, NODE_EXAMPLE, openDir, testUids, unprivilegedBpfDisabled, valueOf } from '../helpers/app-bpffs.js';

const skip = needsRoot();

interface Program {
  id: number;
  application: string | null;
  maps: { pin_path: string; owner_id: number | null; names: string[]; used_by: number[] };
}

interface MountView {
  path: string;
  owner: { uid: number; gid: number };
  mode: string;
  mounted: boolean;
  shares: Array<{ source: { program: number } | { application: string }; maps: string[] | 'all'; mode: string }>;
  pins: Array<{ name: string; path: string; program: number; mode: string; present: boolean }>;
}

const XDP_DROP = '01000000';

describe("applications read and update bpfd's maps through a bpffs of their own", { skip }, () => {
  let tools: string;
  let tool: string;
  let restoreSysctl: () => void;
  let env: Env;
  let net: VethPair;
  let dir: string;
  let owner: number;
  let other: number;
  let app: string;

  before(() => {
    restoreSysctl = unprivilegedBpfDisabled();
    tools = openDir('bpfd-tools-');
    tool = buildBpfMapTool(tools);
  });
  after(() => {
    restoreSysctl?.();
    if (tools) rmSync(tools, { recursive: true, force: true });
  });
  beforeEach(() => {
    env = makeEnv();
    net = makeVethPair();
    dir = openDir('bpfd-apps-');
    app = path.join(dir, 'web');
    [owner, other] = testUids();
  });
  afterEach(() => {
    env?.run('bpffs', 'remove', app);
    env?.cleanup();
    net?.cleanup();
    if (dir) cleanupDir(dir);
  });

  const ok = (...args: string[]) => {
    const r = env.run(...args);
    assert.equal(r.status, 0, `bpfd ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  const at = ['--iface', () => net.ifB, '--netns', () => net.nsPathB] as const;
  const attachArgs = () => at.map((a) => (typeof a === 'function' ? a() : a));
  const loadGate = (...extra: string[]) => ok('load', 'file', '--path', fixture('xdp_gate.o'), '--name', 'xdp_gate', ...extra, '-o', 'json').json() as Program;
  const create = (...extra: string[]) => ok('bpffs', 'create', app, '--owner', String(owner), ...extra, '-o', 'json').json() as { created: boolean; mount: MountView };
  const share = (...extra: string[]) => ok('bpffs', 'share', app, ...extra, '-o', 'json').json() as MountView;
  const mapTool = (uid: number, ...args: string[]) => asUser(uid, tool, ...args);
  const counter = (uid: number, pin: string, key: number) => {
    const r = mapTool(uid, 'get', pin, String(key));
    assert.equal(r.status, 0, r.stderr);
    return valueOf(r.stdout);
  };
  const mountLine = (p: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === p);

  test('the owner closes the gate of a running program through a shared map and sees the drops in its counters; others and read-only pins are refused', () => {
    const created = create('--application', 'web');
    assert.equal(created.created, true);
    const line = mountLine(app);
    assert.ok(line, 'mounted');
    assert.match(line, / shared:\d+.* - bpf /, 'a shared bpffs mount');
    assert.equal(statSync(app).uid, owner);
    assert.equal(statSync(app).mode & 0o777, 0o750);

    const prog = loadGate(...attachArgs(), '--application', 'web');
    share('--program', String(prog.id), '--maps', 'gate_config');
    const view = share('--program', String(prog.id), '--maps', 'gate_stats', '--mode', '0440');
    assert.deepEqual(view.pins.map((p) => [p.name, p.mode, p.present]).sort(), [['gate_config', '0660', true], ['gate_stats', '0440', true]]);
    const config = path.join(app, 'gate_config');
    const stats = path.join(app, 'gate_stats');
    assert.equal(statSync(config).uid, owner);
    assert.equal(statSync(config).mode & 0o777, 0o660);

    // the pins are the program's own maps, not copies
    const mapIds = new Set((bpftool('prog', 'show', 'id', String(prog.id)) as { map_ids: number[] }).map_ids);
    assert.ok(mapIds.has((bpftool('map', 'show', 'pinned', config) as { id: number }).id));

    assert.ok(net.ping(3, 2), 'the gate is open');
    const passedBefore = counter(owner, stats, 2);
    assert.ok(passedBefore > 0n, 'the program counted the passed packets');
    assert.equal(counter(owner, stats, 1), 0n, 'nothing dropped yet');

    // the owner, with no capability, updates the map; the running program sees it
    const set = mapTool(owner, 'set', config, '0', XDP_DROP);
    assert.equal(set.status, 0, set.stderr);
    assert.equal(net.ping(2, 1), false, 'the gate is closed');
    assert.ok(counter(owner, stats, 1) >= 2n, 'the program counted what it dropped');
    assert.equal(bpftool('map', 'lookup', 'pinned', config, 'key', '0', '0', '0', '0').formatted.value, 1);

    // read-only pin: lookups work, updates are refused
    const ro = mapTool(owner, 'set', stats, '1', '0000000000000000');
    assert.equal(ro.status, 1);
    assert.match(ro.stderr, /EACCES/);
    assert.ok(counter(owner, stats, 1) >= 2n, 'the refused update changed nothing');

    // another uid cannot even reach the mount
    for (const pin of [config, stats]) {
      const r = mapTool(other, 'get', pin, '0');
      assert.equal(r.status, 1);
      assert.match(r.stderr, /EACCES/, `uid ${other} on ${pin}`);
    }
    // bpfd's own pins stay out of reach, for the owner too
    const own = path.join(prog.maps.pin_path, 'gate_config');
    assert.ok(existsSync(own));
    const r = mapTool(owner, 'set', own, '0', '02000000');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /EACCES/);

    // the JavaScript example does the same as the C one
    const js = asUser(owner, process.execPath, NODE_EXAMPLE, 'set', config, '0', '02000000');
    assert.equal(js.status, 0, js.stderr);
    assert.ok(net.ping(3, 2), 'the Node example opened the gate again');
    const jsGet = asUser(owner, process.execPath, NODE_EXAMPLE, 'get', stats, '2');
    assert.equal(jsGet.status, 0, jsGet.stderr);
    assert.ok(valueOf(jsGet.stdout) > passedBefore);
    const jsOther = asUser(other, process.execPath, NODE_EXAMPLE, 'get', stats, '2');
    assert.equal(jsOther.status, 1);
    assert.match(jsOther.stderr, /EACCES/);
  });

  test('create refuses bpfd\'s own directories and non-empty ones, and again is a no-op that says so; remove unmounts', () => {
    const inside = env.run('bpffs', 'create', path.join(env.dir, 'run', 'apps', 'x'), '--owner', String(owner));
    assert.equal(inside.status, 2);
    assert.match(inside.stderr, /inside bpfd's runtime directory/);
    const full = path.join(dir, 'full');
    mkdirSync(full);
    writeFileSync(path.join(full, 'keep'), 'x');
    const nonEmpty = env.run('bpffs', 'create', full, '--owner', String(owner));
    assert.equal(nonEmpty.status, 2);
    assert.match(nonEmpty.stderr, /not empty/);
    assert.equal(readFileSync(path.join(full, 'keep'), 'utf8'), 'x');
    const badOwner = env.run('bpffs', 'create', app, '--owner', 'www');
    assert.equal(badOwner.status, 2);
    assert.match(badOwner.stderr, /--owner www: give the application's numeric UID/);
    assert.deepEqual(mountsUnder(dir), [], 'nothing mounted by refused creates');

    create();
    const again = ok('bpffs', 'create', app, '--owner', String(owner));
    assert.match(again.stdout, /already created: .* \(nothing changed\)/);
    assert.equal(mountsUnder(dir).length, 1, 'mounted once');
    const other = env.run('bpffs', 'create', app, '--owner', String(owner), '--mode', '0700');
    assert.equal(other.status, 2);
    assert.match(other.stderr, /already created a bpffs at .* with owner/);

    const unknown = env.run('bpffs', 'share', path.join(dir, 'nope'), '--application', 'web');
    assert.equal(unknown.status, 4);
    assert.match(unknown.stderr, /bpfd created no bpffs at/);
    const noProg = env.run('bpffs', 'share', app, '--program', '999999');
    assert.equal(noProg.status, 4);
    const prog = loadGate();
    const noMap = env.run('bpffs', 'share', app, '--program', String(prog.id), '--maps', 'nope');
    assert.equal(noMap.status, 2);
    assert.match(noMap.stderr, /has no map named nope/);
    const badMode = env.run('bpffs', 'share', app, '--program', String(prog.id), '--mode', '0755');
    assert.equal(badMode.status, 2);
    // the policy decides: a data document whose grants leave out "share" (root_allowed false)
    writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ root_allowed: false, grants: [{ name: 'ops', uids: [0], actions: ['load', 'unload'] }] }));
    const denied = env.run('bpffs', 'share', app, '--program', String(prog.id));
    assert.equal(denied.status, 3, denied.stderr);
    assert.match(denied.stderr, /grant "ops": action "share" is not granted/);
    assert.deepEqual((ok('bpffs', 'list', '-o', 'json').json() as MountView[])[0].shares, [], 'nothing recorded');
    assert.equal(existsSync(path.join(app, 'gate_config')), false, 'nothing pinned');
    writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ root_allowed: false, grants: [{ name: 'ops', uids: [0], share_paths: [`${dir}/*`] }] }));
    share('--program', String(prog.id));
    assert.equal((ok('bpffs', 'list', '-o', 'json').json() as MountView[])[0].pins.length, 2);
    rmSync(env.env.BPFD_POLICY_DATA!);

    ok('bpffs', 'remove', app);
    assert.deepEqual(mountsUnder(dir), [], 'unmounted');
    assert.equal(existsSync(app), false, 'the directory bpfd made is gone');
    assert.deepEqual(ok('bpffs', 'list', '-o', 'json').json(), []);
    assert.equal(env.run('bpffs', 'remove', app).status, 4);
    // the program keeps its maps in bpfd's own bpffs
    assert.ok(existsSync(path.join(prog.maps.pin_path, 'gate_config')));
  });

  test('an application share picks up a program loaded later; unloading unpins its maps from the mount', () => {
    create();
    share('--application', 'web', '--maps', 'gate_stats');
    const first = loadGate('--application', 'web');
    const stranger = loadGate('--application', 'db');
    const pins = (ok('bpffs', 'list', '-o', 'json').json() as MountView[])[0].pins;
    assert.deepEqual(pins.map((p) => [p.name, p.program, p.present]), [['gate_stats', first.id, true]]);
    assert.equal(counter(owner, path.join(app, 'gate_stats'), 2), 0n);
    const mapId = (bpftool('map', 'show', 'pinned', path.join(app, 'gate_stats')) as { id: number }).id;

    ok('unload', String(first.id));
    assert.equal(existsSync(path.join(app, 'gate_stats')), false, 'unpinned from the application mount');
    const gone = mapTool(owner, 'get', path.join(app, 'gate_stats'), '0');
    assert.match(gone.stderr, /ENOENT/);
    assert.ok(mapGone(mapId), 'the map is freed');
    assert.ok(existsSync(path.join(stranger.maps.pin_path, 'gate_stats')), 'other programs are left alone');

    // a later program of the application gets its maps shared on load, without another share
    const second = loadGate('--application', 'web');
    const later = (ok('bpffs', 'list', '-o', 'json').json() as MountView[])[0].pins;
    assert.deepEqual(later.map((p) => [p.name, p.program, p.present]), [['gate_stats', second.id, true]]);
    assert.equal(counter(owner, path.join(app, 'gate_stats'), 1), 0n);
    assert.equal(ok('doctor').status, 0);
  });

  test('a bind mount of the application path in another mount namespace sees a pin made after the bind', async () => {
    create();
    const prog = loadGate('--application', 'web');
    const target = path.join(dir, 'container');
    mkdirSync(target);
    // the "container": its own mount namespace with the application path bound in, waiting for a line
    const script = `mount --bind ${app} ${target} && echo bound && read line && exec setpriv --reuid=${owner} --regid=${owner} --clear-groups --inh-caps=-all --bounding-set=-all ${tool} get ${target}/gate_config 0`;
    const child = spawn('unshare', ['-m', 'sh', '-c', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const done = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('bound')) resolve();
        });
        child.on('exit', () => reject(new Error(`the container exited before binding: ${err}`)));
      });
      assert.deepEqual(mountsUnder(target), [], 'the bind is in the other namespace only');
      share('--program', String(prog.id));
      child.stdin.write('go\n');
      const code = await done;
      assert.equal(code, 0, err);
      assert.match(out, /key 0 value 00000000/, 'the container reads the map pinned after its bind');
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('after a reboot, restore mounts the bpffs again and shares the restored program; doctor explains what is missing before', () => {
    create();
    const prog = loadGate(...attachArgs(), '--application', 'web', '--persist');
    share('--program', String(prog.id), '--maps', 'gate_config');
    assert.equal(mapTool(owner, 'set', path.join(app, 'gate_config'), '0', XDP_DROP).status, 0);
    assert.equal(net.ping(1, 1), false);

    const dispatcher = xdpProgOn(net.nsB, net.ifB)!;
    spawnSync('umount', [app]); // what a reboot does to every mount
    simulateReboot(env, [prog.id, dispatcher]);
    assert.ok(net.ping(3, 2), 'nothing of the old boot runs');

    const doctor = env.run('doctor', '-o', 'json');
    assert.equal(doctor.status, 1);
    const kinds = (doctor.json() as { findings: Array<{ kind: string; subject: string }> }).findings.map((f) => `${f.kind} ${f.subject}`);
    assert.ok(kinds.includes(`app-mount-missing ${app}`), kinds.join('\n'));

    const restored = ok('system', 'restore', '-o', 'json').json() as { restored: Array<{ previous_id: number; id: number }> };
    const id = restored.restored.find((r) => r.previous_id === prog.id)!.id;
    assert.ok(mountLine(app), 'mounted again');
    const view = (ok('bpffs', 'list', '-o', 'json').json() as MountView[])[0];
    assert.deepEqual(view.shares.map((s) => s.source), [{ program: id }], 'the share follows the program to its new id');
    assert.deepEqual(view.pins.map((p) => [p.name, p.program, p.mode, p.present]), [['gate_config', id, '0660', true]]);
    // map contents start afresh; the owner closes the gate of the restored program again
    assert.equal(counter(owner, path.join(app, 'gate_config'), 0), 0n);
    assert.equal(mapTool(owner, 'set', path.join(app, 'gate_config'), '0', XDP_DROP).status, 0);
    assert.equal(net.ping(2, 1), false, 'the restored program sees the update');
    assert.equal(ok('doctor').status, 0);
  });

  test('programs sharing maps with --map-owner-id keep one map alive while any user remains, in bpfd\'s bpffs and the application\'s', () => {
    create();
    share('--application', 'web');
    const first = loadGate('--application', 'web');
    const user = loadGate(...attachArgs(), '--application', 'web', '--map-owner-id', String(first.id));
    assert.equal(user.maps.owner_id, first.id);
    assert.equal(user.maps.pin_path, first.maps.pin_path);
    const got = ok('get', String(first.id), '-o', 'json').json() as Program;
    assert.deepEqual(got.maps.used_by, [first.id, user.id].sort((a, b) => a - b));
    const view = (ok('bpffs', 'list', '-o', 'json').json() as MountView[])[0];
    assert.deepEqual(view.pins.map((p) => p.name).sort(), ['gate_config', 'gate_stats'], 'one pin per map, not one per program');
    const mapId = (bpftool('map', 'show', 'pinned', path.join(app, 'gate_config')) as { id: number }).id;

    // the owner goes; its maps stay for the user
    ok('unload', String(first.id));
    assert.ok(progGone(first.id));
    const after = ok('get', String(user.id), '-o', 'json').json() as Program;
    assert.equal(after.maps.owner_id, first.id);
    assert.deepEqual(after.maps.used_by, [user.id]);
    assert.ok(existsSync(path.join(first.maps.pin_path, 'gate_config')), "kept in bpfd's bpffs");
    assert.equal((bpftool('map', 'show', 'pinned', path.join(app, 'gate_config')) as { id: number }).id, mapId, 'the same map in the application mount');
    assert.equal(mapTool(owner, 'set', path.join(app, 'gate_config'), '0', XDP_DROP).status, 0);
    assert.equal(net.ping(2, 1), false, 'the user program reads the shared map');
    assert.equal(ok('doctor').status, 0, 'nothing looks orphaned');

    ok('unload', String(user.id));
    assert.equal(existsSync(first.maps.pin_path), false, 'the last user out unpins the maps');
    assert.equal(existsSync(path.join(app, 'gate_config')), false);
    assert.ok(mapGone(mapId), 'the map is freed');
  });

  test('users of a map owner unloaded before a reboot come back sharing one set of maps, and in the application mount', () => {
    create();
    share('--application', 'web', '--maps', 'gate_config');
    const first = loadGate('--application', 'web', '--persist');
    const userA = loadGate('--application', 'web', '--persist', '--map-owner-id', String(first.id));
    const userB = loadGate('--application', 'web', '--persist', '--map-owner-id', String(first.id));
    ok('unload', String(first.id));
    spawnSync('umount', [app]);
    simulateReboot(env, [userA.id, userB.id]);

    const restored = ok('system', 'restore', '-o', 'json').json() as { restored: Array<{ previous_id: number; id: number }>; failed: unknown[] };
    assert.deepEqual(restored.failed, []);
    const idOf = (prev: number) => restored.restored.find((r) => r.previous_id === prev)!.id;
    const a = ok('get', String(idOf(userA.id)), '-o', 'json').json() as Program;
    const b = ok('get', String(idOf(userB.id)), '-o', 'json').json() as Program;
    assert.equal(a.maps.owner_id, null, 'the first user restored owns fresh maps');
    assert.equal(b.maps.owner_id, a.id, 'the other shares them');
    assert.deepEqual(b.maps.used_by, [a.id, b.id].sort((x, y) => x - y));
    const pins = (ok('bpffs', 'list', '-o', 'json').json() as MountView[])[0].pins;
    assert.deepEqual(pins.map((p) => [p.name, p.present]), [['gate_config', true]]);
    assert.equal(mapTool(owner, 'set', path.join(app, 'gate_config'), '0', XDP_DROP).status, 0);
    assert.equal(bpftool('map', 'lookup', 'pinned', path.join(b.maps.pin_path, 'gate_config'), 'key', '0', '0', '0', '0').formatted.value, 1, 'one map for both');
  });

  test('a crash mid-share or mid-remove leaves what the next command explains and completes; doctor --fix repairs pins changed by hand', () => {
    create();
    const prog = loadGate('--application', 'web');
    const crashed = makeEnvLike(env, { BPFD_TEST_HOOK: 'bpffs-share:after-record=kill' }).run('bpffs', 'share', app, '--program', String(prog.id));
    assert.notEqual(crashed.status, 0);
    const report = env.run('doctor', '-o', 'json');
    assert.equal(report.status, 1);
    const findings = (report.json() as { findings: Array<{ kind: string; subject: string }> }).findings;
    assert.deepEqual(findings.map((f) => f.kind).sort(), ['app-pin-missing', 'app-pin-missing']);
    const fixed = env.run('doctor', '--fix');
    assert.equal(fixed.status, 0, fixed.stdout + fixed.stderr);
    assert.equal(counter(owner, path.join(app, 'gate_config'), 0), 0n, 'pinned by the repair');

    // by hand: a pin removed, another's mode changed, a stray one added
    rmSync(path.join(app, 'gate_stats'));
    spawnSync('chmod', ['0666', path.join(app, 'gate_config')]);
    spawnSync('bpftool', ['map', 'pin', 'pinned', path.join(prog.maps.pin_path, 'gate_stats'), path.join(app, 'extra')]);
    const kinds = (env.run('doctor', '-o', 'json').json() as { findings: Array<{ kind: string }> }).findings.map((f) => f.kind).sort();
    assert.deepEqual(kinds, ['app-pin-missing', 'app-pin-stray', 'app-pin-wrong']);
    assert.equal(env.run('doctor', '--fix').status, 0);
    assert.equal(statSync(path.join(app, 'gate_config')).mode & 0o777, 0o660);
    assert.ok(existsSync(path.join(app, 'gate_stats')));
    assert.equal(existsSync(path.join(app, 'extra')), false);

    // killed between the first pin and the second: the next command pins the rest
    ok('bpffs', 'unshare', app);
    assert.deepEqual(ok('bpffs', 'list', '-o', 'json').json<MountView[]>()[0].pins, []);
    const halfway = makeEnvLike(env, { BPFD_TEST_HOOK: 'bpffs-share:after-first-pin=kill' }).run('bpffs', 'share', app, '--program', String(prog.id));
    assert.notEqual(halfway.status, 0);
    assert.deepEqual((env.run('doctor', '-o', 'json').json() as { findings: Array<{ kind: string }> }).findings.map((f) => f.kind), ['app-pin-missing']);
    ok('load', 'file', '--path', fixture('xdp_gate.o'), '--name', 'xdp_gate', '--application', 'db');
    assert.deepEqual(ok('bpffs', 'list', '-o', 'json').json<MountView[]>()[0].pins.map((p) => p.present), [true, true], 'a later change completed the share');

    const cut = makeEnvLike(env, { BPFD_TEST_HOOK: 'bpffs-remove:after-unpin=kill' }).run('bpffs', 'remove', app);
    assert.notEqual(cut.status, 0);
    const half = (env.run('doctor', '-o', 'json').json() as { findings: Array<{ kind: string }> }).findings.map((f) => f.kind);
    assert.deepEqual(half, ['app-mount-removing']);
    ok('list'); // any command completes it (a read repairs when the lock is free)
    assert.deepEqual(mountsUnder(dir), []);
    assert.deepEqual(ok('bpffs', 'list', '-o', 'json').json(), []);

    // killed after recording a create, before mounting: the next command mounts it
    const early = makeEnvLike(env, { BPFD_TEST_HOOK: 'bpffs-create:after-record=kill' }).run('bpffs', 'create', app, '--owner', String(owner));
    assert.notEqual(early.status, 0);
    assert.deepEqual(mountsUnder(dir), []);
    assert.deepEqual((env.run('doctor', '-o', 'json').json() as { findings: Array<{ kind: string }> }).findings.map((f) => f.kind), ['app-mount-missing']);
    assert.equal(env.run('doctor', '--fix').status, 0);
    assert.deepEqual(mountsUnder(dir), [app]);
    assert.equal(statSync(app).uid, owner);
  });
});

/** The same bpfd installation with extra environment variables for one command. */
function makeEnvLike(env: Env, extra: NodeJS.ProcessEnv): { run: (...args: string[]) => { status: number; stderr: string } } {
  return {
    run(...args: string[]) {
      const saved = { ...env.env };
      Object.assign(env.env, extra);
      try {
        return env.run(...args);
      } finally {
        for (const k of Object.keys(extra)) delete env.env[k];
        Object.assign(env.env, saved);
      }
    },
  };
}
