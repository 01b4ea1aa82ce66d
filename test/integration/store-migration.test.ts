import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { open } from 'lmdb';
import { fixture, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';

const skip = needsRoot();

/**
 * Users upgrade bpfd with programs loaded. Schema version 1 (what bpfd wrote before issue #11)
 * keyed member images `image:<id>`; version 2 keys them `xdp-image:<id>`. The programs here are
 * loaded for real, then the store is put back into exactly the version-1 layout, as the earlier
 * bpfd left it; the upgraded bpfd must open, list, recompose (from the migrated images) and
 * unload them.
 */
describe('a store of schema version 1 is migrated on open', { skip }, () => {
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

  const raw = <T>(fn: (dbs: { meta: any; blobs: any }) => T): T => {
    const root = open({ path: env.env.BPFD_STATE_DIR!, maxDbs: 16, compression: false });
    try {
      return fn({ meta: root.openDB({ name: 'meta' }), blobs: root.openDB({ name: 'blobs', encoding: 'binary' }) });
    } finally {
      root.close();
    }
  };

  test('programs loaded before the upgrade list, recompose and unload after it', () => {
    const at = ['--iface', net.ifB, '--netns', net.nsPathB];
    const first = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', ...at, '--priority', '10', '-o', 'json');
    assert.equal(first.status, 0, first.stderr);
    const second = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', ...at, '--priority', '20', '-o', 'json');
    assert.equal(second.status, 0, second.stderr);
    const before = env.run('list', '-o', 'json').json();

    raw(({ meta, blobs }) => {
      for (const key of [...blobs.getKeys()].map(String).filter((k) => k.startsWith('xdp-image:'))) {
        blobs.putSync(`image:${key.slice('xdp-image:'.length)}`, blobs.get(key));
        blobs.removeSync(key);
      }
      meta.putSync('schema_version', 1);
    });
    assert.deepEqual(raw(({ blobs }) => [...blobs.getKeys()].map(String).sort()), [`image:${first.json().id}`, `image:${second.json().id}`].sort(), 'a version-1 store');

    const list = env.run('list', '-o', 'json');
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(list.json(), before, 'the upgraded bpfd lists the same programs');
    assert.equal(raw(({ meta }) => meta.get('schema_version')), 2, 'migrated on open');
    assert.deepEqual(raw(({ blobs }) => [...blobs.getKeys()].map(String).sort()), [`xdp-image:${first.json().id}`, `xdp-image:${second.json().id}`].sort());

    // Unloading the first recomposes the interface from the second's migrated image.
    const u = env.run('unload', String(first.json().id));
    assert.equal(u.status, 0, u.stderr);
    assert.ok(net.ping(), 'xdp_pass still runs and passes packets');
    const left = env.run('get', String(second.json().id), '-o', 'json');
    assert.equal(left.status, 0, left.stderr);
    assert.equal(left.json().links[0].position, 0);
    assert.equal(env.run('unload', String(second.json().id)).status, 0);
    assert.ok(progGone(first.json().id) && progGone(second.json().id), 'both are gone from the kernel');
    assert.deepEqual(env.pins(), [], 'no pins are left behind');
  });

  test('a store of a newer schema is refused, not rewritten', () => {
    raw(({ meta }) => meta.putSync('schema_version', 99));
    const r = env.run('list');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /has schema version 99, this bpfd understands 2/);
    raw(({ meta }) => meta.putSync('schema_version', 2));
  });
});
