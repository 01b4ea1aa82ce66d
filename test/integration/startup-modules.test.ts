import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();

// Every bpfd command is a process of its own, so what it loads is what it costs: node:crypto
// ~3 ms, perf_hooks ~1 ms, koffi and libbpf ~2 ms. These are loaded only by commands that need
// them, and a careless import or a `performance.now()` would bring them back unnoticed.
const REPORT = `
  process.on('exit', () => {
    const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
    const addons = Object.keys(require.cache).filter((f) => f.endsWith('.node')).map((f) => require('node:path').basename(f));
    require('node:fs').writeSync(2, '\\nloaded: ' + JSON.stringify({ builtins, addons }) + '\\n');
  });`;

describe('a command loads only the modules it needs', { skip }, () => {
  let env: Env;
  let net: VethPair;
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-modules-'));
    writeFileSync(path.join(dir, 'report.cjs'), REPORT);
    env = makeEnv({ NODE_OPTIONS: `--require=${path.join(dir, 'report.cjs')}` });
    net = makeVethPair();
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function loaded(...args: string[]): { builtins: string[]; addons: string[]; stdout: string } {
    const r = env.run(...args);
    assert.equal(r.status, 0, `bpfd ${args.join(' ')}: ${r.stderr}`);
    const line = /\nloaded: (.*)\n/.exec(r.stderr);
    assert.ok(line, `no module report from bpfd ${args.join(' ')}: ${r.stderr}`);
    return { ...(JSON.parse(line[1]) as { builtins: string[]; addons: string[] }), stdout: r.stdout };
  }

  test('load and unload use OpenSSL through koffi, not node:crypto, and no perf_hooks', () => {
    const load = loaded('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json');
    assert.ok(load.addons.includes('koffi.node'), `load runs libbpf through koffi: ${load.addons}`);
    for (const m of ['crypto', 'perf_hooks']) assert.ok(!load.builtins.includes(m), `load loaded ${m}`);
    const unload = loaded('unload', String(JSON.parse(load.stdout).id));
    for (const m of ['crypto', 'perf_hooks']) assert.ok(!unload.builtins.includes(m), `unload loaded ${m}`);
  });

  // get asks the kernel for the program's live info and counters, through koffi; list does not.
  test('list answers from the store without koffi; neither list nor get loads node:crypto or perf_hooks', () => {
    const id = String(env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json').json().id);
    for (const args of [['list'], ['list', '-o', 'json'], ['get', id]]) {
      const r = loaded(...args);
      assert.ok(r.addons.some((a) => a.includes('glibc')), `${args.join(' ')} reads the store through lmdb's addon: ${r.addons}`);
      if (args[0] === 'list') assert.ok(!r.addons.includes('koffi.node'), `${args.join(' ')} loaded koffi`);
      for (const m of ['crypto', 'perf_hooks']) assert.ok(!r.builtins.includes(m), `${args.join(' ')} loaded ${m}`);
    }
  });

  test('version reads no store: neither lmdb nor koffi', () => {
    const r = loaded('version');
    assert.deepEqual(r.addons, []);
  });
});
