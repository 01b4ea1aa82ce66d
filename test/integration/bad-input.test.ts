import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fixture, kernelProgIds, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
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
});
