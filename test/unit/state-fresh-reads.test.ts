import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { openStore } from '../../src/state/store.js';
import type { LinkRecord, ProgramRecord } from '../../src/state/records.js';

// lmdb-js keeps one read transaction per process and resets it only on a setTimeout(0). A bpfd
// command that reads the store, then waits for the writer lock synchronously (Atomics.wait in
// core/lock.ts), came out of the wait still holding the snapshot from before the wait: it did not
// see what the previous holder had just committed, and a read transaction kept across a long wait
// is what lmdb complained about under load. Every read of the store must see the latest commit.
// Another process writes here, as another bpfd command would, while this one never yields.

const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-fresh-reads-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const storeModule = new URL('../../src/state/store.js', import.meta.url).pathname;

function program(id: number): ProgramRecord {
  return {
    id, name: `p${id}`, type: 'xdp', section: 'xdp', bytecode: { path: '/x.o', sha256: 'a'.repeat(64) },
    owner: { uid: 0, username: 'root' }, metadata: {}, maps: { pin_path: `/p/${id}`, owner_id: null }, map_names: [],
    globals: {}, application: null, license: 'GPL', tag: '00', loaded_at: '2026-01-01T00:00:00Z', persist: false, boot_id: 'b',
  };
}

/** Commits a load from another process, synchronously: this process never reaches its event loop. */
function commitElsewhere(id: number): void {
  const script = `
    const { openStore } = await import(${JSON.stringify(storeModule)});
    const s = openStore(${JSON.stringify(dir)});
    s.commitLoad({ program: ${JSON.stringify(program(id))}, image: null, object: null, link: null });
    s.close();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

test('a read after another process committed sees the commit, without yielding to the event loop', () => {
  const store = openStore(dir);
  assert.deepEqual(store.programs(), []);
  assert.equal(store.memberImage(7), undefined);
  commitElsewhere(7);
  assert.deepEqual(store.programs().map((p) => p.id), [7], 'programs() answered from a snapshot older than the last commit');
  commitElsewhere(8);
  assert.equal(store.links().length, 0);
  assert.deepEqual(store.programs().map((p) => p.id), [7, 8]);
  // a link id handed out here must not collide with one the other process took meanwhile
  const l: LinkRecord = { id: 1, prog_id: 7, kind: 'xdp', seq: 1, created_at: 'x', iface: 'v', ifindex: 1, netns: null, netns_ino: 1, priority: 50 } as LinkRecord;
  store.addLink(l);
  assert.deepEqual(store.links().map((x) => x.id), [1]);
});
