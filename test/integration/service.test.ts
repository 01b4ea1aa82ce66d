import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { bpftool, fixture, kernelProgIds, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { callAs, client, Code, makeUser, serving, sleep, startService, type Service, type TestUser } from '../helpers/service.js';

const skip = needsRoot();

const loadReq = (file: string, name: string, extra: object = {}) => ({ bytecode: { file: fixture(file) }, info: [{ name, program_type: 0 }], ...extra });
const xdpAttach = (id: number, n: VethPair, priority = 50) => ({ id, attach: { xdp_attach_info: { iface: n.ifB, netns: n.nsPathB, priority, proceed_on: [2, 31] } } });

describe('bpfd system service: bpfman.v1 over a unix socket', { skip }, () => {
  let env: Env;
  let veth: VethPair;
  const services: Service[] = [];
  // each service its own socket: a test that fails leaves no service in the next one's way
  const start = (e: Env, opts: Parameters<typeof startService>[1] = {}) => {
    const s = startService(e, { address: `unix://${e.dir}/bpfd-${services.length}.sock`, ...opts });
    services.push(s);
    return s;
  };
  before(() => {
    env = makeEnv();
    veth = makeVethPair();
  });
  after(async () => {
    for (const s of services) await s.stop();
    env?.cleanup();
    veth?.cleanup();
  });

  test('socket-activated (systemd-socket-activate, fd 3): Load only loads, Attach makes it drop pings, Detach and Unload undo it', async () => {
    const svc = start(env, { activate: true, args: ['--timeout', '0'] });
    await serving(svc);
    const c = client(svc.address);
    const load = await c.call('Load', loadReq('xdp_drop.o', 'xdp_drop', { metadata: { app: 'api' } }));
    assert.equal(load.code, 0, load.details);
    const { info, kernel_info } = load.response.programs[0];
    const id: number = kernel_info.id;
    assert.ok(kernelProgIds().has(id), 'the program id is a kernel program id');
    assert.equal(info.name, 'xdp_drop');
    assert.equal(info.bytecode.file, fixture('xdp_drop.o'));
    assert.deepEqual(info.metadata, { app: 'api' });
    assert.equal(kernel_info.program_type, 6, 'BPF_PROG_TYPE_XDP');
    assert.ok(veth.ping(), 'Load only loads: pings still pass');
    assert.match(svc.log(), /serving bpfman\.v1\.Bpfman on the socket systemd passed \(fd 3\)/);

    const att = await c.call('Attach', xdpAttach(id, veth));
    assert.equal(att.code, 0, att.details);
    const linkId: number = att.response.link_id;
    assert.ok(linkId > 0);
    assert.equal(veth.ping(), false, 'attached through the API, the drop program drops pings');

    const got = await c.call('Get', { id });
    assert.equal(got.code, 0, got.details);
    assert.deepEqual(got.response.info.links, [linkId]);
    assert.equal(got.response.kernel_info.id, id);
    assert.ok(got.response.kernel_info.bytes_xlated > 0, 'Get reads the kernel');

    const mine = await c.call('List', { bpfman_programs_only: true });
    assert.equal(mine.code, 0, mine.details);
    assert.deepEqual(mine.response.results.map((r: any) => r.kernel_info.id), [id]);
    // a program bpfd did not load, pinned in a bpffs of the test's own
    const otherFs = `${env.dir}/otherfs`;
    mkdirSync(otherFs);
    spawnSync('mount', ['-t', 'bpf', 'bpf', otherFs]);
    try {
      const loaded = spawnSync('bpftool', ['prog', 'load', fixture('xdp_pass.o'), `${otherFs}/p`, 'type', 'xdp'], { encoding: 'utf8' });
      assert.equal(loaded.status, 0, loaded.stderr);
      const otherId: number = bpftool('prog', 'show', 'pinned', `${otherFs}/p`).id;
      const all = await c.call('List', {});
      assert.equal(all.code, 0, all.details);
      assert.ok(all.response.results.some((r: any) => r.kernel_info.id === id && r.info), 'bpfd programs come with info');
      const other = all.response.results.find((r: any) => r.kernel_info.id === otherId);
      assert.ok(other, 'List without bpfman_programs_only shows programs bpfd does not manage');
      assert.equal(other.info, undefined, 'with kernel_info only');
      assert.equal(other.kernel_info.program_type, 6);
      for (const r of all.response.results.filter((x: any) => !x.info)) assert.notEqual(r.kernel_info.id, id);
    } finally {
      rmSync(`${otherFs}/p`, { force: true });
      spawnSync('umount', [otherFs]);
    }
    const cli = env.run('list', '-o', 'json').json();
    assert.deepEqual(cli.map((p: any) => [p.id, p.links[0]?.id]), [[id, linkId]], 'the CLI sees what the API did');

    assert.equal((await c.call('Detach', { link_id: linkId })).code, 0);
    assert.ok(veth.ping(), 'detached: pings pass again');
    assert.equal((await c.call('Unload', { id })).code, 0);
    assert.ok(progGone(id));
    assert.deepEqual(env.pins(), []);
    c.close();
    await svc.stop();
  });

  test('each error kind has its status, with a message that says what to do', async () => {
    const svc = start(env, { args: ['--timeout', '0', '--lock-timeout', '0.5'] });
    await serving(svc);
    const c = client(svc.address);
    const rel = await c.call('Load', { bytecode: { file: 'xdp_drop.o' }, info: [{ name: 'xdp_drop', program_type: 0 }] });
    assert.equal(rel.code, Code.INVALID_ARGUMENT);
    assert.match(rel.details, /not an absolute path.*full path on the host/);
    const badName = await c.call('Load', loadReq('xdp_drop.o', 'nope'));
    assert.equal(badName.code, Code.INVALID_ARGUMENT);
    assert.match(badName.details, /function nope is not a program in .*\nprograms in the object: xdp_drop/);
    const kprobe = await c.call('Load', { bytecode: { file: fixture('xdp_drop.o') }, info: [{ name: 'xdp_drop', program_type: 3 }] });
    assert.equal(kprobe.code, Code.INVALID_ARGUMENT);
    assert.match(kprobe.details, /KPROBE cannot be loaded on this host/);
    const missing = await c.call('Get', { id: 0xfffffff0 });
    assert.equal(missing.code, Code.NOT_FOUND);
    assert.match(missing.details, /no program with id 4294967280 is loaded by bpfd/);
    assert.equal((await c.call('Detach', { link_id: 999999 })).code, Code.NOT_FOUND);
    const pull = await c.call('PullBytecode', { image: { url: 'Not A Reference!' } });
    assert.equal(pull.code, Code.INVALID_ARGUMENT, pull.details);

    // RESOURCE_EXHAUSTED: the 11th program on one interface
    const ids: number[] = [];
    for (let i = 0; i < 11; i++) {
      const l = await c.call('Load', loadReq('xdp_pass.o', 'xdp_pass'));
      assert.equal(l.code, 0, l.details);
      ids.push(l.response.programs[0].kernel_info.id);
    }
    for (const id of ids.slice(0, 10)) assert.equal((await c.call('Attach', xdpAttach(id, veth, 100))).code, 0);
    const eleventh = await c.call('Attach', xdpAttach(ids[10], veth, 100));
    assert.equal(eleventh.code, Code.RESOURCE_EXHAUSTED);
    assert.match(eleventh.details, /already has 10 XDP programs \(the maximum\); detach or unload one of them/);

    // FAILED_PRECONDITION: the rest, here a program the verifier refuses, with its words
    const rejected = await c.call('Load', loadReq('xdp_reject.o', 'xdp_reject'));
    assert.equal(rejected.code, Code.FAILED_PRECONDITION);
    assert.match(rejected.details, /the kernel verifier rejected program xdp_reject[\s\S]*invalid access to packet/);

    // UNAVAILABLE: another bpfd holds the writer lock longer than --lock-timeout
    const { spawn } = await import('node:child_process');
    const { bpfdArgv } = await import('../helpers/bpfd.js');
    const [cmd, ...args] = bpfdArgv('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
    const holder = spawn(cmd, args, { env: { ...env.env, BPFD_TEST_HOOK: 'load:before-kernel=sleep:4000' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let held = '';
    holder.stdout!.on('data', (d) => (held += d));
    const { readFileSync } = await import('node:fs');
    const lockFile = `${env.env.BPFD_RUNTIME_DIR}/lock`;
    for (let i = 0; i < 500 && !(existsSync(lockFile) && readFileSync(lockFile, 'utf8').includes(String(holder.pid))); i++) await sleep(10);
    const busy = await c.call('Unload', { id: ids[10] });
    assert.equal(busy.code, Code.UNAVAILABLE);
    assert.match(busy.details, /waiting for the bpfd lock.*held by[\s\S]*raise --lock-timeout/);
    await new Promise((r) => holder.on('exit', r));
    ids.push(JSON.parse(held).id);

    for (const id of ids) assert.equal((await c.call('Unload', { id })).code, 0);
    assert.deepEqual(env.pins(), []);
    c.close();
    assert.equal(await svc.stop(), 0);
  });

  test('idle exit: alive while calls keep coming, gone after --timeout without one', async () => {
    const svc = start(env, { args: ['--timeout', '1'] });
    await serving(svc);
    const c = client(svc.address);
    // calls for three times the timeout, each well inside it: the timer restarts with each
    const until = Date.now() + 3000;
    let calls = 0;
    while (Date.now() < until) {
      const r = await c.call('List', { bpfman_programs_only: true });
      assert.equal(r.code, 0, r.details);
      assert.ok(svc.alive(), 'still serving while calls come in');
      calls++;
      await sleep(100);
    }
    assert.ok(calls > 10);
    c.close();
    assert.equal(await svc.exited, 0, 'exits by itself once idle');
    assert.match(svc.log(), /stopping \(no call for 1 s\)/);
    assert.equal(existsSync(svc.address.replace('unix://', '')), false, 'and removes the socket it made');
  });

  test('SIGTERM during a slow Load: it is answered, complete; later calls are refused or answered, never half-done', async () => {
    const svc = start(env, { args: ['--timeout', '0', '--test-hook', 'load:before-kernel=sleep:2500'] });
    await serving(svc);
    const c1 = client(svc.address);
    const c2 = client(svc.address);
    const before = kernelProgIds();
    const listedBefore = new Set(env.run('list', '-o', 'json').json().map((p: any) => p.id));
    const loads = () => {
      const log = env.run('policy', 'log', '--limit', '100000', '-o', 'json');
      return log.status === 0 ? log.json().filter((d: any) => d.action === 'load').length : 0;
    };
    const earlier = loads();
    const slow = c1.call('Load', loadReq('xdp_pass.o', 'xdp_pass'));
    // the stall comes after the policy decision: once it is in the log, the Load is in flight
    for (let i = 0; i < 1000 && loads() === earlier; i++) await sleep(20);
    svc.proc.kill('SIGTERM');
    const late = c2.call('Load', loadReq('xdp_drop.o', 'xdp_drop'));
    const r = await slow;
    assert.equal(r.code, 0, `the call in flight is answered: ${r.details}`);
    const id = r.response.programs[0].kernel_info.id;
    const l = await late;
    assert.ok(l.code === 0 || l.code === Code.UNAVAILABLE, `a call during shutdown is answered or refused with UNAVAILABLE (got ${l.code} ${l.details})`);
    assert.equal(await svc.exited, 0);
    const listed = env.run('list', '-o', 'json').json().map((p: any) => p.id).filter((x: number) => !listedBefore.has(x)).sort();
    const expected = l.code === 0 ? [id, l.response.programs[0].kernel_info.id].sort() : [id];
    assert.deepEqual(listed, expected, 'the store has exactly what was answered');
    const fresh = [...kernelProgIds()].filter((x) => !before.has(x));
    for (const x of expected) assert.ok(fresh.includes(x), 'and the kernel has it');
    for (const x of expected) assert.equal(env.run('unload', String(x)).status, 0);
    c1.close();
    c2.close();
  });

  test('two services on one socket path: one serves, the other says why it cannot', async () => {
    const address = `unix://${env.dir}/two.sock`;
    const a = start(env, { address, args: ['--timeout', '0'] });
    const b = start(env, { address, args: ['--timeout', '0'] });
    const first = await Promise.race([a.exited.then(() => 'a'), b.exited.then(() => 'b')]);
    const [loser, winner] = first === 'a' ? [a, b] : [b, a];
    assert.equal(await loser.exited, 1);
    assert.match(loser.log(), /another bpfd service already serves unix:\/\/.*two\.sock \(pid \d+\)[\s\S]*stop it first/);
    await serving(winner);
    const r = callAs(null, address, 'List', { bpfman_programs_only: true });
    assert.equal(r.code, 0, r.details);
    assert.equal(await winner.stop(), 0);
  });

  test('over TCP the caller is anonymous: reads are served, changes denied unless a grant lists via tcp', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const svc = start(env, { address: `tcp://127.0.0.1:${port}`, args: ['--timeout', '0'] });
    await serving(svc);
    const c = client(`127.0.0.1:${port}`);
    assert.equal((await c.call('List', { bpfman_programs_only: true })).code, 0);
    const load = await c.call('Load', loadReq('xdp_pass.o', 'xdp_pass'));
    assert.equal(load.code, Code.PERMISSION_DENIED);
    assert.match(load.details, /denied by policy[\s\S]*calls over TCP are anonymous/);
    c.close();
    assert.equal(await svc.stop(), 0);
    assert.match(svc.log(), /Load by uid -1 \(anonymous, pid 0, via tcp\): PERMISSION_DENIED/);
  });

  test('the service refuses BPFD_* paths and test hooks from its environment', async () => {
    const svc = start(env, { processEnv: { BPFD_POLICY_DATA: '/tmp/mine.json' } });
    assert.equal(await svc.exited, 2);
    assert.match(svc.log(), /refusing BPFD_POLICY_DATA from the environment[\s\S]*--policy-data/);
  });
});

describe('bpfd system service: callers judged as themselves', { skip }, () => {
  let env: Env;
  let user: TestUser;
  before(() => {
    env = makeEnv();
    user = makeUser();
    chmodSync(env.dir, 0o711); // the test user reaches the socket in it
  });
  after(() => {
    env?.cleanup();
    user?.cleanup();
  });

  test('an unprivileged caller (setpriv) is denied by the default policy, allowed once the data grants its group; the decision log has its uid', async () => {
    const args = ['--timeout', '0', '--socket-group', user.name];
    let svc = startService(env, { args });
    await serving(svc);
    const denied = callAs(user, svc.address, 'Load', loadReq('xdp_pass.o', 'xdp_pass'));
    assert.equal(denied.code, Code.PERMISSION_DENIED);
    assert.match(denied.details, new RegExp(`denied by policy\\nuid ${user.uid} \\(${user.name}\\) has no grant`));
    assert.equal(await svc.stop(), 0);

    writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ grants: [{ name: 'testers', groups: [user.name], via: ['socket'] }] }));
    svc = startService(env, { args });
    try {
      await serving(svc);
      const ok = callAs(user, svc.address, 'Load', loadReq('xdp_pass.o', 'xdp_pass'));
      assert.equal(ok.code, 0, ok.details);
      const id = ok.response.programs[0].kernel_info.id;
      const mine = env.run('get', String(id), '-o', 'json').json();
      assert.deepEqual(mine.owner, { uid: user.uid, username: user.name }, 'the program belongs to the caller');
      assert.equal(callAs(user, svc.address, 'Unload', { id }).code, 0);
      assert.ok(progGone(id));
      const log = env.run('policy', 'log', '-o', 'json').json() as Array<{ subject: { uid: number; via: string }; action: string; allow: boolean }>;
      const theirs = log.filter((d) => d.subject.uid === user.uid).map((d) => [d.action, d.allow, d.subject.via]);
      assert.deepEqual(theirs.sort(), [['load', false, 'socket'], ['load', true, 'socket'], ['unload', true, 'socket']].sort());
    } finally {
      await svc.stop();
    }
    assert.match(svc.log(), new RegExp(`Load by uid ${user.uid} \\(${user.name}, pid \\d+, via socket\\): ok`));
  });

  test('a policy data file others can write denies socket callers, naming the file', async () => {
    writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ grants: [{ name: 'testers', groups: [user.name] }] }));
    chmodSync(env.env.BPFD_POLICY_DATA!, 0o666);
    const svc = startService(env, { args: ['--timeout', '0', '--socket-group', user.name] });
    try {
      await serving(svc);
      const r = callAs(user, svc.address, 'Load', loadReq('xdp_pass.o', 'xdp_pass'));
      assert.equal(r.code, Code.PERMISSION_DENIED);
      assert.match(r.details, new RegExp(`policy data ${env.env.BPFD_POLICY_DATA!.replace(/[.]/g, '\\.')} is writable by others \\(mode 666\\)`));
    } finally {
      chmodSync(env.env.BPFD_POLICY_DATA!, 0o644);
      await svc.stop();
    }
  });
});
