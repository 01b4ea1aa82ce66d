import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBpfElf } from '../../src/loader/elf.js';
import { elfProgramFacts } from '../../src/policy/facts.js';
import type { PolicyExisting, PolicyInput, PolicyMap, PolicyProgram, PolicySubject } from '../../src/policy/input.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const SHIPPED_POLICY = path.join(ROOT, 'wasm', 'bpfd.wasm');
export const TEST_POLICIES = path.join(ROOT, 'test', 'fixtures', 'policies');
/** The shipped policy as opa built it, before bpfd added its evaluation budget (policy-build.sh). */
export const SHIPPED_POLICY_OPA = path.join(TEST_POLICIES, 'bpfd-opa.wasm');
/**
 * The shipped policy as bpfd built it before the budget's accessors (commit 7472d55): its budget
 * is the mutable i64 global exported as bpfd_fuel. Kept as built then, to check bpfd still
 * accepts a module an older bpfd built; nothing regenerates it.
 */
export const LEGACY_POLICY = path.join(TEST_POLICIES, 'legacy', 'bpfd-fuel-global.wasm');
export const EXAMPLES = path.join(ROOT, 'policies', 'examples');

/** Program facts read from a fixtures/bytecode object, the way bpfd reads them before loading. */
export function fixtureProgram(object: string, name = object, maps: PolicyMap[] = []): PolicyProgram {
  return elfProgramFacts(readBpfElf(path.join(ROOT, 'fixtures', 'bytecode', `${object}.o`)), name, maps);
}

export const XDP_STATS_MAP: PolicyMap = { name: 'xdp_stats', type: 'array', key_size: 4, value_size: 16, max_entries: 1 };

export const subject = (over: Partial<PolicySubject> = {}): PolicySubject => ({
  uid: 1001,
  gid: 1001,
  groups: ['netops'],
  username: 'alice',
  pid: 4242,
  via: 'cli',
  ...over,
});

export const existing = (name: string, priority: number, application: string | null = null): PolicyExisting => ({
  name,
  priority,
  owner: { uid: 0, username: 'root' },
  application,
  metadata: {},
});

/** A load-and-attach request for a fixture program on eth0 at priority 150. */
export function loadInput(over: Partial<PolicyInput> = {}): PolicyInput {
  return {
    subject: subject(),
    action: 'load',
    program: fixtureProgram('xdp_count', 'xdp_count', [XDP_STATS_MAP]),
    attach: { iface: 'eth0', netns: null, priority: 150, proceed_on: ['pass', 'dispatcher_return'] },
    existing: [],
    application: null,
    metadata: {},
    ...over,
  };
}

export interface PolicyEnv {
  dir: string;
  paths: { policy: string; policyData: string; stateDir: string };
  writeData(doc: unknown): void;
  cleanup(): void;
}

/** A temp dir with its own store and data document; the shipped module unless told otherwise. */
export function policyEnv(opts: { policy?: string; data?: unknown | string } = {}): PolicyEnv {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-policy-'));
  const paths = { policy: opts.policy ?? SHIPPED_POLICY, policyData: path.join(dir, 'policy-data.json'), stateDir: path.join(dir, 'state') };
  const writeData = (doc: unknown) => writeFileSync(paths.policyData, typeof doc === 'string' ? doc : JSON.stringify(doc));
  if (opts.data !== undefined) writeData(opts.data);
  return { dir, paths, writeData, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const example = (name: string): unknown => JSON.parse(readFileSync(path.join(EXAMPLES, `${name}.json`), 'utf8'));
