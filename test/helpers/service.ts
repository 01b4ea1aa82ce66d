import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { bpfdArgv, ROOT, type Env } from './bpfd.js';

// A bpfman.v1 client for the tests, built from the .proto with @grpc/grpc-js and
// @grpc/proto-loader, as any bpfman client would be: nothing of bpfd's own code is used, so a
// test shows what a client written for bpfman sees.

const require = createRequire(path.join(ROOT, 'package.json'));
const grpc = require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
const loader = require('@grpc/proto-loader') as typeof import('@grpc/proto-loader');
export const PROTO = path.join(ROOT, 'proto', 'bpfman', 'v1', 'bpfman.proto');
export const Code = grpc.status;

export interface CallResult {
  /** 0 on success, else the gRPC status code */
  code: number;
  details: string;
  response: any;
}

const definition = loader.loadSync(PROTO, { keepCase: true, longs: Number, enums: Number, defaults: true, oneofs: true });
const Bpfman = (grpc.loadPackageDefinition(definition) as any).bpfman.v1.Bpfman;

export interface Client {
  call(method: string, request?: object): Promise<CallResult>;
  close(): void;
}

export function client(address: string): Client {
  const c = new Bpfman(address, grpc.credentials.createInsecure());
  return {
    call: (method, request = {}) =>
      new Promise((resolve) => {
        c[method](request, { deadline: Date.now() + 60_000 }, (err: any, response: any) =>
          resolve(err ? { code: err.code, details: err.details, response: null } : { code: 0, details: '', response }),
        );
      }),
    close: () => c.close(),
  };
}

/** One call from another process, as another user (setpriv): its own connection, its own credentials. */
export function callAs(user: { uid: number; gid: number } | null, address: string, method: string, request: object = {}): CallResult {
  const script = path.join(ROOT, 'build', 'test', 'helpers', 'grpc-call.js');
  const pre = user ? ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups'] : [];
  const [cmd, ...args] = [...pre, process.execPath, script, address, method, JSON.stringify(request)];
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`grpc-call failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export interface Service {
  proc: ChildProcess;
  address: string;
  /** everything the service wrote to stderr so far (its log) */
  log(): string;
  /** resolves with the exit code (or signal name) when the process ends */
  exited: Promise<number | string>;
  alive(): boolean;
  stop(): Promise<number | string>;
}

/**
 * Starts `bpfd system service` for this Env, its paths given as flags: the service refuses them
 * from the environment. With `activate`, Debian's systemd-socket-activate binds the socket and
 * starts the service on the first connection, passing it as fd 3, as systemd would.
 */
export function startService(env: Env, opts: { address?: string; args?: string[]; activate?: boolean; processEnv?: NodeJS.ProcessEnv } = {}): Service {
  const address = opts.address ?? `unix://${path.join(env.dir, 'bpfd.sock')}`;
  const flags = ['--runtime-dir', env.env.BPFD_RUNTIME_DIR!, '--state-dir', env.env.BPFD_STATE_DIR!, '--policy-data', env.env.BPFD_POLICY_DATA!, ...(opts.args ?? [])];
  const { BPFD_RUNTIME_DIR: _r, BPFD_STATE_DIR: _s, BPFD_POLICY_DATA: _d, BPFD_POLICY: _p, BPFD_TEST_HOOK: _h, ...clean } = env.env;
  const argv = bpfdArgv('system', 'service', address, ...flags);
  const [cmd, ...args] = opts.activate ? ['systemd-socket-activate', '-l', address.replace(/^unix:\/\//, ''), ...argv] : argv;
  const proc = spawn(cmd, args, { env: { ...clean, ...opts.processEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
  let done = false;
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (code, sig) => ((done = true), resolve(code ?? sig ?? -1))));
  return {
    proc,
    address,
    log: () => log,
    exited,
    alive: () => !done,
    stop() {
      if (!done) proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** Until the service says it serves (or has exited): bounded, no fixed sleep. */
export async function serving(s: Service, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!/serving bpfman\.v1\.Bpfman|Listening on/.test(s.log())) {
    if (!s.alive()) throw new Error(`the service exited before serving:\n${s.log()}`);
    if (Date.now() > deadline) throw new Error(`the service did not start serving:\n${s.log()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const sock = s.address.replace(/^unix:\/\//, '');
  if (s.address.startsWith('unix://') && !existsSync(sock)) throw new Error(`no socket at ${sock}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  cleanup(): void;
}

/** A user and its own group, made for one test (unique names) and removed after it. */
export function makeUser(prefix = 'bpfdu'): TestUser {
  const name = `${prefix}${Math.random().toString(16).slice(2, 8)}`;
  const run = (cmd: string, ...args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  run('groupadd', name);
  run('useradd', '-M', '-N', '-g', name, '-s', '/usr/sbin/nologin', name);
  return {
    name,
    uid: Number(run('id', '-u', name)),
    gid: Number(run('id', '-g', name)),
    cleanup() {
      spawnSync('userdel', [name]);
      spawnSync('groupdel', [name]);
    },
  };
}
