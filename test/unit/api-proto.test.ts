import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { bpfmanProto } from '../../src/base/bpfman-proto.js';
import { BpfdError } from '../../src/base/errors.js';
import { parseAddress } from '../../src/api/service.js';
import { rpcErrorOf } from '../../src/api/status.js';
import { checkPolicyFiles, refuseDelegatedEnv, sudoCaller } from '../../src/core/caller.js';
import { ROOT } from '../helpers/bpfd.js';

test('field numbers and types of the wire facts (a sample that a renumbering would break)', () => {
  for (const line of [
    'optional uint32 map_owner_id = 8;',
    'repeated LoadInfo info = 9;',
    'map<string, bytes> global_data = 6;',
    'repeated ListResult results = 3;',
    'uint32 verified_insns = 13;',
    'TCXAttachInfo tcx_attach_info = 6;',
    'BytecodeImage image = 2;',
    'string file = 3;',
    'optional bool bpfman_programs_only = 2;',
  ]) assert.ok(bpfmanProto().includes(line), line);
});

test('each error kind has its gRPC status; the message keeps the details one a line', () => {
  const codes = (['invalid', 'notFound', 'denied', 'limit', 'busy', 'kernel', 'failed'] as const).map((k) => rpcErrorOf(new BpfdError(k, 'm')).code);
  assert.deepEqual(codes, [3, 5, 7, 8, 14, 9, 9]);
  assert.equal(rpcErrorOf(new BpfdError('denied', 'denied by policy', ['r1', 'r2'])).message, 'denied by policy\nr1\nr2');
});

test('listen addresses: unix paths and tcp host:port, anything else says what to give', () => {
  assert.deepEqual(parseAddress('unix:///var/run/bpfd.sock'), { kind: 'unix', path: '/var/run/bpfd.sock' });
  assert.deepEqual(parseAddress('tcp://127.0.0.1:50051'), { kind: 'tcp', host: '127.0.0.1', port: 50051 });
  assert.deepEqual(parseAddress('tcp://[::1]:9'), { kind: 'tcp', host: '::1', port: 9 });
  assert.throws(() => parseAddress('/var/run/bpfd.sock'), /give unix:\/\/\/PATH .* or tcp:\/\/HOST:PORT/);
  assert.throws(() => parseAddress('tcp://127.0.0.1:70000'), /cannot listen/);
});

test('sudo is recognised only with real uid 0 and all three of sudo\'s variables', () => {
  const env = { SUDO_UID: '1000', SUDO_GID: '1001', SUDO_USER: 'alice' };
  assert.deepEqual(sudoCaller(env, 0), { uid: 1000, gid: 1001, username: 'alice' });
  assert.equal(sudoCaller(env, 1000), null, 'a user setting them proves nothing');
  assert.equal(sudoCaller({ ...env, SUDO_USER: undefined }, 0), null);
  assert.equal(sudoCaller({ ...env, SUDO_UID: 'x' }, 0), null);
});

test('the delegated-caller variables are refused by name, with what to do instead', () => {
  assert.doesNotThrow(() => refuseDelegatedEnv({ BPFD_SOCKET: 'unix:///x', BPFD_TIMINGS: '1' }, 'sudo'));
  assert.throws(() => refuseDelegatedEnv({ BPFD_POLICY: 'a', BPFD_TEST_HOOK: 'b' }, 'sudo'), (e: BpfdError) =>
    e.kind === 'invalid' && /refusing BPFD_POLICY, BPFD_TEST_HOOK/.test(e.message) && /without -E/.test(e.details[0]));
  assert.throws(() => refuseDelegatedEnv({ BPFD_STATE_DIR: 'a' }, 'service'), (e: BpfdError) => /--runtime-dir, --state-dir/.test(e.details[0]));
});

test('policy files: root-owned and writable by root alone, up to /; a sticky root dir is fine', { skip: process.getuid?.() !== 0 && 'needs root to make root-owned files' }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-strict-'));
  try {
    const policy = path.join(dir, 'p.wasm');
    const data = path.join(dir, 'd.json');
    writeFileSync(policy, 'x');
    chmodSync(policy, 0o644);
    assert.doesNotThrow(() => checkPolicyFiles({ policy, policyData: data }), 'absent data is the empty document');
    writeFileSync(data, '{}');
    chmodSync(data, 0o664);
    assert.throws(() => checkPolicyFiles({ policy, policyData: data }), (e: BpfdError) => e.kind === 'denied' && /policy data .*d\.json is writable by its group \(mode 664\)/.test(e.message) && /owned by root/.test(e.details[0]));
    chmodSync(data, 0o644);
    const sub = path.join(dir, 'open');
    mkdirSync(sub);
    chmodSync(sub, 0o777);
    writeFileSync(path.join(sub, 'd.json'), '{}');
    assert.throws(() => checkPolicyFiles({ policy, policyData: path.join(sub, 'd.json') }), /is in .*open, writable by others \(mode 777\)/);
    chmodSync(sub, 0o1777);
    assert.doesNotThrow(() => checkPolicyFiles({ policy, policyData: path.join(sub, 'd.json') }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
