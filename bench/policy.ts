import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { evaluate, resetEngines } from '../src/policy/engine.js';
import type { PolicyInput } from '../src/policy/input.js';
import { DEFAULT_FUEL, loadModule, runPolicy, setPolicyData } from '../src/policy/module.js';

/**
 * Policy cost, the two figures issue 4 sets targets for:
 *  - decision latency in-process with the shipped policy, the netops example data and 10 programs
 *    already on the interface (target p50 < 10 us): the SDK's evaluate on the module as opa built
 *    it (no budget), and evaluate() as bpfd runs it (budget included, input serialised); beside
 *    them the floor OPA's own code sets for this input, which no wrapper can go below;
 *  - the policy's share of a cold `bpfd load`: a fresh process loading the module and deciding
 *    once (target < 5 ms), with and without importing the opa-wasm SDK.
 */

const P50_TARGET_US = 10;
const COLD_TARGET_MS = 5;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const POLICY = path.join(ROOT, 'wasm', 'bpfd.wasm');
// the same policy as opa built it, without bpfd's evaluation budget (scripts/policy-build.sh)
const POLICY_OPA = path.join(ROOT, 'test', 'fixtures', 'policies', 'bpfd-opa.wasm');
const DATA = path.join(ROOT, 'policies', 'examples', 'netops.json');

function benchInput(): PolicyInput {
  const existing = Array.from({ length: 10 }, (_, i) => ({
    name: `prog${i}`,
    priority: 100 + i * 50,
    owner: { uid: 1001, username: 'alice' },
    application: ['firewall', 'monitoring', null][i % 3],
    metadata: { team: 'net' },
  }));
  return {
    subject: { uid: 1001, gid: 1001, groups: ['netops'], username: 'alice', pid: 4242, via: 'cli' },
    action: 'load',
    program: {
      name: 'xdp_count', type: 'xdp', section: 'xdp', license: 'GPL', sha256: '0'.repeat(64), insn_count: 15,
      helpers: ['bpf_map_lookup_elem'], kfuncs: [],
      maps: [{ name: 'xdp_stats', type: 'array', key_size: 4, value_size: 16, max_entries: 1 }],
    },
    attach: { iface: 'eth0', netns: null, priority: 125, proceed_on: ['pass', 'dispatcher_return'] },
    existing,
    application: 'ratelimit',
    metadata: {},
  };
}

type Latency = { p50: number; p99: number };

function percentiles(samples: number[]): Latency {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: s[Math.floor(s.length * 0.5)], p99: s[Math.floor(s.length * 0.99)] };
}

const us = (n: number) => `${n.toFixed(1)} us`;
const p50p99 = (l: Latency) => `p50 ${us(l.p50)}  p99 ${us(l.p99)}`;
const ms = (n: number) => `${n.toFixed(2)} ms`;

async function latency(n: number, run: () => unknown): Promise<Latency> {
  for (let i = 0; i < Math.min(n, 1000); i++) await run(); // warm up: lazy wasm compile, JIT
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await run();
    samples.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return percentiles(samples);
}

type OpaExports = Record<string, (...a: number[]) => number>;

/**
 * What OPA's own wasm costs for this input, with nothing of bpfd or the SDK around it: the module
 * as opa built it, the input already in its memory. Parsing the input is the first thing opa_eval
 * does; opa_eval is the whole decision.
 */
async function opaFloor(policy: LoadedPolicy, json: string): Promise<{ parse: Latency; evaluate: Latency }> {
  const ex = (policy.wasmInstance as WebAssembly.Instance).exports as OpaExports;
  const input = new TextEncoder().encode(json);
  const at: number = policy.dataHeapPtr;
  const heap = at + input.length;
  const room = heap - policy.mem.buffer.byteLength;
  if (room > 0) policy.mem.grow(Math.ceil(room / 65536));
  new Uint8Array(policy.mem.buffer).set(input, at);
  const entrypoint = (policy.entrypoints as Record<string, number>)['bpfd/authz/decision'];
  const evalOnce = () => ex.opa_eval(0, entrypoint, policy.dataAddr, at, input.length, heap, 0);
  const result = evalOnce();
  const mem = new Uint8Array(policy.mem.buffer);
  const text = new TextDecoder().decode(mem.subarray(result, mem.indexOf(0, result)));
  if (!text.includes('"allow":true')) throw new Error(`opa_eval on the bench input did not allow: ${text}`);
  // Each parse allocates on the module's heap; put the heap back so 20000 of them do not grow it.
  const parseOnce = () => {
    ex.opa_heap_ptr_set(heap);
    return ex.opa_json_parse(at, input.length);
  };
  if (parseOnce() === 0) throw new Error('opa_json_parse rejected the bench input');
  return { parse: await latency(20000, parseOnce), evaluate: await latency(20000, evalOnce) };
}

/** One fresh node process per sample: what a `bpfd load` pays for the policy. */
function coldSamples(n: number, preloadSdk: boolean, inputFile: string): number[] {
  const engine = pathToFileURL(path.join(ROOT, 'build', 'src', 'policy', 'engine.js')).href;
  const script = `
    ${preloadSdk ? "await import('@open-policy-agent/opa-wasm');" : ''}
    const { evaluate } = await import(${JSON.stringify(engine)});
    const input = JSON.parse((await import('node:fs')).readFileSync(${JSON.stringify(inputFile)}, 'utf8'));
    const t = process.hrtime.bigint();
    const d = await evaluate(input, { policy: ${JSON.stringify(POLICY)}, policyData: ${JSON.stringify(DATA)} });
    if (!d.allow) throw new Error('bench input was denied: ' + d.reasons.join('; '));
    process.stdout.write(String(Number(process.hrtime.bigint() - t) / 1e6));`;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cold sample failed: ${r.stderr}`);
    out.push(Number(r.stdout));
  }
  return out;
}

/**
 * The policy's share of a real cold command: `bpfd load --dry-run` (decides exactly as a load
 * does, then stops) run from the bundle with BPFD_TIMINGS=1, which reports the policy span
 * (engine import, module load, input, decision) and the decision-log write inside it.
 */
function cliSamples(n: number, dir: string): { policy: number[]; log: number[] } {
  const env = { ...process.env, BPFD_TIMINGS: '1', BPFD_RUNTIME_DIR: path.join(dir, 'run'), BPFD_STATE_DIR: path.join(dir, 'state') };
  const bpfd = path.join(ROOT, 'dist', 'bpfd');
  const args = ['load', 'file', '--path', path.join(ROOT, 'fixtures', 'bytecode', 'xdp_count.o'), '--name', 'xdp_count', '--iface', 'lo', '--dry-run'];
  const policy: number[] = [];
  const log: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = spawnSync(bpfd, args, { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`bpfd load --dry-run failed (${r.status}): ${r.stderr}`);
    const span = (name: string) => Number(new RegExp(`${name} ([0-9.]+) ms`).exec(r.stderr)?.[1] ?? NaN);
    policy.push(span('policy') - span('decision log'));
    log.push(span('decision log'));
  }
  return { policy, log };
}

export async function benchPolicy(): Promise<string[]> {
  const input = benchInput();
  const paths = { policy: POLICY, policyData: DATA };
  const lines: string[] = [];
  const sanity = await evaluate(input, paths);
  if (!sanity.allow) throw new Error(`bench input was denied: ${sanity.reasons.join('; ')}`);

  const data = JSON.parse(readFileSync(DATA, 'utf8')) as Record<string, unknown>;
  // loadPolicySync is only on the SDK's CommonJS export.
  const sdk = createRequire(import.meta.url)('@open-policy-agent/opa-wasm') as typeof import('@open-policy-agent/opa-wasm');
  const plain = sdk.loadPolicySync(readFileSync(POLICY_OPA));
  plain.setData(data);
  const json = JSON.stringify(input);
  const bytes = new TextEncoder().encode(json).buffer as ArrayBuffer;
  const raw = await latency(20000, () => plain.evaluate(bytes, 'bpfd/authz/decision'));
  const bpfd = await latency(20000, () => evaluate(input, paths));
  const floor = await opaFloor(plain, json);

  const module = await loadModule(POLICY);
  setPolicyData(module, data, DEFAULT_FUEL);
  runPolicy(module, json, DEFAULT_FUEL);
  const spent = DEFAULT_FUEL - (module.fuel.value as bigint);
  const mark = (v: number, target: number) => (v < target ? 'met' : 'MISSED');
  lines.push(
    'policy decision latency, shipped policy, netops data, 10 programs on the interface:',
    `  wasm evaluate, module as opa built it (SDK)  ${p50p99(raw)}`,
    `  evaluate() as bpfd runs it, budget included  ${p50p99(bpfd)}   target p50 < ${P50_TARGET_US} us: ${mark(bpfd.p50, P50_TARGET_US)}`,
    `  budget spent by this decision                ${spent} of ${DEFAULT_FUEL} (BPFD_POLICY_FUEL)`,
    `  the floor set by OPA's own code, same run, for this input (${Buffer.byteLength(json)} bytes of JSON):`,
    `    opa_json_parse of the input alone (OPA's wasm)           ${p50p99(floor.parse)}`,
    `    opa_eval, OPA's own module (no budget), called directly  ${p50p99(floor.evaluate)}   ` +
      (floor.evaluate.p50 < P50_TARGET_US ? `under the ${P50_TARGET_US} us target` : `over the ${P50_TARGET_US} us target by itself`),
  );

  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-bench-policy-'));
  try {
    const inputFile = path.join(dir, 'input.json');
    writeFileSync(inputFile, JSON.stringify(input));
    const warmSdk = percentiles(coldSamples(15, true, inputFile));
    const cli = cliSamples(15, dir);
    const cliPolicy = percentiles(cli.policy);
    lines.push(
      'policy share of a cold bpfd load (fresh process, median of 15):',
      `  module load + first decision (build/, SDK preloaded)  ${ms(warmSdk.p50)}`,
      `  in bpfd itself: engine and SDK import, module load,`,
      `    input, decision (bpfd load --dry-run, BPFD_TIMINGS)  ${ms(cliPolicy.p50)}   target < ${COLD_TARGET_MS} ms: ${mark(cliPolicy.p50, COLD_TARGET_MS)}`,
      `  and the decision-log write after it (LMDB commit)     ${ms(percentiles(cli.log).p50)}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
    resetEngines();
  }
  return lines;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const line of await benchPolicy()) console.log(line);
}
