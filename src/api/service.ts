import { chmodSync, chownSync, closeSync, existsSync, ftruncateSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import http2, { type ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import { bpfmanMethods, SERVICE_NAME, type ContextFor, type ServiceCaller } from './bpfman.js';
import { serveGrpc } from './grpc.js';
import { failed, invalidInput } from '../base/errors.js';
import { socketSubject, TCP_SUBJECT } from '../core/caller.js';
import { createContext } from '../core/context.js';
import { gidOf, peerCredentials, tryLockExclusive } from '../loader/peercred.js';
import { longRunning } from '../base/jit.js';

/**
 * `bpfd system service`: the bpfman.v1 API on a unix socket (or TCP), for as long as it is
 * needed. It serves the socket systemd passed when socket-activated, exits after --timeout
 * seconds without a call in flight, and on SIGTERM finishes the calls in flight first; a call
 * that arrives while it stops is refused with UNAVAILABLE, never started.
 */

export interface ServiceOptions {
  /** unix:///path or tcp://HOST:PORT; ignored when systemd passed a socket */
  address: string;
  /** seconds without a call in flight before exiting; 0 = never */
  timeoutS: number;
  /** group that may connect to a socket bpfd binds itself (mode 0660) */
  socketGroup: string | null;
  /** BPFD_* paths for the core, from the service's command line */
  env: NodeJS.ProcessEnv;
  lockTimeoutMs: number;
  log(line: string): void;
}

type Listen = { kind: 'fd'; fd: number } | { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function parseAddress(address: string): Listen {
  const unix = /^unix:(?:\/\/)?(\/.+)$/.exec(address);
  if (unix) return { kind: 'unix', path: unix[1] };
  const tcp = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/]+):(\d{1,5})$/.exec(address);
  if (tcp && Number(tcp[2]) > 0 && Number(tcp[2]) < 65536) return { kind: 'tcp', host: tcp[1].replace(/^\[|\]$/g, ''), port: Number(tcp[2]) };
  throw invalidInput(`cannot listen on '${address}': give unix:///PATH (e.g. unix:///var/run/bpfd.sock) or tcp://HOST:PORT (e.g. tcp://127.0.0.1:50051)`);
}

/** systemd's socket passing (sd_listen_fds): one socket, meant for this very process. */
function activationFd(env: NodeJS.ProcessEnv): number | null {
  if (env.LISTEN_PID !== String(process.pid) || env.LISTEN_FDS === undefined) return null;
  if (env.LISTEN_FDS !== '1') throw invalidInput(`systemd passed ${env.LISTEN_FDS} sockets; bpfd serves exactly one (one ListenStream= in bpfd.socket)`);
  // not for children: sd_listen_fds(unset_environment=1)
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  return 3;
}

export async function runService(opts: ServiceOptions): Promise<number> {
  const fd = activationFd(process.env);
  const where: Listen = fd !== null ? { kind: 'fd', fd } : parseAddress(opts.address);
  const label = where.kind === 'fd' ? `the socket systemd passed (fd ${fd})` : opts.address;
  const claim = where.kind === 'unix' ? claimSocketPath(where.path) : null;

  let inflight = 0;
  let stopping = false;
  let idle: NodeJS.Timeout | null = null;
  const sessions = new Set<ServerHttp2Session>();
  const callers = new WeakMap<ServerHttp2Session, Promise<ServiceCaller>>();
  const server = http2.createServer();
  let exit: (code: number) => void = () => undefined;
  const exited = new Promise<number>((resolve) => (exit = resolve));

  const contextFor: ContextFor = (subject, what) => createContext({ subject, what, env: opts.env, lockTimeoutMs: opts.lockTimeoutMs });
  serveGrpc(server, SERVICE_NAME, bpfmanMethods(contextFor, opts.log), {
    admit: () => (stopping ? 'the bpfd service is shutting down: retry (a socket-activated service starts again on the next connection)' : null),
    callerOf: (session) => callers.get(session) ?? Promise.reject(new Error('a call on a connection the service did not see open')),
    started() {
      inflight++;
      if (idle) clearTimeout(idle);
      idle = null;
    },
    finished() {
      inflight--;
      if (stopping && inflight === 0) finish();
      else armIdle();
    },
  });
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    callers.set(session, identify(session.socket as Socket));
  });

  const armIdle = () => {
    if (opts.timeoutS <= 0 || inflight > 0 || stopping) return;
    if (idle) clearTimeout(idle);
    idle = setTimeout(() => stop(`no call for ${opts.timeoutS} s`), opts.timeoutS * 1000);
  };
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    // a pending idle timer would keep the process alive after the last call
    if (idle) clearTimeout(idle);
    idle = null;
    opts.log(`stopping (${why})${inflight ? `: finishing ${inflight} call(s) in flight` : ''}`);
    server.close();
    if (inflight === 0) finish();
  };
  const finish = () => {
    for (const s of sessions) s.close();
    claim?.release();
    opts.log('stopped');
    exit(0);
  };
  const onSignal = (sig: string) => () => stop(sig);
  process.on('SIGTERM', onSignal('SIGTERM'));
  process.on('SIGINT', onSignal('SIGINT'));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (where.kind === 'fd') server.listen({ fd: where.fd }, resolve);
      else if (where.kind === 'unix') server.listen(where.path, resolve);
      else server.listen(where.port, where.host, resolve);
    });
  } catch (e) {
    claim?.release();
    throw failed(`cannot listen on ${label}: ${(e as Error).message}`);
  }
  server.on('error', (e) => opts.log(`error: ${(e as Error).message}`));
  if (where.kind === 'unix') shareSocket(where.path, opts.socketGroup);
  opts.log(`serving ${SERVICE_NAME} on ${label}${opts.timeoutS > 0 ? `, exiting after ${opts.timeoutS} s without a call` : ''}`);
  // a service answers many calls: its hot paths are worth compiling, unlike a command's (base/jit.ts)
  longRunning();
  armIdle();
  return exited;
}

/** Who is calling on this connection: the kernel's record for a unix socket, nobody for TCP. */
async function identify(socket: Socket): Promise<ServiceCaller> {
  if (socket.remoteAddress) return { subject: TCP_SUBJECT };
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no file descriptor to read peer credentials from');
  return { subject: await socketSubject(peerCredentials(fd)) };
}

/** 0660, and the group that may connect (`bpfd` when it exists); others cannot connect at all. */
function shareSocket(path: string, group: string | null): void {
  const name = group ?? 'bpfd';
  const gid = gidOf(name);
  if (gid === null && group !== null) throw invalidInput(`--socket-group ${group}: no such group`);
  if (gid !== null) chownSync(path, 0, gid);
  chmodSync(path, 0o660);
}

/**
 * Who holds a socket's lock file. The holder writes its pid just after it takes the lock: a
 * service started at the same moment may read the file in between, so it looks again for a
 * little while before it settles for "another process".
 */
function holderOf(lockPath: string): string {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 50; i++) {
    const text = readFileSync(lockPath, 'utf8').trim();
    if (text) return text;
    Atomics.wait(pause, 0, 0, 2);
  }
  return 'another process';
}

/**
 * One service per socket path: a lock file beside it, held while serving. A second service
 * says who holds it instead of stealing the path; a socket left by a service that died is
 * removed, since its lock died with it.
 */
function claimSocketPath(path: string): { release(): void } {
  const lockPath = `${path}.lock`;
  let fd: number;
  try {
    fd = openSync(lockPath, 'a+', 0o600);
  } catch (e) {
    throw failed(`cannot open ${lockPath}: ${(e as Error).message}`, ['run bpfd system service as root, or give an address in a directory it may write']);
  }
  if (!tryLockExclusive(fd)) {
    const holder = holderOf(lockPath);
    closeSync(fd);
    throw failed(`another bpfd service already serves unix://${path} (${holder})`, [
      'use that one, stop it first (systemctl stop bpfd.socket bpfd.service, or kill its pid), or give this one another address',
    ]);
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `pid ${process.pid}`, 0);
  if (existsSync(path)) rmSync(path, { force: true });
  return {
    release() {
      rmSync(path, { force: true });
      ftruncateSync(fd, 0);
      // the lock file stays: removing it would let a newcomer lock a fresh file while another
      // still holds the old one
      closeSync(fd);
    },
  };
}
