import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../helpers/bpfd.js';

const UNIT = path.join(ROOT, 'systemd', 'bpfd-restore.service');

/** systemd-analyze is in CI (scripts/setup.sh installs systemd): there the test never skips. */
function skipUnlessAnalyze(): false | string {
  if (spawnSync('systemd-analyze', ['--version']).status === 0) return false;
  if (process.env.CI) throw new Error('systemd-analyze is missing in CI: scripts/setup.sh installs the systemd package');
  return 'systemd-analyze is not installed (apt-get install systemd)';
}

/**
 * Verifies a unit in a throwaway root: the host's own units for the targets it names, and a
 * stand-in executable where ExecStart expects bpfd (verify insists that it exists), so the
 * shipped file is checked exactly as it is, on a machine where bpfd is not installed.
 */
function verify(unit: string, ...companions: string[]): { status: number; output: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'bpfd-unit-'));
  try {
    mkdirSync(path.join(root, 'usr/local/bin'), { recursive: true });
    mkdirSync(path.join(root, 'etc/systemd/system'), { recursive: true });
    cpSync('/usr/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), { recursive: true });
    const bin = path.join(root, 'usr/local/bin/bpfd');
    writeFileSync(bin, '#!/bin/sh\n');
    chmodSync(bin, 0o755);
    const target = path.join(root, 'etc/systemd/system', path.basename(unit));
    for (const u of [unit, ...companions]) writeFileSync(path.join(root, 'etc/systemd/system', path.basename(u)), readFileSync(u));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', `--root=${root}`, target], { encoding: 'utf8' });
    return { status: r.status ?? -1, output: (r.stdout + r.stderr).trim() };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test('systemd-analyze verify accepts the restore unit as shipped, with no warning', { skip: skipUnlessAnalyze() }, () => {
  const r = verify(UNIT);
  assert.equal(r.status, 0, r.output);
  assert.equal(r.output, '');
  const text = readFileSync(UNIT, 'utf8');
  assert.match(text, /^Type=oneshot$/m);
  assert.match(text, /^ExecStart=\/usr\/local\/bin\/bpfd system restore$/m);
  assert.match(text, /^WantedBy=multi-user\.target$/m);
});

test('the same check reports a broken copy of the unit (so it can fail)', { skip: skipUnlessAnalyze() }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-unit-broken-'));
  try {
    const broken = path.join(dir, 'bpfd-restore.service');
    writeFileSync(broken, readFileSync(UNIT, 'utf8').replace('Type=oneshot', 'Type=oneshoot'));
    assert.match(verify(broken).output, /Failed to parse service type/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const SOCKET = path.join(ROOT, 'systemd', 'bpfd.socket');
const SERVICE = path.join(ROOT, 'systemd', 'bpfd.service');

test('systemd-analyze verify accepts the service and its socket as shipped, with no warning', { skip: skipUnlessAnalyze() }, () => {
  for (const [unit, other] of [[SOCKET, SERVICE], [SERVICE, SOCKET]]) {
    const r = verify(unit, other);
    assert.equal(r.status, 0, `${path.basename(unit)}: ${r.output}`);
    assert.equal(r.output, '', path.basename(unit));
  }
  const socket = readFileSync(SOCKET, 'utf8');
  assert.match(socket, /^ListenStream=\/run\/bpfd\.sock$/m);
  assert.match(socket, /^SocketMode=0660$/m);
  assert.match(socket, /^Accept=no$/m, 'one service for all connections: bpfd serves the listening socket (fd 3)');
  const service = readFileSync(SERVICE, 'utf8');
  assert.match(service, /^ExecStart=\/usr\/local\/bin\/bpfd system service --timeout 15$/m);
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(service)?.[1].split(' ').sort();
  assert.deepEqual(caps, ['CAP_BPF', 'CAP_CHOWN', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_NET_ADMIN', 'CAP_PERFMON', 'CAP_SYS_ADMIN']);
  assert.doesNotMatch(service, /^(ProtectSystem|PrivateTmp|PrivateMounts|ProtectHome)=/m, 'no private mount namespace: the bpffs must stay visible to the CLI');
});

test('the same check reports a broken copy of the service or the socket', { skip: skipUnlessAnalyze() }, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-unit-broken-'));
  try {
    const broken = path.join(dir, 'bpfd.service');
    writeFileSync(broken, readFileSync(SERVICE, 'utf8').replace('Type=simple', 'Type=simpel'));
    assert.match(verify(broken, SOCKET).output, /Failed to parse service type/);
    const brokenSocket = path.join(dir, 'bpfd.socket');
    writeFileSync(brokenSocket, readFileSync(SOCKET, 'utf8').replace('Accept=no', 'Accept=maybe'));
    assert.match(verify(brokenSocket, SERVICE).output, /bpfd\.socket:\d+: Failed to parse boolean value, ignoring: maybe/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
