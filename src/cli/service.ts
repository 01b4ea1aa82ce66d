import { bpfdCommand } from './command.js';
import { invalidInput as usageError } from '../base/errors.js';

/** The paths a service takes from its command line (never from its environment). */
const PATH_FLAGS = {
  'runtime-dir': 'BPFD_RUNTIME_DIR',
  'state-dir': 'BPFD_STATE_DIR',
  policy: 'BPFD_POLICY',
  'policy-data': 'BPFD_POLICY_DATA',
} as const;

/** What the service front end (src/api) needs from the command line; src/app wires it in. */
export interface ServiceRunOptions {
  address: string;
  timeoutS: number;
  socketGroup: string | null;
  env: NodeJS.ProcessEnv;
  lockTimeoutMs: number;
  log(line: string): void;
}
let runService: ((opts: ServiceRunOptions) => Promise<number>) | null = null;
export function provideServiceRunner(run: (opts: ServiceRunOptions) => Promise<number>): void {
  runService = run;
}

const seconds = (v: unknown, flag: string, dflt: number): number => {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n) || n < 0) throw usageError(`${flag} ${String(v)}: give a number of seconds (0 = never)`);
  return n;
};

export const serviceCommand = bpfdCommand({
  name: 'system service',
  description:
    'Serve the bpfman.v1 gRPC API (Load, Unload, Attach, Detach, List, Get, PullBytecode) on a unix socket, ' +
    'so that unprivileged users and node agents can ask for programs; each call is judged by the policy as the caller ' +
    '(its uid, gid and groups from the socket, via: socket; TCP callers are anonymous, via: tcp). ' +
    'Socket-activated by systemd (systemd/bpfd.socket) it serves the socket passed as fd 3. ' +
    'It exits after --timeout seconds without a call in flight, and on SIGTERM after finishing the calls in flight. ' +
    'Paths come from the flags below, never from BPFD_* variables, which it refuses',
  positionals: [{ name: 'address', description: 'unix:///PATH or tcp://HOST:PORT (default: BPFD_SOCKET, else unix:///var/run/bpfd.sock)', required: false }],
  options: {
    timeout: { type: 'string', description: 'exit after this many seconds without a call in flight; 0 = never (default 15)', valueHint: 'SECONDS' },
    'socket-group': { type: 'string', description: 'group allowed to connect to the socket (mode 0660); default bpfd when that group exists, else root only', valueHint: 'GROUP' },
    'runtime-dir': { type: 'string', description: 'runtime dir: lock, bpffs (default /run/bpfd)', valueHint: 'DIR' },
    'state-dir': { type: 'string', description: 'the store (default /var/lib/bpfd)', valueHint: 'DIR' },
    policy: { type: 'string', description: 'compiled policy module (default /etc/bpfd/policy.wasm, else the shipped one)', valueHint: 'FILE.wasm' },
    'policy-data': { type: 'string', description: 'policy data document (default /etc/bpfd/policy-data.json)', valueHint: 'FILE.json' },
    'lock-timeout': { type: 'string', description: 'seconds a call waits for another bpfd command before UNAVAILABLE (default 10)', valueHint: 'SECONDS' },
    'test-hook': { type: 'string', description: 'tests only: BPFD_TEST_HOOK for every call (STEP=kill|sleep:MS)', valueHint: 'SPEC' },
  },
  async run(p) {
    const { refuseDelegatedEnv, sudoCaller } = await import('../core/caller.js');
    refuseDelegatedEnv(process.env, 'service');
    if (sudoCaller()) {
      const given = [...Object.keys(PATH_FLAGS), 'test-hook'].filter((k) => p.values[k] !== undefined);
      if (given.length) throw usageError(`refusing --${given.join(', --')} under sudo: the user who ran sudo must not choose the service's policy, store or faults`);
    }
    if (process.getuid?.() !== 0) throw usageError('bpfd system service needs root: it loads programs for its callers (start it with systemd: systemd/bpfd.socket)');
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [flag, name] of Object.entries(PATH_FLAGS)) if (typeof p.values[flag] === 'string') env[name] = p.values[flag] as string;
    if (typeof p.values['test-hook'] === 'string') process.env.BPFD_TEST_HOOK = p.values['test-hook'];
    if (!runService) throw usageError('this build of bpfd has no service front end (src/app/main.ts wires it in)');
    const code = await runService({
      address: p.positionals[0] ?? process.env.BPFD_SOCKET ?? 'unix:///var/run/bpfd.sock',
      timeoutS: seconds(p.values.timeout, '--timeout', 15),
      socketGroup: (p.values['socket-group'] as string | undefined) ?? null,
      env,
      lockTimeoutMs: seconds(p.values['lock-timeout'], '--lock-timeout', 10) * 1000,
      log: (line) => process.stderr.write(`bpfd service: ${line}\n`),
    });
    process.exitCode = code;
  },
});
