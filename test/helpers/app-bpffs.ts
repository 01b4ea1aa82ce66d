import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './bpfd.js';

/**
 * Helpers for tests of applications' bpffs (bpfd bpffs …): uids made for the test, commands run
 * as them with no capability at all, the bpf-map example built for them, and a directory for the
 * mounts that cleanup unmounts whatever happened.
 */

/** Two uids no account has, different in every run. */
export function testUids(): [number, number] {
  const base = 200_000 + Math.floor(Math.random() * 50_000) * 2;
  return [base, base + 1];
}

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a command as uid:uid, with no supplementary groups and every capability dropped. */
export function asUser(uid: number, cmd: string, ...args: string[]): Run {
  const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', cmd, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A world-traversable directory: what unprivileged uids run from and where mounts go. */
export function openDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

/** Builds examples/unprivileged/bpf-map into dir with its own build script; returns the binary. */
export function buildBpfMapTool(dir: string): string {
  const r = spawnSync('bash', [path.join(ROOT, 'examples', 'unprivileged', 'build.sh'), dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the bpf-map example: ${r.stderr}`);
  return path.join(dir, 'bpf-map');
}

export const NODE_EXAMPLE = path.join(ROOT, 'examples', 'unprivileged', 'bpf-map.mjs');

/** Mount points below dir, deepest first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts what a test mounted below dir (only there), then removes dir. */
export function cleanupDir(dir: string): void {
  for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m]);
  rmSync(dir, { recursive: true, force: true });
}

/** The value of a u64 in the hex the bpf-map example prints for an 8-byte value. */
export function valueOf(stdout: string): bigint {
  const m = /value ([0-9a-f]+)/.exec(stdout);
  if (!m) throw new Error(`no value in: ${stdout}`);
  return Buffer.from(m[1], 'hex').length === 8 ? Buffer.from(m[1], 'hex').readBigUInt64LE() : BigInt(Buffer.from(m[1], 'hex').readUInt32LE());
}

/**
 * kernel.unprivileged_bpf_disabled at 2 (or 1) for the test: bpf() stays root-only for creating
 * maps and loading programs, and opening a pin is governed by its mode alone. From 0 it is set to
 * 2 and put back afterwards; 1 cannot be undone without a reboot, so it is never set here.
 */
export function unprivilegedBpfDisabled(): () => void {
  const file = '/proc/sys/kernel/unprivileged_bpf_disabled';
  const before = readFileSync(file, 'utf8').trim();
  if (before !== '0') return () => {};
  spawnSync('sysctl', ['-q', '-w', 'kernel.unprivileged_bpf_disabled=2']);
  return () => void spawnSync('sysctl', ['-q', '-w', `kernel.unprivileged_bpf_disabled=${before}`]);
}

/** The kernel frees a map after its last reference goes, a little later: wait (bounded) until the id is gone. */
export function mapGone(id: number, timeoutMs = 3000): boolean {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline) {
    if (spawnSync('bpftool', ['map', 'show', 'id', String(id)]).status !== 0) return true;
    Atomics.wait(pause, 0, 0, 20);
  }
  return false;
}
