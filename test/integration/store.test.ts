import assert from 'node:assert/strict';
import { copyFileSync, openSync, renameSync, truncateSync, writeSync, closeSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { fixture, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';

const skip = needsRoot();

describe('a damaged store gives a clear error, never a crash', { skip }, () => {
  let env: Env;
  let data: string;
  beforeEach(() => {
    env = makeEnv();
    const r = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    data = path.join(env.env.BPFD_STATE_DIR!, 'data.mdb');
  });
  afterEach(() => {
    // a fresh store lets cleanup unload what the first one recorded: move the damaged one aside
    const state = env.env.BPFD_STATE_DIR!;
    try {
      renameSync(state, `${state}.damaged`);
    } catch {
      /* already moved by the test */
    }
    env.cleanup();
  });

  const damaged = (why: RegExp) => {
    for (const cmd of [['list'], ['get', '1'], ['load', 'file', '--path', fixture('xdp_drop.o'), '--name', 'xdp_drop']]) {
      const r = env.run(...cmd);
      assert.equal(r.status, 1, `bpfd ${cmd[0]} exits 1 (not a signal): ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`cannot open the bpfd store in ${env.env.BPFD_STATE_DIR}`));
      assert.match(r.stderr, why);
      assert.match(r.stderr, /to recover: move .* aside/);
    }
  };

  test('garbled header', () => {
    const fd = openSync(data, 'r+');
    writeSync(fd, Buffer.alloc(64, 0x5a), 0, 64, 0);
    closeSync(fd);
    damaged(/no valid LMDB header|not an LMDB file/);
  });

  test('truncated file', () => {
    truncateSync(data, Math.floor(statSync(data).size / 2));
    damaged(/is truncated/);
  });

  test('moving the store aside recovers: the orphaned program is removed, new loads work', () => {
    const orphan: number = env.run('list', '-o', 'json').json()[0].id;
    const backup = `${data}.orig`;
    copyFileSync(data, backup);
    truncateSync(data, 100);
    damaged(/is truncated/);
    const state = env.env.BPFD_STATE_DIR!;
    renameSync(state, `${state}.damaged`);
    const list = env.run('list', '-o', 'json');
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(list.json(), []);
    assert.deepEqual(env.pins(), [], 'the program pinned without a record was removed');
    assert.ok(progGone(orphan), 'and the kernel freed it');
    const again = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass');
    assert.equal(again.status, 0, again.stderr);
  });
});
