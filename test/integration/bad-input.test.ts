import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { editProgramRecord } from '../helpers/store-edit.js';
import { fixture, kernelProgIds, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { newProgramsNamed } from '../helpers/kernel-leaks.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();

describe('bad input gets a clear error and leaves nothing behind', { skip }, () => {
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

  /** Runs a command that must fail and checks nothing changed in the kernel, the bpffs or the store. */
  function rejects(args: string[], status: number, message: RegExp) {
    const before = kernelProgIds();
    const r = env.run(...args);
    assert.equal(r.status, status, `exit status for: bpfd ${args.join(' ')}\nstderr: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /at .*\.m?js:\d+/, 'no stack trace');
    assert.doesNotMatch(r.stdout + r.stderr, /internal error/, 'no internal error');
    // Other suites load programs at the same time: a new program of the requested name is ours.
    // only commands given an object (--name) can load a program; the others are checked through pins and store
    if (args.includes('--name')) assert.deepEqual(newProgramsNamed(before, args[args.indexOf('--name') + 1], env.bpffs), [], 'no new program in the kernel');
    assert.deepEqual(env.pins(), [], 'no pins in the bpffs');
    assert.deepEqual(env.run('list', '-o', 'json').json(), [], 'no record in the store');
    assert.ok(net.ping(), 'traffic still flows');
    return r;
  }

  const load = (...extra: string[]) => ['load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', ...extra];
  const at = () => ['--iface', net.ifB, '--netns', net.nsPathB];

  test('a missing file', () => {
    rejects(['load', 'file', '--path', '/nonexistent/prog.o', '--name', 'x', ...at()], 2, /bytecode file \/nonexistent\/prog\.o does not exist/);
  });

  test('a file that is not a BPF ELF', () => {
    rejects(['load', 'file', '--path', '/bin/true', '--name', 'x', ...at()], 2, /\/bin\/true is not a BPF object file: ELF machine is 62, not BPF/);
    const txt = path.join(env.dir, 'notes.o');
    writeFileSync(txt, 'just text\n');
    rejects(['load', 'file', '--path', txt, '--name', 'x'], 2, /is not a BPF object file: no ELF header/);
  });

  test('a function that is not in the object', () => {
    const r = rejects(['load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_nope', ...at()], 2, /function xdp_nope is not a program in .*xdp_drop\.o/);
    assert.match(r.stderr, /programs in the object: xdp_drop \(section xdp\)/);
  });

  test('an interface that does not exist in that netns', () => {
    rejects(load('--iface', 'nosuch0', '--netns', net.nsPathB), 2, new RegExp(`interface nosuch0 does not exist in network namespace ${net.nsPathB}`));
    // the interface exists, but in the other namespace
    rejects(load('--iface', net.ifA, '--netns', net.nsPathB), 2, new RegExp(`interface ${net.ifA} does not exist`));
  });

  test('a netns that does not exist', () => {
    rejects(load('--iface', net.ifB, '--netns', '/var/run/netns/bpfd-no-such-ns'), 2, /network namespace \/var\/run\/netns\/bpfd-no-such-ns cannot be opened/);
  });

  test('a priority outside 0..1000', () => {
    rejects(load(...at(), '--priority', '1001'), 2, /--priority 1001 is out of range: give a whole number from 0 to 1000/);
    rejects(load(...at(), '--priority=-1'), 2, /--priority -1 is out of range/);
    rejects(load(...at(), '--priority', '-1'), 2, /Option '--priority' argument is ambiguous/);
    rejects(load(...at(), '--priority', 'high'), 2, /--priority high is out of range/);
  });

  test('an unknown proceed-on action', () => {
    const r = rejects(load(...at(), '--proceed-on', 'pass,teleport'), 2, /unknown --proceed-on action 'teleport'/);
    assert.match(r.stderr, /actions: aborted, drop, pass, tx, redirect, dispatcher_return/);
  });

  test('an unknown option and a bad --global', () => {
    rejects(load(...at(), '--priorty', '5'), 2, /Unknown option '--priorty'/);
    rejects(['load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--global', 'nosuch=01'], 2, /--global nosuch: no such global variable/);
    rejects(['load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--global', 'verdict=01'], 2, /the value has 1 bytes but verdict is 4 bytes/);
  });

  test('get, unload and detach of an unknown id: exit 4', () => {
    rejects(['get', '999999'], 4, /no program with id 999999/);
    rejects(['unload', '999999'], 4, /no program with id 999999/);
    rejects(['detach', '424242'], 4, /no link with id 424242/);
    rejects(['get', 'abc'], 2, /'abc' is not a valid id/);
  });

  test('a program the verifier rejects: exit 1 with the verifier\'s own words', () => {
    const r = rejects(['load', 'file', '--path', fixture('xdp_reject.o'), '--name', 'xdp_reject', ...at()], 1, /the kernel verifier rejected program xdp_reject/);
    assert.match(r.stderr, /invalid access to packet/);
  });

  test('not root: a clear message naming the missing privilege', () => {
    const r = env.runAs(65534, ...load(...at()));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /bpfd load needs root: .*CAP_BPF/);
  });

  // The other doors that take input (issue #12)
  const dataPath = () => env.env.BPFD_POLICY_DATA!;
  const loadCount = (...extra: string[]) => ['load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...extra];

  test('a policy data document that is garbled, deeply nested or 100 MB', () => {
    try {
      writeFileSync(dataPath(), '{"grants": [');
      rejects(loadCount(), 3, /policy data .* is not valid JSON/);
      writeFileSync(dataPath(), `{"grants": [], "x": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
      rejects(loadCount(), 3, /policy data .* is nested more than 64 levels deep/);
      writeFileSync(dataPath(), `{"grants": [], "pad": "${'x'.repeat(100 * 1024 * 1024)}"}`);
      rejects(loadCount(), 3, /policy data .* is 100\.0 MB, more than the 16 MB bpfd reads/);
    } finally {
      rmSync(dataPath(), { force: true });
    }
  });

  test('--global values of the wrong size or not hex', () => {
    rejects(loadCount('--global', 'verdict=0102'), 2, /--global verdict: the value has 2 bytes but verdict is 4 bytes/);
    rejects(loadCount('--global', `verdict=${'00'.repeat(4096)}`), 2, /the value has 4096 bytes but verdict is 4 bytes/);
    rejects(loadCount('--global', 'verdict=zz'), 2, /--global verdict=zz: the value must be hex bytes/);
    rejects(loadCount('--global', 'verdict=010'), 2, /the value must be hex bytes/);
  });

  test('metadata keys and values with control characters or too much text', () => {
    // argv cannot carry a NUL (execve ends strings there); the gRPC service will check the same
    rejects(loadCount('--metadata', 'team=a\u0001b'), 2, /--metadata team: the value "a\\u0001b" contains control characters/);
    rejects(loadCount('--metadata', 'team=line\nbreak'), 2, /contains control characters/);
    rejects(loadCount('--metadata', 'te\u001b[2Jam=x'), 2, /--metadata key .* is not a valid label key/);
    rejects(loadCount('--metadata', `team=${'v'.repeat(100_000)}`), 2, /--metadata team: the value is 100000 bytes, longer than 1024/);
    rejects(loadCount('--metadata', `${'k'.repeat(200)}=v`), 2, /--metadata key .* is 200 bytes, longer than 63/);
  });

  test('interface names with /, .. or 200 characters', () => {
    rejects(loadCount('--iface', 'a/b'), 2, /invalid interface name "a\/b": it contains "\/" or ":"/);
    rejects(loadCount('--iface', '..'), 2, /invalid interface name "\.\.": "\.\." names a directory, not an interface/);
    rejects(loadCount('--iface', 'e'.repeat(200)), 2, /invalid interface name ".*": it is 200 bytes; interface names have at most 15/);
  });

  test('a --netns that is a regular file, a directory, or the netns of a dead process', () => {
    const file = path.join(env.dir, 'not-a-netns');
    writeFileSync(file, '');
    rejects(loadCount('--iface', net.ifB, '--netns', file), 2, new RegExp(`${file} is not a network namespace`));
    rejects(loadCount('--iface', net.ifB, '--netns', env.dir), 2, new RegExp(`${env.dir} is not a network namespace`));
    const gone = spawnSync('unshare', ['-n', 'sh', '-c', 'echo $$']);
    const dead = `/proc/${String(gone.stdout).trim()}/ns/net`;
    rejects(loadCount('--iface', net.ifB, '--netns', dead), 2, new RegExp(`network namespace ${dead} cannot be opened: ENOENT`));
  });

  test('an object path that is a FIFO, a device or /proc/self/mem: refused at once, never read', () => {
    const fifo = path.join(env.dir, 'prog.fifo');
    spawnSync('mkfifo', [fifo]);
    rejects(['load', 'file', '--path', fifo, '--name', 'x'], 2, /bytecode path .*prog\.fifo is a FIFO \(named pipe\), not a BPF object file/);
    rejects(['load', 'file', '--path', '/dev/zero', '--name', 'x'], 2, /bytecode path \/dev\/zero is a character device, not a BPF object file/);
    rejects(['load', 'file', '--path', '/proc/self/mem', '--name', 'x'], 2, /\/proc\/self\/mem is not a BPF object file: no ELF header|cannot read bytecode file \/proc\/self\/mem: EIO/);
  });

  test('a store whose records were edited by hand', () => {
    const ok = env.run(...loadCount('-o', 'json'));
    assert.equal(ok.status, 0, ok.stderr);
    const id = ok.json().id as number;
    const edit = (patch: Record<string, unknown>) => editProgramRecord(env.env.BPFD_STATE_DIR!, id, (r) => ({ ...r, ...patch }));
    const original = edit({ name: 42 });
    try {
      for (const args of [['list'], ['get', String(id)], ['doctor']]) {
        const r = env.run(...args);
        assert.equal(r.status, 1, `bpfd ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`the store's record of program ${id} in .* is damaged or was edited by hand: name is 42, not a string`));
        assert.doesNotMatch(r.stderr, /internal error/);
      }
      edit({ name: original.name, owner: null });
      assert.match(env.run('list').stderr, /owner is null, not an owner \(uid, username\)/);
    } finally {
      editProgramRecord(env.env.BPFD_STATE_DIR!, id, () => original);
    }
    assert.equal(env.run('unload', String(id)).status, 0);
    assert.ok(progGone(id));
  });

  test('a store directory the caller may not read: names the missing privilege, suggests no recovery', () => {
    assert.equal(env.run('list').status, 0);
    chmodSync(env.dir, 0o755);
    const r = env.runAs(65534, 'list');
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /cannot open the bpfd store in .*: permission denied for uid 65534 \(owned by uid 0, mode 0700\)/);
    assert.match(r.stderr, /run the command with sudo/);
    assert.doesNotMatch(r.stderr, /to recover|move .* aside \(mv/, 'a permission problem never suggests moving the store aside');
    // real damage still does
    const damaged = makeEnv();
    try {
      mkdirSync(damaged.env.BPFD_STATE_DIR!, { recursive: true });
      writeFileSync(path.join(damaged.env.BPFD_STATE_DIR!, 'data.mdb'), Buffer.alloc(8192, 0x55));
      const d = damaged.run('list');
      assert.equal(d.status, 1);
      assert.match(d.stderr, /to recover: move .* aside/);
    } finally {
      damaged.cleanup();
    }
  });
});
