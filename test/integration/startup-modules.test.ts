import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();

// Every bpfd command is a process of its own, so what it loads is what it costs: lmdb and its
// addon, koffi with libbpf, the policy SDK. Each is loaded only by the commands that need it, and
// a careless static import would bring it into every command unnoticed. The executable says what
// it evaluated when BPFD_TRACE_MODULES is set (src/cli/entry.ts): every bundled module notes its
// name as it runs (scripts/compile.mjs), and the process's memory map shows the shared objects it
// loaded. Bun writes an embedded addon out under a name of its own before loading it, so an addon
// is recognised by its bytes, compared with the file in node_modules that the build embedded.
const ADDONS = {
  koffi: path.join(ROOT, 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node'),
  lmdb: path.join(ROOT, 'node_modules/@lmdb/lmdb-linux-x64/node.napi.glibc.node'),
};

interface Loaded {
  /** bundled modules evaluated, as `src/...` or `package:file` */
  modules: string[];
  /** which of ADDONS were mapped, and the basenames of the other shared objects */
  addons: string[];
  libraries: string[];
  stdout: string;
}

const sameBytes = (a: string, b: string) => statSync(a).size === statSync(b).size && readFileSync(a).equals(readFileSync(b));

describe('a command loads only the modules it needs, in the executable', { skip }, () => {
  let env: Env;
  let net: VethPair;
  before(() => {
    env = makeEnv({ BPFD_TRACE_MODULES: '1' });
    net = makeVethPair();
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
  });

  function loaded(...args: string[]): Loaded {
    const r = env.run(...args);
    assert.equal(r.status, 0, `bpfd ${args.join(' ')}: ${r.stderr}`);
    const line = /\nloaded: (.*)\n/.exec(r.stderr);
    assert.ok(line, `no module report from bpfd ${args.join(' ')}: ${r.stderr}`);
    const report = JSON.parse(line[1]) as { modules: string[]; mapped: string[] };
    const addons: string[] = [];
    const libraries: string[] = [];
    for (const file of report.mapped) {
      const addon = Object.entries(ADDONS).find(([, original]) => file.endsWith('.node') && sameBytes(file, original));
      if (addon) addons.push(addon[0]);
      else libraries.push(path.basename(file));
    }
    return { modules: report.modules, addons: addons.sort(), libraries, stdout: r.stdout };
  }
  const has = (l: Loaded, prefix: string) => l.modules.some((m) => m.startsWith(prefix));

  test('the trace sees the modules and addons a command really runs', () => {
    const r = loaded('list');
    assert.ok(has(r, 'src/cli/main.ts'), `the CLI itself is traced: ${r.modules.join(' ')}`);
    assert.ok(has(r, 'lmdb:'), 'list reads the store through lmdb');
    assert.deepEqual(r.addons, ['lmdb'], `list maps lmdb's addon, recognised by its bytes: ${r.libraries}`);
  });

  test('load and unload run libbpf through koffi; load consults the policy', () => {
    const load = loaded('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '--iface', net.ifB, '--netns', net.nsPathB, '-o', 'json');
    assert.deepEqual(load.addons, ['koffi', 'lmdb']);
    assert.ok(load.libraries.some((l) => l.startsWith('libbpf.so')), `load maps libbpf: ${load.libraries}`);
    assert.ok(has(load, '@open-policy-agent/opa-wasm:'), 'load evaluates the policy SDK');
    assert.ok(!has(load, 'yaml:'), "the policy SDK's yaml parser stays unloaded: no shipped rule calls a yaml builtin");
    const unload = loaded('unload', String(JSON.parse(load.stdout).id));
    assert.deepEqual(unload.addons, ['koffi', 'lmdb']);
    assert.ok(unload.libraries.some((l) => l.startsWith('libbpf.so')), `unload maps libbpf: ${unload.libraries}`);
  });

  // get asks the kernel for the program's live info and counters, through koffi; list does not.
  // Both take the store's open guard (a flock, src/state/env-guard.ts), through Bun's FFI.
  test('list answers from the store without koffi, libbpf or the policy; get adds koffi', () => {
    const id = String(env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json').json().id);
    for (const args of [['list'], ['list', '-o', 'json'], ['get', id]]) {
      const r = loaded(...args);
      const what = args.join(' ');
      assert.deepEqual(r.addons, args[0] === 'list' ? ['lmdb'] : ['koffi', 'lmdb'], what);
      assert.equal(has(r, 'koffi:'), args[0] === 'get', `${what}: koffi evaluated only by get`);
      assert.ok(has(r, 'src/base/file-lock.ts'), `${what}: the store's open guard`);
      assert.equal(has(r, 'src/loader/lib.ts'), args[0] === 'get', `${what}: the loader's native handles only in get`);
      assert.equal(r.libraries.some((l) => l.startsWith('libbpf.so')), args[0] === 'get', `${what}: libbpf only in get: ${r.libraries}`);
      assert.ok(!has(r, '@open-policy-agent/opa-wasm:'), `${what} evaluates no policy SDK`);
    }
  });

  // version asks the libbpf it would load for its version (issue #12): koffi and libbpf, but no store
  test('version reads no store: no lmdb, no policy SDK; only koffi, to ask libbpf its version', () => {
    const r = loaded('version');
    assert.deepEqual(r.addons, ['koffi']);
    for (const p of ['lmdb:', 'msgpackr:', '@open-policy-agent/opa-wasm:']) assert.ok(!has(r, p), `version evaluated ${p}`);
    assert.match(r.stdout, /policy sha256: [0-9a-f]{64}/);
    assert.match(r.stdout, /libbpf: 1\.\d+/);
  });
});
