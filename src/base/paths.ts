import { statSync } from 'node:fs';
import path from 'node:path';

/**
 * Where bpfd keeps things. Each path has an environment override so that tests (and two
 * administrators experimenting) can run fully isolated instances side by side.
 */
export interface Paths {
  /** runtime dir: lock file, bpffs mount point */
  runtimeDir: string;
  /** bpfd's own bpffs; every kernel object bpfd creates is pinned below it */
  bpffs: string;
  /** LMDB environment directory */
  stateDir: string;
  /** where the bpfd service will listen (BPFD_SOCKET); nothing listens there yet */
  socket: string;
  /** compiled policy module (wasm) */
  policy: string;
  /** true when the policy path is the built-in default (no override, no /etc file) */
  policyIsDefault: boolean;
  /** admin-editable data document for the policy */
  policyData: string;
}

let embeddedPolicy: string | null = null;

/** The executable carries the shipped policy inside it (src/cli/entry.ts says where). */
export function useEmbeddedPolicy(file: string): void {
  embeddedPolicy = file;
}

/** Whether `file` is the policy built into the executable (`version` says so). */
export const isEmbeddedPolicy = (file: string): boolean => file === embeddedPolicy;

/** How messages name a policy module: the shipped one is a file inside the executable. */
export const policyLabel = (file: string): string => (isEmbeddedPolicy(file) ? `built into ${process.execPath}` : file);

export function shippedPolicyPath(): string {
  if (embeddedPolicy !== null) return embeddedPolicy;
  // Run from the sources (tests import build/src/...): the repo's wasm/, three levels up.
  const home = process.env.BPFD_HOME ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
  return path.join(home, 'wasm', 'bpfd.wasm');
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = defaultExists): Paths {
  const runtimeDir = env.BPFD_RUNTIME_DIR ?? '/run/bpfd';
  const etcPolicy = '/etc/bpfd/policy.wasm';
  let policy: string;
  let policyIsDefault = false;
  if (env.BPFD_POLICY) policy = env.BPFD_POLICY;
  else if (exists(etcPolicy)) policy = etcPolicy;
  else {
    policy = shippedPolicyPath();
    policyIsDefault = true;
  }
  return {
    runtimeDir,
    bpffs: path.join(runtimeDir, 'fs'),
    stateDir: env.BPFD_STATE_DIR ?? '/var/lib/bpfd',
    socket: env.BPFD_SOCKET ?? 'unix:///var/run/bpfd.sock',
    policy,
    policyIsDefault,
    policyData: env.BPFD_POLICY_DATA ?? '/etc/bpfd/policy-data.json',
  };
}

function defaultExists(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}
