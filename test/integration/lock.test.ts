import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BPFD, fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';

const skip = needsRoot();

function spawnBpfd(env: NodeJS.ProcessEnv, args: string[]) {
  const child = spawn(BPFD, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ status: number; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr })),
  );
  return { child, done, running: () => child.exitCode === null };
}

describe('one writer at a time, reads never wait', { skip }, () => {
  let env: Env;
  before(() => {
    env = makeEnv();
    env.run('list'); // create the store and the bpffs up front
  });
  after(() => env?.cleanup());

  test('a writer that cannot get the lock in time names the holder; a read does not wait', async () => {
    const holder = spawnBpfd({ ...env.env, BPFD_TEST_HOOK: 'load:after-pin=sleep:4000' }, ['load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json']);
    // wait until the holder is inside the lock (its program is pinned)
    const deadline = Date.now() + 10_000;
    while (!env.pins().some((p) => p.startsWith('progs/')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(holder.running(), 'the holder is still running');

    const waiter = env.run('load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop', '--lock-timeout', '0.3');
    assert.equal(waiter.status, 1, waiter.stderr);
    assert.match(waiter.stderr, new RegExp(`timed out after 0\\.3 s waiting for the bpfd lock .* held by pid ${holder.child.pid} \\(bpfd load file --path .*xdp_pass\\.o --name xdp_pass`));
    assert.match(waiter.stderr, /raise --lock-timeout/);

    const read = env.run('list', '-o', 'json');
    assert.equal(read.status, 0, read.stderr);
    assert.ok(holder.running(), 'list answered while the writer still held the lock');

    // The lock file names the holder while it works: reads see a change in progress from it.
    const lockFile = path.join(env.dir, 'run', 'lock');
    assert.match(readFileSync(lockFile, 'utf8'), new RegExp(`"pid":${holder.child.pid}`));
    const h = await holder.done;
    assert.equal(h.status, 0, h.stderr);
    assert.equal(readFileSync(lockFile, 'utf8'), '', 'a holder that finishes empties the lock file');
    const ids = env.run('list', '-o', 'json').json().map((p: { id: number }) => p.id);
    assert.deepEqual(ids, [JSON.parse(h.stdout).id], 'only the holder loaded a program; the waiter left nothing');
    assert.equal(env.run('unload', String(ids[0])).status, 0);
  });

  test('eight concurrent loads all land, each once', async () => {
    const runs = Array.from({ length: 8 }, (_, i) =>
      spawnBpfd(env.env, ['load', 'file', '--path', fixture('xdp_count.o'), '--name', 'xdp_count', '--metadata', `n=${i}`, '-o', 'json']).done,
    );
    const results = await Promise.all(runs);
    for (const r of results) assert.equal(r.status, 0, r.stderr);
    const listed = env.run('list', '-o', 'json').json() as Array<{ id: number; metadata: { n: string } }>;
    assert.equal(listed.length, 8);
    assert.deepEqual(listed.map((p) => p.metadata.n).sort(), ['0', '1', '2', '3', '4', '5', '6', '7']);
    assert.equal(new Set(listed.map((p) => p.id)).size, 8);
    const unloads = await Promise.all(listed.map((p) => spawnBpfd(env.env, ['unload', String(p.id)]).done));
    for (const u of unloads) assert.equal(u.status, 0, u.stderr);
    assert.deepEqual(env.run('list', '-o', 'json').json(), []);
    assert.deepEqual(env.pins(), []);
  });

  // LMDB's last user to close the store destroys the mutexes in lock.mdb; a process opening it
  // meanwhile would wake up to destroyed mutexes and fail its first transaction (EINVAL, about one
  // command in a few hundred under eight concurrent loads). So a closing bpfd holds the store's
  // open guard (state/env.lock) from its first exit listener on, and an opening one waits for it.
  test("opening the store waits while another bpfd closes it: the guard in the state dir", async () => {
    const guard = path.join(env.dir, 'state', 'env.lock');
    const closer = spawnBpfd({ ...env.env, BPFD_TEST_HOOK: 'store:closing=sleep:1500' }, ['list']);
    // flock(1) -n exits 99 here while someone else holds the guard
    const guardHeld = () => spawnSync('flock', ['-n', '-E', '99', guard, 'true']).status === 99;
    while (closer.running() && !guardHeld()) await new Promise((r) => setTimeout(r, 5));
    assert.ok(closer.running(), 'the closing bpfd never held the open guard at exit');

    const exits: string[] = [];
    const opener = spawnBpfd(env.env, ['list', '-o', 'json']);
    const [c, o] = await Promise.all([
      closer.done.then((r) => (exits.push('closer'), r)),
      opener.done.then((r) => (exits.push('opener'), r)),
    ]);
    assert.equal(c.status, 0, c.stderr);
    assert.equal(o.status, 0, o.stderr);
    assert.deepEqual(JSON.parse(o.stdout), []);
    assert.deepEqual(exits, ['closer', 'opener'], 'the opener opened the store only after the closer had closed it');
  });

  test('a read after writers that finished answers without the lock; after a writer died it takes the lock and repairs', () => {
    const list = () => {
      const r = spawnSync(BPFD, ['list', '-o', 'json'], { env: { ...env.env, BPFD_TIMINGS: '1' }, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /^bpfd timings: /m);
      return { ids: (JSON.parse(r.stdout) as Array<{ id: number }>).map((p) => p.id), locked: /lock held/.test(r.stderr) };
    };
    const loaded = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
    assert.equal(loaded.status, 0, loaded.stderr);
    const id = loaded.json().id as number;
    assert.deepEqual(list(), { ids: [id], locked: false }, 'clean: the store and the pins answer, no lock');

    const killed = spawnSync(BPFD, ['load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop'], {
      env: { ...env.env, BPFD_TEST_HOOK: 'load:after-pin=kill' },
      encoding: 'utf8',
    });
    assert.equal(killed.signal, 'SIGKILL');
    assert.deepEqual(list(), { ids: [id], locked: true }, 'after the kill: the read takes the lock and removes what the dead load pinned');
    assert.deepEqual(env.pins().filter((p) => p.startsWith('progs/')), [`progs/${id}`]);
    assert.deepEqual(list(), { ids: [id], locked: false }, 'repaired: clean again');
    assert.equal(env.run('unload', String(id)).status, 0);
  });
});

