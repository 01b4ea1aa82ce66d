import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';

// bookworm's libbpf 1.1.2, unpacked by scripts/setup.sh where only LD_LIBRARY_PATH finds it
const OLD_LIBBPF = '/opt/bpfd-test/libbpf-1.1/usr/lib/x86_64-linux-gnu';

describe('the libbpf bpfd loads', { skip: needsRoot() }, () => {
  let env: Env;
  let old: Env;
  before(() => {
    env = makeEnv();
    assert.ok(existsSync(`${OLD_LIBBPF}/libbpf.so.1`), `no libbpf 1.1 at ${OLD_LIBBPF}: run scripts/setup.sh`);
    old = makeEnv({ LD_LIBRARY_PATH: OLD_LIBBPF });
  });
  after(() => {
    env?.cleanup();
    old?.cleanup();
  });

  test('version shows it, as text and JSON', () => {
    const r = env.run('version');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^libbpf: 1\.([4-9]|\d\d+)$/m);
    const j = env.run('version', '-o', 'json').json();
    assert.equal(j.libbpf.supported, true);
    assert.match(j.libbpf.version, /^1\.([4-9]|\d\d+)$/);
  });

  test('an older libbpf is named by version and refused before it parses anything', () => {
    const v = old.run('version', '-o', 'json');
    assert.equal(v.status, 0, v.stderr);
    assert.deepEqual(v.json().libbpf, { version: '1.1', supported: false });
    assert.match(old.run('version').stdout, /^libbpf: 1\.1 \(unsupported: bpfd needs 1\.4 or newer\)$/m);
    const r = old.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass');
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /bpfd needs libbpf 1\.4 or newer, but the libbpf\.so\.1 this system loads is 1\.1/);
    assert.match(r.stderr, /apt-get install -t bookworm-backports libbpf1/);
    assert.doesNotMatch(r.stderr, /internal error/);
    assert.deepEqual(old.pins(), []);
    assert.deepEqual(old.run('list', '-o', 'json').json(), []);
  });
});
