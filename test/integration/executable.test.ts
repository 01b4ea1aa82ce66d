import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BPFD, ROOT, fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();
const shippedSha = createHash('sha256').update(readFileSync(path.join(ROOT, 'wasm', 'bpfd.wasm'))).digest('hex');

// bpfd ships as one file (npm run build: dist/bpfd). Copied anywhere, it must need nothing of the
// checkout: not node, not node_modules, not wasm/. The copy runs in a mount namespace of its own
// in which the checkout is covered by an empty tmpfs, with a PATH that holds only its own
// directory, so any file it reached for there, or a node it tried to start, would fail the test.
describe('the executable runs alone, copied away from the checkout', { skip }, () => {
  let env: Env;
  let net: VethPair;
  let dir: string;
  let copy: string;
  let object: string;
  before(() => {
    env = makeEnv();
    net = makeVethPair();
    dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-alone-'));
    copy = path.join(dir, 'bpfd');
    copyFileSync(BPFD, copy);
    object = path.join(dir, 'xdp_drop.o');
    copyFileSync(fixture('xdp_drop.o'), object);
    // bpfd mounts its bpffs on its first change: make one here, in the host's mount namespace, so
    // that the pins the hidden runs make outlive their private namespace.
    const first = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
    assert.equal(first.status, 0, first.stderr);
    assert.equal(env.run('unload', String(first.json().id)).status, 0);
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // The policy built into the copy decides unless a test names one: makeEnv's BPFD_POLICY is the
  // checkout's wasm/, which is hidden here.
  let policyOverride: string | undefined;
  const alone = (...args: string[]) => {
    const hide = `/usr/bin/mount -t tmpfs bpfd-hidden "${ROOT}" && cd "${dir}" && exec "${copy}" "$@"`;
    const r = spawnSync('/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', hide, 'bpfd', ...args], {
      env: { ...env.env, BPFD_POLICY: policyOverride, PATH: dir },
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  test('no node can be found on its PATH, and the checkout is hidden from it', () => {
    const r = spawnSync('/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', `/usr/bin/mount -t tmpfs x "${ROOT}" && /usr/bin/ls -A "${ROOT}" && command -v node`], {
      env: { ...env.env, PATH: dir },
      encoding: 'utf8',
    });
    assert.equal(r.stdout, '', 'an empty checkout, no node');
    assert.notEqual(r.status, 0);
  });

  test('version names the policy built into it, with its sha256', () => {
    const r = alone('version', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const v = JSON.parse(r.stdout);
    assert.equal(v.policy.sha256, shippedSha, 'the shipped wasm/bpfd.wasm, byte for byte');
    assert.equal(v.policy.path, `built into ${copy}`);
    assert.match(alone('version').stdout, new RegExp(`policy sha256: ${shippedSha}`));
  });

  test('load drops pings on a veth in a netns, unload lets them pass again', () => {
    assert.ok(net.ping(), 'traffic flows before');
    const load = alone('load', 'file', '--path', object, '--name', 'xdp_drop', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json');
    assert.equal(load.status, 0, load.stderr);
    const id = String(JSON.parse(load.stdout).id);
    assert.equal(net.ping(), false, 'the drop program runs');
    const listed = alone('list', '-o', 'json');
    assert.equal(listed.status, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as Array<{ id: number }>).map((p) => String(p.id)), [id]);
    const unload = alone('unload', id);
    assert.equal(unload.status, 0, unload.stderr);
    assert.ok(net.ping(), 'traffic flows after unload');
    assert.deepEqual(env.pins(), []);
  });

  test('BPFD_POLICY still overrides the built-in policy', () => {
    const other = path.join(ROOT, 'test', 'fixtures', 'policies', 'undefined.wasm');
    const custom = path.join(dir, 'custom.wasm');
    copyFileSync(other, custom);
    const r = alone('version', '-o', 'json');
    assert.equal(JSON.parse(r.stdout).policy.sha256, shippedSha);
    policyOverride = custom;
    try {
      const o = JSON.parse(alone('version', '-o', 'json').stdout);
      assert.equal(o.policy.path, custom);
      assert.equal(o.policy.sha256, createHash('sha256').update(readFileSync(custom)).digest('hex'));
    } finally {
      policyOverride = undefined;
    }
  });
});

describe('the executable as a command', () => {
  test('is one file of its own, and bin/bpfd is it', () => {
    assert.ok(statSync(BPFD).mode & 0o111, 'executable');
    assert.equal(readFileSync(BPFD).subarray(0, 4).toString('latin1'), '\x7fELF');
    assert.equal(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).bin.bpfd, 'bin/bpfd');
    assert.equal(statSync(path.join(ROOT, 'bin', 'bpfd')).ino, statSync(BPFD).ino, 'bin/bpfd leads to dist/bpfd');
  });

  test('exit codes: 0 done, 2 bad usage, 4 not found', { skip }, () => {
    const env = makeEnv();
    try {
      assert.equal(env.run('list').status, 0);
      const unknown = env.run('frobnicate');
      assert.equal(unknown.status, 2);
      assert.match(unknown.stderr, /^bpfd: Unknown command frobnicate \(see: bpfd --help\)\n$/, 'no colour codes in a message to a pipe');
      assert.equal(env.run('list', '--no-such-flag').status, 2);
      assert.equal(env.run().status, 2, 'no command: the help, and exit 2');
      const missing = env.run('get', '4000000000');
      assert.equal(missing.status, 4, missing.stderr);
    } finally {
      env.cleanup();
    }
  });

  test('a closed pipe is not an error: `bpfd list | head -0` exits 0 and says nothing', { skip }, () => {
    const env = makeEnv();
    try {
      for (let i = 0; i < 3; i++) assert.equal(env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass').status, 0);
      const r = spawnSync('bash', ['-c', `set -o pipefail; for i in 1 2 3 4 5; do "${BPFD}" list -o json | head -0 || exit $?; done`], { env: env.env, encoding: 'utf8' });
      assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
      assert.equal(r.stderr, '');
    } finally {
      env.cleanup();
    }
  });

  test('pull --help and load image --help name the layer cap and the variable that raises it', () => {
    for (const c of [['pull'], ['load', 'image']]) {
      const r = spawnSync(BPFD, [...c, '--help'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const text = r.stdout.replace(/\s+/g, ' ');
      assert.match(text, /16 MiB/, `bpfd ${c.join(' ')} --help: the cap`);
      assert.match(text, /BPFD_MAX_LAYER_BYTES/, `bpfd ${c.join(' ')} --help: the variable`);
    }
  });

  test('--help fits the terminal: 80 columns into a pipe, the width of a real terminal otherwise', () => {
    const commands = [[], ['load'], ['load', 'file'], ['attach'], ['list'], ['doctor'], ['policy'], ['system']];
    for (const c of commands) {
      const r = spawnSync(BPFD, [...c, '--help'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^Usage: bpfd/m);
      const widest = Math.max(...r.stdout.split('\n').map((l) => [...l].length));
      assert.ok(widest <= 80, `bpfd ${c.join(' ')} --help into a pipe: a line of ${widest} columns`);
      assert.doesNotMatch(r.stdout, /\x1b\[/, 'no colour codes into a pipe');
    }
    // a pseudo-terminal 60 columns wide (script(1) gives bpfd one)
    const tty = spawnSync('script', ['-qec', `stty cols 60 rows 40; "${BPFD}" load file --help`, '/dev/null'], { encoding: 'utf8' });
    assert.equal(tty.status, 0, tty.stderr);
    const lines = tty.stdout.split(/\r?\n/);
    assert.ok(lines.some((l) => l.includes('--proceed-on')), tty.stdout);
    const widest = Math.max(...lines.map((l) => [...l].length));
    assert.ok(widest <= 60, `in a 60-column terminal: a line of ${widest} columns`);
    assert.ok(widest > 50, 'and the width is used');
  });
});

// The verifier gives up with EAGAIN when a signal is pending for the loading thread, so loads run
// with signals held back (src/loader/lib.ts). strace shows what the executable really does: the
// mask its main thread sets around every BPF_PROG_LOAD, libbpf's own probes included.
describe('program loads run with signals held back, in the executable', { skip }, () => {
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

  test('every BPF_PROG_LOAD of the main thread runs with all signals blocked but KILL, STOP and SIGPWR', () => {
    const trace = path.join(env.dir, 'strace.txt');
    const r = spawnSync(
      'strace',
      ['-f', '-e', 'trace=rt_sigprocmask,bpf', '-o', trace, BPFD, 'load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json'],
      { env: env.env, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(net.ping(), false, 'the drop program runs');
    const lines = readFileSync(trace, 'utf8').split('\n').filter(Boolean);
    const main = lines[0].split(/\s+/)[0];
    let blocked: string | null = null;
    let loads = 0;
    const masks = new Set<string>();
    for (const line of lines) {
      const [pid, ...rest] = line.split(/\s+/);
      if (pid !== main) continue;
      const call = rest.join(' ');
      const block = /^rt_sigprocmask\(SIG_BLOCK, ~\[([^\]]*)\]/.exec(call);
      if (block) {
        // glibc keeps its own RTMIN and RT_1; KILL and STOP cannot be blocked at all
        const open = block[1].split(' ').filter((s) => s && !['RTMIN', 'RT_1', 'KILL', 'STOP'].includes(s));
        if (open.length <= 1) blocked = open.join(' ');
      } else if (/^rt_sigprocmask\(SIG_SETMASK, \[\]/.test(call)) blocked = null;
      if (call.startsWith('bpf(BPF_PROG_LOAD')) {
        loads++;
        assert.ok(blocked !== null, `a program load with signals deliverable: ${call.slice(0, 120)}`);
        masks.add(blocked);
      }
    }
    assert.ok(loads >= 2, `the program and its dispatcher were loaded (${loads} loads seen)`);
    // only SIGPWR, JavaScriptCore's: its thread suspension must not wait for a load (src/loader/lib.ts)
    assert.deepEqual([...masks], ['PWR']);
    assert.equal(env.run('unload', String(JSON.parse(r.stdout).id)).status, 0);
    // The drop program dropped the ARP requests of the ping above too (no ping came before it):
    // the neighbour entry waits for the kernel's next ARP probe, up to a second away. One packet
    // with a one-second wait failed ~1 run in 4, with the binaries of before and after this note.
    assert.ok(net.ping(3, 2), 'traffic flows after unload');
  });
});
