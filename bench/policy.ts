import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { evaluate, resetEngines } from '../src/policy/engine.js';
import type { PolicyInput } from '../src/policy/input.js';
import { DEFAULT_FUEL, loadModule, runPolicy, setPolicyData, type PolicyModule } from '../src/policy/module.js';
import { FUEL_SET_EXPORT } from '../src/policy/wasm-fuel.js';

/**
 * Policy cost, the two figures issues 4 and 10 set targets for, each beside its reference in the
 * same run:
 *  - decision latency in-process with the shipped policy, the netops example data and 10 programs
 *    already on the interface: evaluate() as bpfd runs it (budget included, input serialised)
 *    against OPA's own opa_eval of its own module with the input already in memory (target: at
 *    most 1.3x, p99 under 100 us). Between them, to say where the difference goes: opa_eval of
 *    bpfd's module (the budget alone), the SDK's evaluate, JSON.stringify of the input; then,
 *    in rounds of their own, the budget with the input written and the result read as bpfd does
 *    (runPolicy), and bpfd's JavaScript alone (evaluate's work on OPA's own module, no budget).
 *    The cases run interleaved, in rounds, so that a noisy neighbour weighs on all of them alike.
 *  - the policy's share of a cold `bpfd load` (target < 5 ms): BPFD_TIMINGS of `bpfd load
 *    --dry-run`, where the module compiles in the background from the start of the command, so
 *    the share is what the user waits for; beside it the process's CPU time, and in fresh
 *    processes what compiling the module costs in wall and CPU time, synchronously and in the
 *    background.
 */

const RATIO_TARGET = 1.3;
const P99_TARGET_US = 100;
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

/** Each case n times, in rounds of 500 one case after the other, after a warm-up (lazy compile, JIT). */
async function interleaved(n: number, runs: Array<() => unknown>): Promise<Latency[]> {
  for (const run of runs) for (let i = 0; i < Math.min(n, 2000); i++) await run();
  const samples: number[][] = runs.map(() => []);
  for (let done = 0; done < n; done += 500) {
    for (let k = 0; k < runs.length; k++) {
      const run = runs[k];
      for (let i = 0; i < 500; i++) {
        const t = process.hrtime.bigint();
        await run();
        samples[k].push(Number(process.hrtime.bigint() - t) / 1000);
      }
    }
  }
  return samples.map(percentiles);
}

type OpaExports = Record<string, (...a: number[]) => number>;

/**
 * opa_eval of a loaded module with nothing of bpfd or the SDK around it, the input already in its
 * memory. Parsing the input is the first thing opa_eval does; opa_eval is the whole decision. On
 * bpfd's module the budget is set before each call, as bpfd does.
 */
function opaEvalDirect(policy: LoadedPolicy, json: string): { evalOnce: () => number; parseOnce: () => number } {
  const ex = (policy.wasmInstance as WebAssembly.Instance).exports as OpaExports;
  const setFuel = (policy.wasmInstance as WebAssembly.Instance).exports[FUEL_SET_EXPORT] as ((fuel: bigint) => void) | undefined;
  const input = new TextEncoder().encode(json);
  const at: number = policy.dataHeapPtr;
  const heap = at + input.length;
  const room = heap - policy.mem.buffer.byteLength;
  if (room > 0) policy.mem.grow(Math.ceil(room / 65536));
  new Uint8Array(policy.mem.buffer).set(input, at);
  const entrypoint = (policy.entrypoints as Record<string, number>)['bpfd/authz/decision'];
  const dataAddr: number = policy.dataAddr;
  const evalOnce = setFuel
    ? () => {
        setFuel(DEFAULT_FUEL);
        return ex.opa_eval(0, entrypoint, dataAddr, at, input.length, heap, 0);
      }
    : () => ex.opa_eval(0, entrypoint, dataAddr, at, input.length, heap, 0);
  const result = evalOnce();
  const mem = new Uint8Array(policy.mem.buffer);
  const text = new TextDecoder().decode(mem.subarray(result, mem.indexOf(0, result)));
  if (!text.includes('"allow":true')) throw new Error(`opa_eval on the bench input did not allow: ${text}`);
  // Each parse allocates on the module's heap; put the heap back so that many do not grow it.
  const parseOnce = () => {
    ex.opa_heap_ptr_set(heap);
    return ex.opa_json_parse(at, input.length);
  };
  if (parseOnce() === 0) throw new Error('opa_json_parse rejected the bench input');
  return { evalOnce, parseOnce };
}

/**
 * OPA's own module (no budget) as runPolicy takes a module: what bpfd's JavaScript costs around
 * a decision (serialising the input, writing it into the module's memory, reading the result),
 * the budget aside.
 */
function withoutBudget(policy: LoadedPolicy, data: Record<string, unknown>): PolicyModule {
  policy.setData(data);
  const view = Buffer.from(policy.mem.buffer as ArrayBuffer);
  const entrypoint = 'bpfd/authz/decision';
  return {
    path: POLICY_OPA, sha256: '', policy, entrypoint, entrypointId: (policy.entrypoints as Record<string, number>)[entrypoint],
    setFuel: () => {}, fuelLeft: () => 0n, opaEval: ((policy.wasmInstance as WebAssembly.Instance).exports as OpaExports).opa_eval, view, inputView: view,
  };
}

/**
 * Compiling the module in a fresh process, wall and CPU time (all threads): synchronously, and
 * with WebAssembly.compile awaited, as a load that started it early finally waits for it.
 */
function compileSamples(n: number, mode: 'sync' | 'async'): { wall: number[]; cpu: number[] } {
  const script = `
    const bytes = require('node:fs').readFileSync(${JSON.stringify(POLICY)});
    const c = process.cpuUsage(); const t = process.hrtime.bigint();
    ${mode === 'sync' ? 'new WebAssembly.Module(bytes);' : 'await WebAssembly.compile(bytes);'}
    const wall = Number(process.hrtime.bigint() - t) / 1e6; const u = process.cpuUsage(c);
    process.stdout.write(wall + ' ' + (u.user + u.system) / 1000);`;
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = spawnSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`compile sample failed: ${r.stderr}`);
    const [w, c] = r.stdout.split(' ').map(Number);
    wall.push(w);
    cpu.push(c);
  }
  return { wall, cpu };
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
function cliSamples(n: number, dir: string): { policy: number[]; log: number[]; wait: number[]; cpu: number[]; wall: number[] } {
  const env = { ...process.env, BPFD_TIMINGS: '1', BPFD_RUNTIME_DIR: path.join(dir, 'run'), BPFD_STATE_DIR: path.join(dir, 'state') };
  const bpfd = path.join(ROOT, 'dist', 'bpfd');
  const args = ['load', 'file', '--path', path.join(ROOT, 'fixtures', 'bytecode', 'xdp_count.o'), '--name', 'xdp_count', '--iface', 'lo', '--dry-run'];
  const times = path.join(dir, 'time');
  const out = { policy: [] as number[], log: [] as number[], wait: [] as number[], cpu: [] as number[], wall: [] as number[] };
  for (let i = 0; i < n; i++) {
    // GNU time for the process's CPU time (user + system, every thread), into a file of its own
    const r = spawnSync('/usr/bin/time', ['-f', '%U %S', '-o', times, bpfd, ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`bpfd load --dry-run failed (${r.status}): ${r.stderr}`);
    const span = (name: string) => Number(new RegExp(`${name} ([0-9.]+) ms`).exec(r.stderr)?.[1] ?? NaN);
    out.policy.push(span('policy') - span('decision log'));
    out.log.push(span('decision log'));
    out.wait.push(span('policy compile'));
    out.wall.push(span('process'));
    const [user, sys] = readFileSync(times, 'utf8').trim().split(/\s+/).map(Number);
    out.cpu.push((user + sys) * 1000);
  }
  return out;
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
  const budgeted = sdk.loadPolicySync(readFileSync(POLICY));
  budgeted.setData(data);
  const json = JSON.stringify(input);
  const bytes = new TextEncoder().encode(json).buffer as ArrayBuffer;
  const reference = opaEvalDirect(plain, json);
  const withBudget = opaEvalDirect(budgeted, json);
  const module = await loadModule(POLICY);
  setPolicyData(module, data, DEFAULT_FUEL);
  runPolicy(module, json, DEFAULT_FUEL);
  const spent = DEFAULT_FUEL - module.fuelLeft();
  const [opa, fuelled, raw, bpfd, stringify, parse] = await interleaved(20000, [
    reference.evalOnce,
    withBudget.evalOnce,
    () => plain.evaluate(bytes, 'bpfd/authz/decision'),
    () => evaluate(input, paths),
    () => JSON.stringify(input),
    reference.parseOnce,
  ]);
  // Where the rest goes, measured after the cases above so that runPolicy, called here on two
  // modules, is as evaluate() alone had it when it was measured; against the reference again.
  const unbudgeted = withoutBudget(sdk.loadPolicySync(readFileSync(POLICY_OPA)), data);
  const [opa2, written, jsAlone] = await interleaved(10000, [
    reference.evalOnce,
    () => runPolicy(module, json, DEFAULT_FUEL),
    () => runPolicy(unbudgeted, JSON.stringify(input), DEFAULT_FUEL),
  ]);

  const mark = (ok: boolean) => (ok ? 'met' : 'MISSED');
  const x = (l: Latency, ref = opa) => `${(l.p50 / ref.p50).toFixed(2)}x`;
  const ratio = bpfd.p50 / opa.p50;
  lines.push(
    `policy decision latency, shipped policy, netops data, 10 programs on the interface (${Buffer.byteLength(json)} bytes of input JSON), interleaved, same run:`,
    `  opa_eval, OPA's own module (no budget), called directly  ${p50p99(opa)}   the reference, 1.00x`,
    `  opa_eval of bpfd's module (budget), called directly      ${p50p99(fuelled)}   ${x(fuelled)}: the budget, ${spent} charges of ${DEFAULT_FUEL}`,
    `  wasm evaluate, module as opa built it (SDK)             ${p50p99(raw)}   ${x(raw)}`,
    `  evaluate() as bpfd runs it, budget included            ${p50p99(bpfd)}   ${x(bpfd)}: target <= ${RATIO_TARGET}x ${mark(ratio <= RATIO_TARGET)}, p99 < ${P99_TARGET_US} us ${mark(bpfd.p99 < P99_TARGET_US)}`,
    `  of which in JS: JSON.stringify of the input alone       ${p50p99(stringify)}`,
    `  and inside opa_eval: opa_json_parse of the input        ${p50p99(parse)}`,
    `  where the rest goes, after (against the reference again, ${p50p99(opa2)}):`,
    `    the budget + input written, result read (runPolicy, input JSON given)  ${p50p99(written)}   ${x(written, opa2)}`,
    `    bpfd's JS alone: JSON.stringify + runPolicy on OPA's module, no budget  ${p50p99(jsAlone)}   ${x(jsAlone, opa2)}`,
  );

  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-bench-policy-'));
  try {
    const inputFile = path.join(dir, 'input.json');
    writeFileSync(inputFile, JSON.stringify(input));
    const warmSdk = percentiles(coldSamples(15, true, inputFile));
    const cli = cliSamples(30, dir);
    const cliPolicy = percentiles(cli.policy);
    const sync = compileSamples(15, 'sync');
    const async = compileSamples(15, 'async');
    const med = (v: number[]) => percentiles(v).p50;
    lines.push(
      'policy share of a cold bpfd load (fresh processes, medians of 15, bpfd load --dry-run of 30):',
      `  module load + first decision (build/, SDK preloaded, no early compile)  ${ms(warmSdk.p50)}`,
      `  in bpfd itself: engine import, waiting for the early compile, module`,
      `    read and checks, instantiate, input, decision (bpfd load --dry-run)  ${ms(cliPolicy.p50)}   target < ${COLD_TARGET_MS} ms: ${mark(cliPolicy.p50 < COLD_TARGET_MS)}`,
      `    of which waiting for the compile started at the command's start    ${ms(med(cli.wait))}`,
      `  and the decision-log write after it (LMDB commit)                     ${ms(med(cli.log))}`,
      `  the whole load --dry-run: wall ${ms(med(cli.wall))} (median), CPU (user + system, all threads; GNU time counts in 10 ms steps) mean ${ms(cli.cpu.reduce((a, b) => a + b, 0) / cli.cpu.length)}`,
      `  compiling the module alone in a fresh process: synchronously wall ${ms(med(sync.wall))} CPU ${ms(med(sync.cpu))};`,
      `    WebAssembly.compile awaited at once wall ${ms(med(async.wall))} CPU ${ms(med(async.cpu))}`,
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
