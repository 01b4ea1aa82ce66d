import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { open } from 'lmdb';
import { bpftool, fixture, makeEnv, needsRoot, progGone, ROOT, type Env } from '../helpers/bpfd.js';
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

  const raw = <T>(fn: (dbs: { meta: any; blobs: any }) => T): T => rawStore(env, fn);

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

/** The store of an env opened with lmdb directly, below bpfd: its meta and blobs databases. */
function rawStore<T>(env: Env, fn: (dbs: { meta: any; blobs: any }) => T): T {
  const root = open({ path: env.env.BPFD_STATE_DIR!, maxDbs: 16, compression: false });
  try {
    return fn({ meta: root.openDB({ name: 'meta' }), blobs: root.openDB({ name: 'blobs', encoding: 'binary' }) });
  } finally {
    root.close();
  }
}

/**
 * test/fixtures/store-schema1: a store written by the bpfd of commit e88fdbf (schema 1), built and
 * run for the purpose (its README says how). Its programs went with their bpffs, as in a reboot:
 * pins cannot be part of a fixture. Today's executable opens it in the boot it was written in
 * (the kernel no longer has its programs) and in a later one (the persisted ones wait).
 */
describe('a store written by the schema-1 bpfd opens with today\'s', { skip }, () => {
  const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'store-schema1');
  const FIXTURE_BOOT = '5c4e0a3e-0000-4000-8000-5c4e3a1f1e01';
  const expected = (name: string) => JSON.parse(readFileSync(path.join(FIXTURE, 'expected', name), 'utf8'));
  const oldList = expected('list.json') as Array<{ id: number; name: string; metadata: Record<string, string>; bytecode: unknown; links: Array<Record<string, unknown>> }>;
  const oldLog = expected('policy-log.json') as Array<Record<string, unknown>>;
  const decided = (log: Array<Record<string, unknown>>) => log.map((d) => ({ seq: d.seq, time: d.time, subject: d.subject, action: d.action, input_sha256: d.input_sha256, allow: d.allow, reasons: d.reasons, policy_sha256: d.policy_sha256 }));
  let env: Env;
  let net: VethPair | undefined;
  const fromFixture = (bootId: string) => {
    env = makeEnv({ BPFD_BOOT_ID: bootId });
    mkdirSync(env.env.BPFD_STATE_DIR!, { recursive: true });
    copyFileSync(path.join(FIXTURE, 'store', 'data.mdb'), path.join(env.env.BPFD_STATE_DIR!, 'data.mdb'));
    assert.equal(rawStore(env, ({ meta }) => meta.get('schema_version')), 1, 'the fixture is a schema-1 store');
    assert.deepEqual(rawStore(env, ({ blobs }) => [...blobs.getKeys()].map(String).filter((k) => k.startsWith('image:')).sort()), oldList.map((p) => `image:${p.id}`).sort(), 'with the member images under their schema-1 keys');
  };
  afterEach(() => {
    env?.cleanup();
    net?.cleanup();
    net = undefined;
  });

  test('in the boot it was written in: lists nothing (the kernel lost the programs), keeps the decision log, and new loads work', () => {
    fromFixture(FIXTURE_BOOT);
    const list = env.run('list', '-o', 'json');
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(list.json(), [], 'the programs the kernel no longer has are forgotten');
    assert.equal(list.stderr, '', 'without an error or a warning');
    assert.equal(rawStore(env, ({ meta }) => meta.get('schema_version')), 2, 'migrated on open');
    assert.deepEqual(rawStore(env, ({ blobs }) => [...blobs.getKeys()].map(String).filter((k) => k.startsWith('image:'))), [], 'no schema-1 image key is left');
    assert.deepEqual(env.run('list', '--pending', '-o', 'json').json(), [], 'vanished in their own boot: nothing waits to be restored');
    const doctor = env.run('doctor');
    assert.equal(doctor.status, 0, doctor.stdout + doctor.stderr);

    const log = env.run('policy', 'log', '-o', 'json');
    assert.equal(log.status, 0, log.stderr);
    assert.deepEqual(decided(log.json()), decided(oldLog), 'the decisions of the old bpfd, as it showed them');

    net = makeVethPair();
    const r = env.run('load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--iface', net.ifB, '--netns', net.nsPathB, '--priority', '10', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const loaded = r.json();
    const oldLinkIds = oldList.flatMap((p) => p.links.map((l) => l.id as number));
    assert.ok(loaded.links[0].id > Math.max(...oldLinkIds), `link ids go on from the old store's (${loaded.links[0].id} after ${oldLinkIds})`);
    assert.ok(net.ping(3), 'the new program runs');
    assert.deepEqual(env.run('list', '-o', 'json').json().map((p: { id: number }) => p.id), [loaded.id]);
    const after = env.run('policy', 'log', '-o', 'json').json();
    assert.deepEqual(decided(after.slice(1)), decided(oldLog), 'the old decisions stay');
    assert.deepEqual([after[0].seq, after[0].action, after[0].allow], [(oldLog[0].seq as number) + 1, 'load', true], 'the new decision follows them');
    assert.equal(env.run('unload', String(loaded.id)).status, 0);
    assert.ok(progGone(loaded.id));
    assert.deepEqual(env.pins(), []);
  });

  test('in a later boot: the persisted programs wait, and the one whose interface still exists comes back from the stored object', () => {
    fromFixture(randomUUID());
    assert.deepEqual(env.run('list', '-o', 'json').json(), []);
    const persisted = oldList.filter((p) => p.name === 'xdp_pass' || p.metadata.role === 'unattached');
    const pending = env.run('list', '--pending', '-o', 'json').json() as Array<{ previous_id: number; boot_id: string; name: string; metadata: Record<string, string>; bytecode: unknown; links: Array<Record<string, unknown>> }>;
    assert.deepEqual(pending.map((p) => [p.previous_id, p.boot_id, p.name, p.metadata, p.bytecode]), persisted.map((p) => [p.id, FIXTURE_BOOT, p.name, p.metadata, p.bytecode]));
    const fields = ['id', 'iface', 'netns', 'priority', 'proceed_on', 'mode'];
    const pick = (l: Record<string, unknown>) => Object.fromEntries(fields.map((f) => [f, l[f]]));
    assert.deepEqual(pending.map((p) => p.links.map(pick)), persisted.map((p) => p.links.map(pick)), 'their links as the old bpfd recorded them');
    assert.deepEqual(pending.flatMap((p) => p.links.map((l) => l.kind)), ['xdp']);

    const r = env.run('system', 'restore', '-o', 'json');
    assert.equal(r.status, 1, 'the netns of xdp_pass is gone');
    const report = r.json() as { restored: Array<{ previous_id: number; id: number }>; failed: Array<{ previous_id: number; reason: string }> };
    const [attached, unattached] = persisted;
    assert.deepEqual(report.failed.map((f) => f.previous_id), [attached.id]);
    assert.match(report.failed[0].reason, /\/var\/run\/netns\/bpfdfx-b/);
    assert.deepEqual(report.restored.map((x) => x.previous_id), [unattached.id]);
    const back = env.run('get', String(report.restored[0].id), '-o', 'json').json();
    assert.deepEqual([back.name, back.metadata, back.bytecode, back.links], [unattached.name, unattached.metadata, unattached.bytecode, []]);
    const rodata = bpftool('map', 'dump', 'pinned', path.join(back.maps.pin_path, 'rodata'))[0].formatted.value;
    assert.equal(rodata['.rodata'][0].verdict, 1, 'with the --global it was loaded with');
    assert.equal(env.run('unload', String(back.id)).status, 0);
  });
});
