import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bpfdArgv, fixture, makeEnv, needsRoot, progGone, type Env, type RunResult } from '../helpers/bpfd.js';
import { ip, makeVethPair, type VethPair } from '../helpers/netns.js';
import { makeUser, serving, startService, type Service, type TestUser } from '../helpers/service.js';
import { simulateReboot } from '../helpers/reboot.js';
import { readProgramRecord } from '../helpers/store-edit.js';

const skip = needsRoot();

const result = (r: ReturnType<typeof spawnSync>): RunResult => ({
  status: r.status ?? -1,
  stdout: String(r.stdout),
  stderr: String(r.stderr),
  json() {
    return JSON.parse(String(r.stdout));
  },
});

describe('the bpfd command line as a client of the service', { skip }, () => {
  let env: Env;
  let user: TestUser;
  let veth: VethPair;
  let svc: Service;
  /** bpfd run by the test user (its own uid, gid and groups), as a person would run it */
  const asUser = (...args: string[]) => {
    const [cmd, ...rest] = ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', ...bpfdArgv(...args)];
    return result(spawnSync(cmd, rest, { env: env.env, encoding: 'utf8', timeout: 60_000 }));
  };
  before(async () => {
    env = makeEnv();
    user = makeUser();
    veth = makeVethPair();
    chmodSync(env.dir, 0o711);
    writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ grants: [{ name: 'testers', groups: [user.name] }] }));
    svc = startService(env, { args: ['--timeout', '0', '--socket-group', user.name] });
    await serving(svc);
  });
  after(async () => {
    await svc?.stop();
    env?.cleanup();
    user?.cleanup();
    veth?.cleanup();
  });

  test('get and list print exactly what they print in-process, and errors exit with the same code and words', () => {
    const loaded = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--iface', veth.ifB, '--netns', veth.nsPathB, '--metadata', 'app=cli', '-o', 'json');
    assert.equal(loaded.status, 0, loaded.stderr);
    const id = String(loaded.json().id);
    // no traffic while comparing: the dispatcher's per-program counters must stand still
    ip('-n', veth.nsA, 'link', 'set', veth.ifA, 'down');
    for (const args of [['get', id, '-o', 'json'], ['get', id], ['list'], ['list', '-o', 'json'], ['list', '--metadata', 'app=cli', '-o', 'json'], ['list', '--iface', veth.ifB]]) {
      const local = env.run(...args);
      const remote = env.run(...args, '--remote');
      assert.equal(local.status, 0, local.stderr);
      assert.equal(remote.stdout, local.stdout, `bpfd ${args.join(' ')}`);
      assert.equal(remote.status, local.status);
    }
    for (const args of [['get', '999999'], ['unload', '999999'], ['detach', '424242'], ['load', 'file', '--path', fixture('xdp_count.o'), '--name', 'nope']]) {
      const local = env.run(...args);
      const remote = env.run(...args, '--remote');
      assert.notEqual(local.status, 0);
      assert.deepEqual([remote.status, remote.stderr], [local.status, local.stderr], `bpfd ${args.join(' ')}`);
    }
    assert.equal(env.run('unload', id).status, 0);
    ip('-n', veth.nsA, 'link', 'set', veth.ifA, 'up');
  });

  test('a user without privileges goes through the service by itself: load --iface drops pings, unload undoes it, as that user', () => {
    const r = asUser('load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', '--iface', veth.ifB, '--netns', veth.nsPathB, '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const view = r.json();
    assert.deepEqual(view.owner, { uid: user.uid, username: user.name });
    assert.equal(view.links[0].iface, veth.ifB);
    assert.equal(veth.ping(), false, 'the drop program runs');
    assert.equal(asUser('get', String(view.id), '-o', 'json').json().id, view.id);
    const u = asUser('unload', String(view.id));
    assert.equal(u.status, 0, u.stderr);
    assert.ok(veth.ping(), 'pings pass again');
    assert.ok(progGone(view.id));
  });

  test('bpfd options bpfman.v1 has no field for go as the service\'s extensions: --dry-run, --persist, --application, --mode and list --pending print what they print in-process', () => {
    const attach = ['--iface', veth.ifB, '--netns', veth.nsPathB];
    const dry = ['load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...attach, '--mode', 'skb', '--dry-run'];
    for (const args of [dry, [...dry, '-o', 'json'], ['list', '--pending', '--all']]) {
      const local = env.run(...args);
      const remote = env.run(...args, '--remote');
      assert.deepEqual([remote.status, remote.stdout, remote.stderr], [local.status, local.stdout, local.stderr], `bpfd ${args.join(' ')}`);
    }
    assert.deepEqual(env.run('list', '-o', 'json').json(), [], 'a dry run loads nothing, in-process or through the service');

    // --persist, --application and --mode through the service, as the test user
    const r = asUser('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', ...attach, '--mode', 'skb', '--persist', '--application', 'web', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const view = r.json();
    assert.equal(view.application, 'web');
    assert.equal(view.links[0].mode, 'skb');
    assert.equal(readProgramRecord(env.env.BPFD_STATE_DIR!, view.id)?.persist, true, 'the record is persisted');
    const second = asUser('attach', String(view.id), '--iface', veth.ifA, '--netns', veth.nsPathA, '--mode', 'skb', '-o', 'json');
    assert.equal(second.status, 0, second.stderr);
    assert.deepEqual(second.json().links.map((l: any) => l.mode), ['skb', 'skb']);
    for (const args of [['get', String(view.id), '-o', 'json'], ['list']]) assert.equal(env.run(...args, '--remote').stdout, env.run(...args).stdout);
    assert.equal(asUser('unload', String(view.id)).status, 0);

    // list --pending: a program persisted in an "earlier boot" (its record's boot id is another)
    env.env.BPFD_BOOT_ID = 'b0000000-0000-4000-8000-000000000001';
    const old = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '--persist', '--application', 'old', '-o', 'json');
    assert.equal(old.status, 0, old.stderr);
    simulateReboot(env, [old.json().id]);
    delete env.env.BPFD_BOOT_ID; // the real boot id again, the service's
    for (const args of [['list', '--pending'], ['list', '--pending', '-o', 'json'], ['list', '--pending', '--metadata', 'x=y']]) {
      const local = env.run(...args);
      const remote = env.run(...args, '--remote');
      assert.equal(local.status, 0, local.stderr);
      assert.equal(remote.stdout, local.stdout, `bpfd ${args.join(' ')}`);
    }
    assert.equal(env.run('list', '--pending', '-o', 'json').json().length, 1);
    assert.equal(asUser('list', '--pending', '-o', 'json').stdout, env.run('list', '--pending', '-o', 'json').stdout, 'the user, through the service by itself');
  });

  test('without a service the message says how to start one', () => {
    const none = result(spawnSync(bpfdArgv()[0], [...bpfdArgv().slice(1), 'list', '--remote'], { env: { ...env.env, BPFD_SOCKET: `unix://${env.dir}/none.sock` }, encoding: 'utf8' }));
    assert.equal(none.status, 1);
    assert.match(none.stderr, /no bpfd service answers at unix:\/\/.*none\.sock \(ENOENT\)\n {2}start the service: sudo systemctl enable --now bpfd\.socket/);
  });
});

/**
 * A private mount namespace where /etc, /run and /var/lib are overlays on the host's: the test
 * user, the sudoers drop-in, /etc/bpfd/policy-data.json and bpfd's default store and runtime dir
 * exist only there, so sudo runs bpfd with its real defaults and the host is never touched.
 */
function privateHost(): { exec(args: string[], opts?: { env?: NodeJS.ProcessEnv }): RunResult; cleanup(): void } {
  const holder: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bpfd-sudo-'));
  const exec = (args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) =>
    result(spawnSync('nsenter', ['-t', String(holder.pid), '-m', '--', ...args], { encoding: 'utf8', env: opts.env ?? { PATH: process.env.PATH }, timeout: 60_000 }));
  const must = (...args: string[]) => {
    const r = exec(args);
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  };
  // unshare needs a moment to enter its namespace: wait until it differs from ours
  for (let i = 0; i < 500; i++) {
    const mine = spawnSync('readlink', ['/proc/self/ns/mnt'], { encoding: 'utf8' }).stdout;
    const theirs = spawnSync('readlink', [`/proc/${holder.pid}/ns/mnt`], { encoding: 'utf8' }).stdout;
    if (theirs && theirs !== mine) break;
    spawnSync('sleep', ['0.01']);
  }
  must('mount', '-t', 'tmpfs', 'tmpfs', tmp);
  for (const dir of ['/etc', '/run', '/var/lib']) {
    const name = dir.replace(/\//g, '_');
    must('mkdir', '-p', `${tmp}/${name}/upper`, `${tmp}/${name}/work`);
    must('mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${dir},upperdir=${tmp}/${name}/upper,workdir=${tmp}/${name}/work`, dir);
  }
  return {
    exec,
    cleanup() {
      holder.kill('SIGKILL');
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

describe('sudo: the user who ran it is the subject', { skip }, () => {
  let host: ReturnType<typeof privateHost>;
  let uid = 0;
  let gid = 0;
  const name = `bpfds${Math.random().toString(16).slice(2, 8)}`;
  const dropIn = `/etc/sudoers.d/${name}`;
  const data = '/etc/bpfd/policy-data.json';
  const [bin, ...binArgs] = bpfdArgv();
  const asRoot = (...args: string[]) => host.exec([bin, ...binArgs, ...args]);
  const viaSudo = (args: string[], opts: { keepEnv?: NodeJS.ProcessEnv } = {}) =>
    host.exec(['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', 'sudo', '-n', ...(opts.keepEnv ? ['-E'] : []), bin, ...binArgs, ...args], {
      env: { PATH: process.env.PATH, ...opts.keepEnv },
    });
  const load = ['load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json'];
  before(() => {
    host = privateHost();
    for (const args of [['groupadd', name], ['useradd', '-M', '-N', '-g', name, '-s', '/bin/sh', name], ['mkdir', '-p', '/etc/bpfd']]) {
      const r = host.exec(args);
      assert.equal(r.status, 0, r.stderr);
    }
    uid = Number(host.exec(['id', '-u', name]).stdout.trim());
    gid = Number(host.exec(['id', '-g', name]).stdout.trim());
    // the README's recipe, for the test user's group, with SETENV so that -E reaches bpfd
    const rule = `%${name} ALL=(root) NOPASSWD:SETENV: ${bin} ${binArgs.join(' ')} *\n`;
    assert.equal(host.exec(['sh', '-c', `printf '%s' '${rule}' > ${dropIn} && chmod 0440 ${dropIn} && visudo -cf ${dropIn}`]).status, 0);
  });
  after(() => {
    if (host) {
      for (const p of JSON.parse(asRoot('list', '-o', 'json').stdout || '[]') as Array<{ id: number }>) asRoot('unload', String(p.id));
      host.exec(['rm', '-f', dropIn]);
      host.exec(['umount', '/run/bpfd/fs']);
      host.cleanup();
    }
  });

  test('denied by the default policy as themselves, granted by policy data; the decision log has their uid', () => {
    const denied = viaSudo(load);
    assert.equal(denied.status, 3, denied.stderr);
    assert.match(denied.stderr, new RegExp(`bpfd: denied by policy\\n {2}uid ${uid} \\(${name}\\) has no grant`));

    assert.equal(host.exec(['sh', '-c', `echo '{"grants": [{"name": "sudoers", "groups": ["${name}"], "via": ["sudo"]}]}' > ${data}`]).status, 0);
    const ok = viaSudo(load);
    assert.equal(ok.status, 0, ok.stderr);
    const view = ok.json();
    assert.deepEqual(view.owner, { uid, username: name }, 'the program is theirs, not root\'s');
    assert.equal(viaSudo(['unload', String(view.id)]).status, 0);

    const log = JSON.parse(asRoot('policy', 'log', '-o', 'json').stdout) as Array<{ subject: { uid: number; via: string }; action: string; allow: boolean }>;
    assert.deepEqual(
      log.filter((d) => d.subject.uid === uid).map((d) => [d.action, d.allow, d.subject.via]).sort(),
      [['load', false, 'sudo'], ['load', true, 'sudo'], ['unload', true, 'sudo']].sort(),
    );
  });

  test('pull is judged as the user who ran sudo too, not as root', () => {
    // nothing answers on port 1: the decision comes before any request, and is what this checks
    const ref = '127.0.0.1:1/sudo-test/none:v1';
    const r = viaSudo(['pull', ref]);
    assert.notEqual(r.status, 0, 'nothing to pull from');
    const log = JSON.parse(asRoot('policy', 'log', '-o', 'json').stdout) as Array<{ subject: { uid: number; via: string }; action: string }>;
    const pulls = log.filter((d) => d.action === 'pull');
    assert.ok(pulls.length > 0, `a pull decision is logged: ${r.stderr}`);
    assert.deepEqual([pulls[0].subject.uid, pulls[0].subject.via], [uid, 'sudo'], 'the newest pull decision names the user, via sudo');
  });

  test('a pull under sudo that the policy denies asks the registry nothing: the decision comes first', async () => {
    const saved = host.exec(['cat', data]);
    let connections = 0;
    const registry = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
    const port = (registry.address() as AddressInfo).port;
    try {
      assert.equal(host.exec(['sh', '-c', `echo '{"grants": [{"name": "loaders", "groups": ["${name}"], "actions": ["load"]}]}' > ${data}`]).status, 0);
      const r = viaSudo(['pull', `127.0.0.1:${port}/sudo-test/denied:v1`]);
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr, /action "pull" is not granted/);
      // a connection made while bpfd ran waits in the listen queue until this loop runs again
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(connections, 0, 'no connection to the registry');
    } finally {
      registry.close();
      if (saved.status === 0) host.exec(['sh', '-c', `printf '%s' '${saved.stdout.trim()}' > ${data}`]);
      else host.exec(['rm', '-f', data]);
    }
  });

  test('their own policy data through the environment (sudo -E) is refused, naming the variable', () => {
    const mine = `/tmp/${name}-grants.json`;
    const r = viaSudo(load, { keepEnv: { BPFD_POLICY_DATA: mine, BPFD_STATE_DIR: '/tmp/elsewhere' } });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /refusing BPFD_POLICY_DATA, BPFD_STATE_DIR from the environment: under sudo bpfd judges the user who ran sudo/);
  });

  test('a policy data file others can write denies them, naming the file', () => {
    assert.equal(host.exec(['chmod', '0666', data]).status, 0);
    try {
      const r = viaSudo(load);
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr, /policy data \/etc\/bpfd\/policy-data\.json is writable by others \(mode 666\)\n {2}policy modules, data files and the directories above them must be owned by root/);
      assert.equal(JSON.parse(asRoot('list', '-o', 'json').stdout).length, 0, 'nothing was loaded');
    } finally {
      host.exec(['chmod', '0644', data]);
    }
  });
});
