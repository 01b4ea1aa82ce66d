import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BPFD, ROOT, fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();

// Every bpfd command is a process of its own, so what it loads is what it costs: node:crypto
// ~3 ms, perf_hooks ~1 ms, koffi and libbpf ~2 ms. These are loaded only by commands that need
// them, and a careless import or a `performance.now()` would bring them back unnoticed.
// Package names resolved at run time are recorded too: the build fixes the bundle's dependency
// paths (scripts/build.mjs), since resolving a name walks node_modules (~5 ms for the four).
const REPORT = `
  const Module = require('node:module');
  const resolved = [];
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    if (!/^(\\.|\\/|node:)/.test(request) && !Module.isBuiltin(request)) resolved.push(request);
    return resolve.call(this, request, ...rest);
  };
  process.on('exit', () => {
    const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
    const addons = Object.keys(require.cache).filter((f) => f.endsWith('.node')).map((f) => require('node:path').basename(f));
    require('node:fs').writeSync(2, '\\nloaded: ' + JSON.stringify({ builtins, addons, resolved }) + '\\n');
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

  interface Loaded {
    builtins: string[];
    addons: string[];
    resolved: string[];
    stdout: string;
  }

  function loaded(...args: string[]): Loaded {
    const r = env.run(...args);
    assert.equal(r.status, 0, `bpfd ${args.join(' ')}: ${r.stderr}`);
    const line = /\nloaded: (.*)\n/.exec(r.stderr);
    assert.ok(line, `no module report from bpfd ${args.join(' ')}: ${r.stderr}`);
    return { ...(JSON.parse(line[1]) as Omit<Loaded, 'stdout'>), stdout: r.stdout };
  }

  test('load and unload use OpenSSL through koffi, not node:crypto, and no perf_hooks', () => {
    const load = loaded('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json');
    assert.ok(load.addons.includes('koffi.node'), `load runs libbpf through koffi: ${load.addons}`);
    for (const m of ['crypto', 'perf_hooks']) assert.ok(!load.builtins.includes(m), `load loaded ${m}`);
    const unload = loaded('unload', String(JSON.parse(load.stdout).id));
    for (const m of ['crypto', 'perf_hooks']) assert.ok(!unload.builtins.includes(m), `unload loaded ${m}`);
    assert.deepEqual([...load.resolved, ...unload.resolved], [], 'load and unload resolve no package by name: the build fixed the paths');
  });

  // get asks the kernel for the program's live info and counters, through koffi; list does not.
  test('list answers from the store without koffi; neither list nor get loads node:crypto or perf_hooks', () => {
    const id = String(env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json').json().id);
    for (const args of [['list'], ['list', '-o', 'json'], ['get', id]]) {
      const r = loaded(...args);
      assert.ok(r.addons.some((a) => a.includes('glibc')), `${args.join(' ')} reads the store through lmdb's addon: ${r.addons}`);
      if (args[0] === 'list') assert.ok(!r.addons.includes('koffi.node'), `${args.join(' ')} loaded koffi`);
      for (const m of ['crypto', 'perf_hooks']) assert.ok(!r.builtins.includes(m), `${args.join(' ')} loaded ${m}`);
      assert.deepEqual(r.resolved, [], `${args.join(' ')} resolves no package by name`);
    }
  });

  // version asks the libbpf it would load for its version (issue #12), so koffi, but no store
  test('version reads no store: no lmdb, only koffi to ask libbpf its version', () => {
    const r = loaded('version');
    assert.deepEqual(r.addons, ['koffi.node']);
  });

  // Installed with another layout (node_modules hoisted two levels up, say), the fixed paths
  // miss and each shim resolves its package by name, as the packages themselves would.
  test('a bundle whose fixed paths miss finds its dependencies by name and still works', () => {
    const moved = path.join(dir, 'prefix', 'lib', 'bpfd', 'dist');
    mkdirSync(path.dirname(moved), { recursive: true });
    cpSync(path.dirname(BPFD), moved, { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'prefix', 'node_modules'));
    for (const args of [['list', '-o', 'json'], ['version']]) {
      const r = spawnSync(process.execPath, [path.join(moved, path.basename(BPFD)), ...args], { env: env.env, encoding: 'utf8' });
      assert.equal(r.status, 0, `moved bundle: bpfd ${args.join(' ')}: ${r.stderr}`);
      if (args[0] === 'list') {
        const ids = (out: string) => (JSON.parse(out) as Array<{ id: number }>).map((p) => p.id);
        assert.deepEqual(ids(r.stdout), ids(env.run('list', '-o', 'json').stdout), 'the moved bundle reads the same store');
        const report = JSON.parse(/\nloaded: (.*)\n/.exec(r.stderr)?.[1] ?? '{}') as { resolved?: string[] };
        assert.ok(report.resolved?.includes('ordered-binary'), `the moved bundle resolved its packages by name: ${JSON.stringify(report.resolved)}`);
      }
    }
  });
});
