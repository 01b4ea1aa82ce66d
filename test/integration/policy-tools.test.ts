import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import YAML from 'yaml';
import { sha256Hex } from '../../src/base/sha256.js';
import { fixture, makeEnv, needsRoot, ROOT, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

// The policy tools an administrator's CI job runs: as uid 65534 with no groups and no
// capabilities (setpriv), against the shipped executable. Root appears only to make the real
// requests they are compared with, and to run the module `policy build` made.
const skip = needsRoot();
const NOBODY = 65534;
const EXAMPLE = path.join(ROOT, 'policies', 'examples', 'ci');
const TEST_POLICIES = path.join(ROOT, 'test', 'fixtures', 'policies');

describe('policy eval, test, check and build, without root', { skip }, () => {
  let env: Env;
  let net: VethPair;
  /** a directory uid 65534 can read */
  let pub: string;
  /** a directory uid 65534 can write */
  let outDir: string;
  const writePub = (name: string, text: string) => {
    const file = path.join(pub, name);
    writeFileSync(file, text);
    chmodSync(file, 0o644);
    return file;
  };
  const nobody = (...args: string[]) => env.runUnprivileged(NOBODY, ...args);

  before(() => {
    env = makeEnv();
    // uid 65534 reads the env's data document, as a CI job reads its checkout
    chmodSync(env.dir, 0o755);
    pub = mkdtempSync(path.join(os.tmpdir(), 'bpfd-policy-tools-'));
    chmodSync(pub, 0o755);
    outDir = path.join(pub, 'out');
    mkdirSync(outDir);
    chownSync(outDir, NOBODY, NOBODY);
    net = makeVethPair();
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
    if (pub) rmSync(pub, { recursive: true, force: true });
  });

  test('policy eval --object gives the decision, the reasons and the very input a real load got', () => {
    const doc = JSON.stringify({
      reserved_priorities: [{ min: 0, max: 9, applications: ['firewall'], description: 'early drop' }],
      ordering: [{ before: 'firewall', after: 'monitoring' }],
    });
    writeFileSync(env.env.BPFD_POLICY_DATA!, doc);
    const data = writePub('data.json', doc);
    const where = ['--iface', net.ifB, '--netns', net.nsPathB];
    const requests = [
      { obj: 'xdp_pass', app: 'firewall', priority: '5', allow: true },
      // monitoring before the firewall, in its band: denied twice over
      { obj: 'xdp_count', app: 'monitoring', priority: '3', allow: false },
      { obj: 'xdp_count', app: 'monitoring', priority: '20', allow: true },
    ];
    for (const q of requests) {
      // what is on the interface, saved from the host as an administrator would
      const existing = writePub(`list-${q.priority}.json`, env.run('list', '-o', 'json').stdout);
      const flags = ['--name', q.obj, ...where, '--priority', q.priority, '--application', q.app];
      const load = env.run('load', 'file', '--path', fixture(`${q.obj}.o`), ...flags);
      assert.equal(load.status, q.allow ? 0 : 3, load.stderr);
      const entry = env.run('policy', 'log', '--limit', '1', '-o', 'json').json()[0];
      assert.equal(entry.allow, q.allow);

      const ev = nobody('policy', 'eval', '--object', fixture(`${q.obj}.o`), ...flags, '--as', '0', '--existing', existing, '--data', data, '--explain', '-o', 'json');
      assert.equal(ev.status, q.allow ? 0 : 3, ev.stderr);
      const out = ev.json();
      assert.equal(out.allow, entry.allow);
      assert.deepEqual(out.reasons, entry.reasons);
      // byte for byte the input the load was decided on, but for the process id
      const input = { ...out.input, subject: { ...out.input.subject, pid: entry.subject.pid } };
      assert.equal(sha256Hex(JSON.stringify(input)), entry.input_sha256, `input evaluated: ${JSON.stringify(input)}`);
      if (!q.allow) assert.match(ev.json().reasons.join('\n'), /must run before "monitoring"/);
    }
    assert.deepEqual(env.run('list', '-o', 'json').json().map((p: { name: string }) => p.name), ['xdp_pass', 'xdp_count']);
    // the text form: the decision, its reasons, and with --explain the input
    const text = nobody('policy', 'eval', '--object', fixture('xdp_count.o'), '--name', 'xdp_count', ...where, '--priority', '3', '--application', 'monitoring', '--as', '0', '--data', data, '--explain');
    assert.equal(text.status, 3, text.stderr);
    assert.match(text.stdout, /^Decision: deny\n/);
    assert.match(text.stdout, /priority 3 is in the band 0\.\.9 reserved for application "firewall" \(early drop\)/);
    assert.match(text.stdout, /Input:\n\{\n {2}"subject"/);
  });

  test('policy eval: --as and --group stand in for the caller; bad requests say what to fix', () => {
    const data = writePub('grants.json', JSON.stringify({ grants: [{ name: 'netops', groups: ['netops'], interfaces: ['eth*'] }] }));
    const ask = (...more: string[]) => nobody('policy', 'eval', '--object', fixture('xdp_count.o'), '--name', 'xdp_count', '--data', data, '--iface', 'eth0', ...more, '-o', 'json');
    const me = ask();
    assert.equal(me.status, 3, me.stderr);
    assert.match(me.json().reasons[0], /^uid 65534 \(nobody\) has no grant/, 'without --as, the caller is whoever runs it');
    const alice = ask('--as', 'alice:1001', '--group', 'netops', '--explain');
    assert.equal(alice.status, 0, alice.stderr);
    assert.deepEqual(alice.json().reasons, ['allowed by grant "netops"']);
    // gid 1001 by its name where this machine has one, as a real request would see it
    const gid1001 = spawnSync('getent', ['group', '1001'], { encoding: 'utf8' }).stdout.split(':')[0] || '1001';
    assert.deepEqual(alice.json().input.subject.groups, [gid1001, 'netops']);
    assert.equal(alice.json().input.subject.username, 'alice');

    const cases: Array<[string[], RegExp]> = [
      [['--as', 'no-such-user-here'], /--as no-such-user-here: no such user on this machine[\s\S]*--as no-such-user-here:1001/],
      [['--name', 'nope'], /function nope is not a program in .*xdp_count\.o/],
      [['--priority', '5000'], /--priority 5000 is out of range/],
      [['--action', 'reload'], /--action reload: give one of load, attach, detach, unload, pull/],
      [['--input', data], /--input is the whole input: leave out --object, --name, --iface/],
    ];
    for (const [more, message] of cases) {
      const r = ask(...more);
      assert.equal(r.status, 2, `${more.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    const missing = nobody('policy', 'eval', '--object', path.join(pub, 'absent.o'), '--name', 'x');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--object: .*absent\.o does not exist/);
    assert.doesNotMatch(missing.stderr, /--path/);
  });

  test('policy test passes on the example, and names expected against got when an expectation changes', () => {
    const ok = nobody('policy', 'test', path.join(EXAMPLE, 'cases.yaml'));
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /ok {4}contractors may not load code that calls bpf_redirect/);
    assert.match(ok.stdout, /9 cases, 9 hold, 0 do not\n$/);

    // the example with one expectation turned around, written elsewhere with its paths made absolute
    const doc = YAML.parse(readFileSync(path.join(EXAMPLE, 'cases.yaml'), 'utf8'));
    doc.data = path.join(EXAMPLE, doc.data);
    for (const c of doc.cases) {
      for (const k of ['object', 'existing']) if (c.request[k]) c.request[k] = path.join(EXAMPLE, c.request[k]);
    }
    const changed = doc.cases.find((c: { name: string }) => c.name === 'contractors may not attach to eth0');
    changed.expect = { allow: true };
    const file = writePub('changed.json', JSON.stringify(doc));
    const bad = nobody('policy', 'test', file);
    assert.equal(bad.status, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /FAIL {2}contractors may not attach to eth0\n {6}expected: allow\n {6}got: {6}deny\n {8}grant "contractors": interface "eth0" is not granted \(granted: veth\*\)\n/);
    assert.match(bad.stdout, /9 cases, 8 hold, 1 does not\n$/);
    const tap = nobody('policy', 'test', file, '-o', 'tap');
    assert.equal(tap.status, 1);
    assert.match(tap.stdout, /^TAP version 13\n1\.\.9\n/);
    assert.match(tap.stdout, /\nnot ok 8 - contractors may not attach to eth0\n {2}---\n {2}message: "expected allow, got deny"/);
    const json = nobody('policy', 'test', file, '-o', 'json');
    assert.equal(json.status, 1);
    const failed = json.json().cases.filter((c: { ok: boolean }) => !c.ok);
    assert.deepEqual(failed.map((c: { name: string; got: { allow: boolean } }) => [c.name, c.got.allow]), [['contractors may not attach to eth0', false]]);
  });

  test('policy test: a malformed cases file exits 2, naming the case and the field', () => {
    const obj = fixture('xdp_pass.o');
    const files: Array<[string, string, RegExp]> = [
      ['no-name.yaml', `cases:\n  - request: {object: ${obj}, name: xdp_pass}\n    expect: {allow: true}\n`, /case 1: name: give each case a name/],
      ['typo.yaml', `cases:\n  - name: typo\n    request: {object: ${obj}, name: xdp_pass, proceed_on: pass}\n    expect: {allow: true}\n`, /case "typo": request\.proceed_on: unknown field/],
      ['allow.json', JSON.stringify([{ name: 'yes', request: { object: obj, name: 'xdp_pass' }, expect: { allow: 'yes' } }]), /case "yes": expect\.allow: give true or false, got "yes"/],
      ['object.yaml', 'cases:\n  - name: gone\n    request: {object: gone.o, name: x}\n    expect: {allow: true}\n', /case "gone": request\.object: .*gone\.o does not exist/],
      ['priority.yaml', `cases:\n  - name: high\n    request: {object: ${obj}, name: xdp_pass, iface: eth0, priority: 5000}\n    expect: {allow: true}\n`, /case "high": request\.priority 5000 is out of range/],
      ['broken.yaml', 'cases: [\n', /is not valid YAML/],
      ['cases.txt', '[]', /name it \.json, \.yaml or \.yml/],
    ];
    for (const [name, text, message] of files) {
      const r = nobody('policy', 'test', writePub(name, text));
      assert.equal(r.status, 2, `${name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message, name);
      assert.equal(r.stdout, '', `${name}: nothing evaluated`);
    }
  });

  test('policy check accepts the shipped module and refuses a corrupt one, one needing sprintf, one of the wrong shape', () => {
    const ok = nobody('policy', 'check', '-o', 'json');
    assert.equal(ok.status, 0, ok.stderr);
    const report = ok.json();
    assert.equal(report.ok, true);
    assert.equal(report.entrypoint, 'bpfd/authz/decision');
    assert.equal(report.budget, 'built in');
    assert.deepEqual(report.builtins, []);
    assert.deepEqual(report.smoke.map((s: { allow: boolean }) => s.allow), [true, false]);
    const text = nobody('policy', 'check', path.join(ROOT, 'wasm', 'bpfd.wasm'));
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /ok: bpfd will accept this module\n$/);

    const shipped = readFileSync(path.join(ROOT, 'wasm', 'bpfd.wasm'));
    const corrupt = path.join(pub, 'corrupt.wasm');
    writeFileSync(corrupt, shipped.subarray(0, shipped.length / 2));
    chmodSync(corrupt, 0o644);
    const refused: Array<[string, RegExp]> = [
      [corrupt, /corrupt\.wasm is not a valid WebAssembly module/],
      [path.join(TEST_POLICIES, 'needs-sprintf.wasm'), /needs builtins bpfd does not provide: sprintf/],
      [path.join(TEST_POLICIES, 'malformed.wasm'), /policy result is malformed: expected \{"allow": boolean, "reasons": \[string\]\}, got \{"allow":"yes"/],
      [path.join(TEST_POLICIES, 'undefined.wasm'), /policy result is undefined/],
      [path.join(pub, 'absent.wasm'), /cannot be read: the file does not exist/],
    ];
    for (const [file, message] of refused) {
      const r = nobody('policy', 'check', file);
      assert.equal(r.status, 1, `${file}: ${r.stdout}${r.stderr}`);
      assert.ok(r.stderr.startsWith(`bpfd: policy check: ${file}: not usable: `), r.stderr);
      assert.match(r.stderr, message);
      const j = nobody('policy', 'check', file, '-o', 'json');
      assert.equal(j.status, 1);
      assert.equal(j.json().ok, false);
      assert.match(j.json().problem, message);
    }
  });

  test('policy build makes a module of custom Rego that then decides a real load; without opa it says how to get it', () => {
    const rego = writePub('allowlist.rego', [
      'package mycorp.bpf',
      '',
      'import rego.v1',
      '',
      'default allow := false',
      '',
      'allow if input.program.name in data.allowed_programs',
      '',
      'decision := {"allow": allow, "reasons": [concat("", ["program ", input.program.name, verdict])]}',
      '',
      'verdict := " is on the allow list" if allow',
      '',
      'else := " is not on the allow list"',
      '',
    ].join('\n'));
    const found = spawnSync('sh', ['-c', 'command -v opa || echo "$HOME/go/bin/opa"'], { encoding: 'utf8' }).stdout.trim();
    // uid 65534 cannot reach root's ~/go/bin: give it the same binary where it can
    const opa = path.join(pub, 'opa');
    try {
      linkSync(found, opa);
    } catch {
      copyFileSync(found, opa);
    }
    chmodSync(opa, 0o755);
    const out = path.join(outDir, 'allowlist.wasm');
    const builder = makeEnv({ OPA: opa });
    try {
      const denied = builder.runUnprivileged(NOBODY, 'policy', 'build', rego, '-o', path.join(pub, 'not-writable.wasm'));
      assert.equal(denied.status, 1);
      assert.match(denied.stderr, /^bpfd: cannot write .*not-writable\.wasm: permission denied\n/);
      const built = builder.runUnprivileged(NOBODY, 'policy', 'build', rego, '-o', out);
      assert.equal(built.status, 0, built.stderr);
      assert.match(built.stdout, /^built .*allowlist\.wasm \(\d+ bytes, entrypoint mycorp\/bpf\/decision, sha256 [0-9a-f]{64}\) from .*allowlist\.rego\n$/);
      const allowData = writePub('allowlist-data.json', JSON.stringify({ allowed_programs: ['xdp_pass'] }));
      const checked = builder.runUnprivileged(NOBODY, 'policy', 'check', out, '--data', allowData, '-o', 'json');
      assert.equal(checked.status, 0, checked.stderr);
      assert.equal(checked.json().budget, 'built in', 'the budget is in the module, not added at every start');

      // Rego that needs a builtin bpfd does not provide is refused at build time, naming the file
      const bad = writePub('fmt.rego', 'package fmt\n\nimport rego.v1\n\ndecision := {"allow": true, "reasons": [sprintf("%d", [input.subject.uid])]}\n');
      const refused = builder.runUnprivileged(NOBODY, 'policy', 'build', bad, '-o', path.join(outDir, 'fmt.wasm'));
      assert.equal(refused.status, 2, refused.stdout + refused.stderr);
      assert.match(refused.stderr, /opa build failed for entrypoint fmt\/decision[\s\S]*fmt\.rego:5[\s\S]*sprintf/);
    } finally {
      builder.cleanup();
      rmSync(opa, { force: true });
    }

    // the module decides a real load
    const decided = makeEnv({ BPFD_POLICY: out });
    try {
      writeFileSync(decided.env.BPFD_POLICY_DATA!, JSON.stringify({ allowed_programs: ['xdp_pass'] }));
      const yes = decided.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
      assert.equal(yes.status, 0, yes.stderr);
      const no = decided.run('load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop');
      assert.equal(no.status, 3, no.stderr);
      assert.match(no.stderr, /denied by policy[\s\S]*program xdp_drop is not on the allow list/);
      assert.deepEqual(decided.run('list', '-o', 'json').json().map((p: { name: string }) => p.name), ['xdp_pass']);
      const log = decided.run('policy', 'log', '-o', 'json').json();
      assert.deepEqual(log.map((e: { allow: boolean; reasons: string[] }) => [e.allow, e.reasons]), [
        [false, ['program xdp_drop is not on the allow list']],
        [true, ['program xdp_pass is on the allow list']],
      ]);
    } finally {
      decided.cleanup();
    }

    // no opa anywhere: a clear message, exit 1, nothing written
    const bare = makeEnv({ PATH: '/usr/bin:/bin', HOME: pub, OPA: undefined });
    try {
      const r = bare.runUnprivileged(NOBODY, 'policy', 'build', rego, '-o', path.join(outDir, 'never.wasm'));
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /opa is not on PATH[\s\S]*go install github\.com\/open-policy-agent\/opa@v1\.22\.0/);
      assert.equal(spawnSync('test', ['-e', path.join(outDir, 'never.wasm')]).status, 1);
    } finally {
      bare.cleanup();
    }
  });

  test('policy capabilities prints the file bpfd builds with', () => {
    const r = nobody('policy', 'capabilities');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, readFileSync(path.join(ROOT, 'policies', 'capabilities.json'), 'utf8'));
  });
});
