import { statSync } from 'node:fs';
import type { Paths } from '../base/paths.js';
import { denied } from '../base/errors.js';
import type { PolicyInput, PolicyResult } from './input.js';
import { sha256Hex } from '../base/sha256.js';
import { nowMs, timed } from '../base/timings.js';
import {
  DEFAULT_FUEL,
  loadModule,
  message,
  prepareModule,
  PolicyUnavailable,
  readData,
  readModuleBytes,
  runPolicy,
  setPolicyData,
  type PolicyData,
  type PolicyModule,
} from './module.js';

/**
 * The policy engine: evaluates the active module against a request and fails closed. A pure
 * decision: it reads the module and data files and writes nothing; the core records decisions. A missing or
 * corrupt module, unusable data, an undefined or malformed result, a throw, or an evaluation past
 * the time limit all deny, with a reason that says which.
 *
 * Runaway policies: wasm evaluation is synchronous, so nothing outside the call can stop it short
 * of a watchdog (node:vm's timeout starts a thread per call, ~0.2 ms; a worker costs ~35 ms to
 * start). Instead the module carries its own budget (wasm-fuel.ts): every loop iteration and call
 * spends fuel, and the module traps when it is gone. The budget is BPFD_POLICY_FUEL charges,
 * default DEFAULT_FUEL. bench/policy.ts measures the cost.
 */

export interface Decision extends PolicyResult {
  /** sha256 of the policy module, null when it could not be read */
  policySha256: string | null;
  /** the input as the policy saw it, serialised; inputSha256() digests it for a record */
  inputJson: string;
  durationUs: number;
}

export interface EvaluateOptions {
  /** evaluation budget in charges; default BPFD_POLICY_FUEL, else DEFAULT_FUEL */
  fuel?: bigint;
  /** the clock of the RECHECK_MS window, in ms (default nowMs): tests step it instead of waiting */
  now?: () => number;
}

interface Engine {
  module: PolicyModule;
  data: PolicyData;
  dataStamp: string;
  moduleStamp: string;
  /** nowMs() when the stamps were last read */
  checkedAt: number;
}

/**
 * How long an engine is used without looking at its files again. Stat'ing the module and the data
 * file costs ~4 us, a tenth of a decision, paid on every decision by a process that makes many (a
 * service; `bpfd system restore`, one per program). A second is short next to the time it takes
 * to edit and install a file, and a one-shot command never waits on it: a process's first
 * decision always stats.
 */
export const RECHECK_MS = 1000;

// One engine per process and module path: a service evaluates many requests against one module,
// and a changed module or data file (mtime, size, inode) is picked up at the first request after
// RECHECK_MS.
const engines = new Map<string, Engine>();

function stamp(path: string): string {
  // No throw for a missing file: building the error costs more than the stat.
  const st = statSync(path, { throwIfNoEntry: false });
  return st ? `${st.mtimeMs}:${st.size}:${st.ino}` : 'absent';
}

const engineKey = (paths: Pick<Paths, 'policy' | 'policyData'>) => `${paths.policy}\0${paths.policyData}`;

/** The engine for these paths when its files were checked under RECHECK_MS ago: no stat, no await. */
function freshEngine(key: string, now: number): Engine | undefined {
  const cached = engines.get(key);
  return cached && now - cached.checkedAt < RECHECK_MS ? cached : undefined;
}

/** Loads the engine, or checks a cached one against its files' stamps. */
async function engineFor(key: string, paths: Pick<Paths, 'policy' | 'policyData'>, fuel: bigint, now: number): Promise<Engine> {
  const cached = engines.get(key);
  const moduleStamp = stamp(paths.policy);
  const dataStamp = stamp(paths.policyData);
  if (cached && cached.moduleStamp === moduleStamp) {
    cached.checkedAt = now;
    if (cached.dataStamp !== dataStamp) setData(key, cached, readData(paths.policyData), dataStamp, fuel);
    return cached;
  }
  const module = await loadModule(paths.policy);
  const engine: Engine = { module, data: { path: paths.policyData, ok: true, document: {} }, dataStamp, moduleStamp, checkedAt: now };
  engines.set(key, engine);
  setData(key, engine, readData(paths.policyData), dataStamp, fuel);
  return engine;
}

function setData(key: string, engine: Engine, data: PolicyData, dataStamp: string, fuel: bigint): void {
  engine.data = data;
  engine.dataStamp = dataStamp;
  if (!data.ok) return;
  try {
    setPolicyData(engine.module, data.document, fuel);
  } catch (e) {
    // A trap leaves the instance in an unknown state: this request denies, the next reloads.
    engines.delete(key);
    const why = e instanceof WebAssembly.RuntimeError && engine.module.fuelLeft() === 0n ? outOfFuel(fuel) : message(e);
    engine.data = { path: data.path, ok: false, error: `policy data ${data.path} cannot be loaded into the policy: ${why}` };
  }
}

/**
 * Starts compiling the policy module in the background, for a command that will consult the
 * policy after other work (src/cli/programs.ts: load, at the start of the command): the compile
 * then overlaps that work instead of adding to it. Changes no decision: see prepareModule.
 */
export function prepareEngine(paths: Pick<Paths, 'policy' | 'policyData'>): void {
  if (!engines.has(engineKey(paths))) prepareModule(paths.policy);
}

/** Forget loaded modules (tests; a service reloading on SIGHUP). */
export function resetEngines(): void {
  engines.clear();
}

/**
 * Decides a request; records nothing (the core logs decisions: core/authorize.ts). Not an async
 * function: a decision by an engine already loaded and checked is made at once, without the
 * async machinery (a resolved promise is all it allocates); only a load waits.
 */
export function evaluate(input: PolicyInput | unknown, paths: Pick<Paths, 'policy' | 'policyData'>, opts?: EvaluateOptions): Promise<Decision> {
  try {
    const started = nowMs();
    const json = JSON.stringify(input);
    const fuel = opts?.fuel ?? fuelFromEnv();
    const key = engineKey(paths);
    const checkTime = opts?.now?.() ?? started;
    const engine = freshEngine(key, checkTime);
    if (engine) return Promise.resolve(decide(engine, key, json, fuel, started));
    return loadAndDecide(key, paths, json, fuel, started, checkTime);
  } catch (e) {
    return Promise.reject(e);
  }
}

async function loadAndDecide(key: string, paths: Pick<Paths, 'policy' | 'policyData'>, json: string, fuel: bigint, started: number, checkTime: number): Promise<Decision> {
  let engine: Engine;
  try {
    engine = await timed('policy module', () => engineFor(key, paths, fuel, checkTime));
  } catch (e) {
    const reason = e instanceof PolicyUnavailable ? e.message : `policy module ${paths.policy} failed to load: ${message(e)}`;
    return decided(deny(reason), moduleShaOrNull(paths.policy), json, started);
  }
  return decide(engine, key, json, fuel, started);
}

/** The decision of a loaded engine. */
function decide(engine: Engine, key: string, json: string, fuel: bigint, started: number): Decision {
  const sha = engine.module.sha256;
  if (!engine.data.ok) return decided(deny(engine.data.error), sha, json, started);
  let raw: unknown;
  try {
    raw = runPolicy(engine.module, json, fuel);
  } catch (e) {
    // Whatever state the instance was left in, do not evaluate with it again.
    engines.delete(key);
    if (e instanceof WebAssembly.RuntimeError && engine.module.fuelLeft() === 0n) {
      return decided(deny(outOfFuel(fuel)), sha, json, started);
    }
    return decided(deny(`policy evaluation failed: ${message(e)}`), sha, json, started);
  }
  return decided(checkResult(raw, engine.module.entrypoint), sha, json, started);
}

// A plain function and explicit fields: a closure spreading the result into a new object
// measured ~2 us more per decision.
function decided(result: PolicyResult, policySha256: string | null, inputJson: string, started: number): Decision {
  return { allow: result.allow, reasons: result.reasons, policySha256, inputJson, durationUs: (nowMs() - started) * 1000 };
}

/** Only `[{result: {allow: boolean, reasons: string[]}}]` counts; the rest is a deny that says why. */
export function checkResult(raw: unknown, entrypoint: string): PolicyResult {
  const problem = resultProblem(raw, entrypoint);
  if (problem) return deny(problem);
  const { allow, reasons } = (raw as Array<{ result: PolicyResult }>)[0].result;
  return { allow, reasons };
}

/** What is wrong with a raw result set, or null when it is one well-formed decision (`bpfd policy check`). */
export function resultProblem(raw: unknown, entrypoint: string): string | null {
  if (!Array.isArray(raw) || raw.length === 0) {
    return `policy result is undefined (entrypoint ${entrypoint} produced no value)`;
  }
  const result = (raw[0] as { result?: unknown }).result;
  const shape = 'expected {"allow": boolean, "reasons": [string]}';
  if (raw.length > 1 || result === null || typeof result !== 'object' || Array.isArray(result)) {
    return `policy result is malformed: ${shape}, got ${preview(raw.length > 1 ? raw : result)}`;
  }
  const { allow, reasons } = result as { allow?: unknown; reasons?: unknown };
  if (typeof allow !== 'boolean' || !Array.isArray(reasons) || !reasons.every((r) => typeof r === 'string')) {
    return `policy result is malformed: ${shape}, got ${preview(result)}`;
  }
  return null;
}

/**
 * sha256 of the input JSON the policy saw, for the decision log and `bpfd policy eval`. Hashed on
 * demand, not by evaluate: a caller that records nothing does not pay for it (~1.5 us).
 */
export function inputSha256(decision: Pick<Decision, 'inputJson'>): string {
  return sha256Hex(decision.inputJson);
}

/** Throws the `denied` error (reasons as its details) unless the decision allows. */
export function enforce(decision: Decision): void {
  if (!decision.allow) throw denied('denied by policy', decision.reasons);
}

/** The active module, for `bpfd version`: sha256 is null when it cannot be read. */
export function policyInfo(paths: Pick<Paths, 'policy'>): { path: string; sha256: string | null } {
  return { path: paths.policy, sha256: moduleShaOrNull(paths.policy) };
}

function moduleShaOrNull(path: string): string | null {
  try {
    return readModuleBytes(path).sha256;
  } catch {
    return null;
  }
}

function deny(reason: string): PolicyResult {
  return { allow: false, reasons: [reason] };
}

function preview(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

export function outOfFuel(fuel: bigint): string {
  return `policy evaluation ran out of its evaluation budget (${fuel} steps, BPFD_POLICY_FUEL): the policy loops, or does far more work than a decision needs`;
}

/** A positive integer, else the default: a typo must not turn the limit off. */
function fuelFromEnv(): bigint {
  const raw = process.env.BPFD_POLICY_FUEL;
  return raw !== undefined && /^[1-9][0-9]{0,17}$/.test(raw) ? BigInt(raw) : DEFAULT_FUEL;
}

