import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The shipped executable (npm run build): one file, run directly, no node involved. */
export const BPFD = path.join(ROOT, 'dist', 'bpfd');
export const FIXTURES = path.join(ROOT, 'fixtures', 'bytecode');
export const fixture = (name: string) => path.join(FIXTURES, name);

/** The command line that runs the shipped executable with these arguments (for async spawns). */

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
  json<T = any>(): T;
}

/** One isolated bpfd installation: its own runtime dir (bpffs), store and socket. */
export interface Env {
  dir: string;
  env: NodeJS.ProcessEnv;
  bpffs: string;
  run(...args: string[]): RunResult;
  runAs(uid: number, ...args: string[]): RunResult;
  /** as uid (and gid) `uid` with no groups and no capabilities at all: what a CI job without root has */
  runUnprivileged(uid: number, ...args: string[]): RunResult;
  /** pins under the bpffs (programs, maps, interface links), for "nothing left behind" checks */
  pins(): string[];
  cleanup(): void;
}

/** The command line that runs the shipped bpfd with these arguments. */
export const bpfdArgv = (...args: string[]): string[] => [BPFD, ...args];

/** The tests act as root: under `sudo npm test`, bpfd would otherwise judge the user who ran sudo. */
function withoutSudo(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { SUDO_UID: _u, SUDO_GID: _g, SUDO_USER: _n, SUDO_COMMAND: _c, ...rest } = env;
  return rest;
}

export function makeEnv(extra: NodeJS.ProcessEnv = {}): Env {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-test-'));
  const env: NodeJS.ProcessEnv = {
    ...withoutSudo(process.env),
    BPFD_RUNTIME_DIR: path.join(dir, 'run'),
    BPFD_STATE_DIR: path.join(dir, 'state'),
    BPFD_SOCKET: `unix://${path.join(dir, 'bpfd.sock')}`,
    BPFD_POLICY_DATA: path.join(dir, 'policy-data.json'),
    // the repo's shipped policy decides, never a host's /etc/bpfd/policy.wasm or the caller's BPFD_POLICY
    BPFD_POLICY: path.join(ROOT, 'wasm', 'bpfd.wasm'),
    ...extra,
  };
  const bpffs = path.join(dir, 'run', 'fs');
  const run = (argv: string[], pre: string[] = []): RunResult => {
    const [cmd, ...args] = [...pre, ...bpfdArgv(...argv)];
    const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 60_000 });
    return {
      status: r.status ?? -1,
      stdout: r.stdout,
      stderr: r.stderr,
      json() {
        try {
          return JSON.parse(r.stdout);
        } catch {
          throw new Error(`not JSON (exit ${r.status}): ${r.stdout}\nstderr: ${r.stderr}`);
        }
      },
    };
  };
  return {
    dir,
    env,
    bpffs,
    run: (...args) => run(args),
    runAs: (uid, ...args) => run(args, ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups']),
    runUnprivileged: (uid, ...args) =>
      run(args, ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all']),
    pins() {
      const out: string[] = [];
      const walk = (d: string) => {
        if (!existsSync(d)) return;
        for (const e of readdirSync(d, { withFileTypes: true })) {
          if (d === bpffs && e.name.endsWith('.debug')) continue;
          const p = path.join(d, e.name);
          if (e.isDirectory()) walk(p);
          else out.push(path.relative(bpffs, p));
        }
      };
      walk(bpffs);
      return out.sort();
    },
    cleanup() {
      // Unload whatever a failed test left, then unmount the private bpffs.
      const l = run(['list', '-o', 'json']);
      if (l.status === 0) for (const p of JSON.parse(l.stdout) as Array<{ id: number }>) run(['unload', String(p.id)]);
      spawnSync('umount', [bpffs]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function bpftool(...args: string[]): any {
  const r = spawnSync('bpftool', ['-j', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bpftool ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout);
}

/** Kernel program ids right now: a before/after diff shows what a command left behind. */
export function kernelProgIds(): Set<number> {
  return new Set((bpftool('prog', 'list') as Array<{ id: number }>).map((p) => p.id));
}

/**
 * The `skip` option for tests that need root: false as root; elsewhere a message saying why.
 * CI runs as root, so there it refuses to skip at all.
 */
export function needsRoot(): false | string {
  if (process.getuid?.() === 0) return false;
  if (process.env.CI) throw new Error('these tests need root and CI runs as root: refusing to skip');
  return 'needs root: loads programs into the kernel and creates network namespaces';
}

/** The kernel frees programs after an RCU grace period: wait (bounded) until the id is gone. */
export function progGone(id: number, timeoutMs = 3000): boolean {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline) {
    if (!kernelProgIds().has(id)) return true;
    Atomics.wait(pause, 0, 0, 20);
  }
  return false;
}
