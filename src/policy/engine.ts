import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import vm from 'node:vm';
import type { Paths } from '../core/config.js';
import { deniedError, failedError } from '../core/errors.js';
import type { Store } from '../state/store.js';
import type { PolicyInput, PolicyResult } from './input.js';
import { loadModule, message, PolicyUnavailable, readData, readModuleBytes, type PolicyData, type PolicyModule } from './module.js';

/**
 * The policy engine: evaluates the active module against a request and fails closed. A missing or
 * corrupt module, unusable data, an undefined or malformed result, a throw, or an evaluation past
 * the time limit all deny, with a reason that says which.
 *
 * Time limit: wasm evaluation is synchronous, so it runs through node:vm with `timeout`, whose
 * watchdog terminates the running code (wasm loops included) and lets us catch it. The watchdog
 * is a thread per call (~0.1 ms); a worker thread would cost ~35 ms to start and ~0.1 ms a round
 * trip, and an unguarded call cannot be stopped at all. BPFD_POLICY_TIMEOUT_MS=0 turns the guard
 * off for a trusted module where every microsecond counts. bench/policy.ts measures both paths.
 */

export interface Decision extends PolicyResult {
  /** sha256 of the policy module, null when it could not be read */
  policySha256: string | null;
  /** sha256 of the input JSON the policy saw */
  inputSha256: string;
  durationUs: number;
}

export interface EvaluateOptions {
  /** default BPFD_POLICY_TIMEOUT_MS, else 250; 0 evaluates without a time limit */
  timeoutMs?: number;
}

export interface AuthorizeOptions extends EvaluateOptions {
  paths: Pick<Paths, 'policy' | 'policyData' | 'stateDir'>;
  /** the store to log to; opened from paths.stateDir when absent */
  store?: Store;
  /** keep at most this many decisions (default 10000, or BPFD_DECISION_LOG_MAX) */
  logMax?: number;
}

const DEFAULT_TIMEOUT_MS = 250;

interface Engine {
  module: PolicyModule;
  data: PolicyData;
  dataStamp: string;
  moduleStamp: string;
}

// One engine per process and module path: a service evaluates many requests against one module,
// and a changed module or data file (mtime, size) is picked up at the next request.
const engines = new Map<string, Engine>();
// Runs in the main context: a context of its own would cost ~0.7 ms to create on a cold start.
const RUN_SLOT = '__bpfdPolicyRun';
const runScript = new vm.Script(`globalThis.${RUN_SLOT}()`, { filename: 'bpfd-policy-eval' });

function stamp(path: string): string {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return 'absent';
  }
}

async function engineFor(policyPath: string, dataPath: string): Promise<Engine> {
  const key = `${policyPath}\0${dataPath}`;
  const cached = engines.get(key);
  const moduleStamp = stamp(policyPath);
  const dataStamp = stamp(dataPath);
  if (cached && cached.moduleStamp === moduleStamp) {
    if (cached.dataStamp !== dataStamp) setData(cached, readData(dataPath), dataStamp);
    return cached;
  }
  const module = await loadModule(policyPath);
  const engine: Engine = { module, data: { path: dataPath, ok: true, document: {} }, dataStamp, moduleStamp };
  setData(engine, readData(dataPath), dataStamp);
  engines.set(key, engine);
  return engine;
}

function setData(engine: Engine, data: PolicyData, dataStamp: string): void {
  engine.data = data;
  engine.dataStamp = dataStamp;
  if (data.ok) engine.module.policy.setData(data.document);
}

/** Forget loaded modules (tests; a service reloading on SIGHUP). */
export function resetEngines(): void {
  engines.clear();
}

/** Evaluates without logging: `bpfd policy eval`, and the core of authorize. */
export async function evaluate(input: PolicyInput | unknown, paths: Pick<Paths, 'policy' | 'policyData'>, opts: EvaluateOptions = {}): Promise<Decision> {
  const started = process.hrtime.bigint();
  const json = JSON.stringify(input);
  const inputSha256 = createHash('sha256').update(json).digest('hex');
  const done = (result: PolicyResult, policySha256: string | null): Decision => ({
    ...result,
    policySha256,
    inputSha256,
    durationUs: Number(process.hrtime.bigint() - started) / 1000,
  });

  let engine: Engine;
  try {
    engine = await engineFor(paths.policy, paths.policyData);
  } catch (e) {
    const reason = e instanceof PolicyUnavailable ? e.message : `policy module ${paths.policy} failed to load: ${message(e)}`;
    return done(deny(reason), moduleShaOrNull(paths.policy));
  }
  const sha = engine.module.sha256;
  if (!engine.data.ok) return done(deny(engine.data.error), sha);

  const timeoutMs = opts.timeoutMs ?? timeoutFromEnv();
  let raw: unknown;
  const g = globalThis as Record<string, unknown>;
  try {
    const inputBytes = new TextEncoder().encode(json).buffer as ArrayBuffer;
    const run = () => engine.module.policy.evaluate(inputBytes, engine.module.entrypoint);
    if (timeoutMs === 0) raw = run();
    else {
      g[RUN_SLOT] = run;
      raw = runScript.runInThisContext({ timeout: timeoutMs });
    }
  } catch (e) {
    // Whatever state the instance was left in, do not evaluate with it again.
    engines.delete(`${paths.policy}\0${paths.policyData}`);
    if ((e as NodeJS.ErrnoException).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      return done(deny(`policy evaluation exceeded the ${timeoutMs} ms time limit (BPFD_POLICY_TIMEOUT_MS)`), sha);
    }
    return done(deny(`policy evaluation failed: ${message(e)}`), sha);
  } finally {
    delete g[RUN_SLOT];
  }
  return done(checkResult(raw, engine.module.entrypoint), sha);
}

/** Only `[{result: {allow: boolean, reasons: string[]}}]` counts; the rest is a deny that says why. */
export function checkResult(raw: unknown, entrypoint: string): PolicyResult {
  if (!Array.isArray(raw) || raw.length === 0) {
    return deny(`policy result is undefined (entrypoint ${entrypoint} produced no value)`);
  }
  const result = (raw[0] as { result?: unknown }).result;
  const shape = 'expected {"allow": boolean, "reasons": [string]}';
  if (raw.length > 1 || result === null || typeof result !== 'object' || Array.isArray(result)) {
    return deny(`policy result is malformed: ${shape}, got ${preview(raw.length > 1 ? raw : result)}`);
  }
  const { allow, reasons } = result as { allow?: unknown; reasons?: unknown };
  if (typeof allow !== 'boolean' || !Array.isArray(reasons) || !reasons.every((r) => typeof r === 'string')) {
    return deny(`policy result is malformed: ${shape}, got ${preview(result)}`);
  }
  return { allow, reasons: reasons as string[] };
}

/**
 * Decides a request and records the decision in the store's log. The caller acts only when
 * `allow` is true; `enforce` turns a deny into the error the CLI prints with exit status 3.
 */
export async function authorize(input: PolicyInput, opts: AuthorizeOptions): Promise<Decision> {
  const decision = await evaluate(input, opts.paths, opts);
  try {
    // Loaded here, not at the top: the store pulls in lmdb, which `bpfd version` (policyInfo) and
    // `bpfd policy eval` do not need.
    const { appendDecision } = await import('../state/decision-log.js');
    const { openStore } = await import('../state/store.js');
    appendDecision(
      opts.store ?? openStore(opts.paths.stateDir),
      {
        time: new Date().toISOString(),
        subject: { uid: input.subject.uid, username: input.subject.username, pid: input.subject.pid, via: input.subject.via },
        action: input.action,
        input_sha256: decision.inputSha256,
        allow: decision.allow,
        reasons: decision.reasons,
        policy_sha256: decision.policySha256,
        duration_us: Math.round(decision.durationUs),
      },
      opts.logMax ?? logMaxFromEnv(),
    );
  } catch (e) {
    // An allowed action nobody can audit later is not allowed.
    throw failedError(`cannot record the policy decision in ${opts.paths.stateDir}: ${message(e)}`, [
      `decision was: ${decision.allow ? 'allow' : 'deny'}; nothing was done`,
    ]);
  }
  return decision;
}

/** Throws the CLI's "denied" error (exit 3, reasons one a line) unless the decision allows. */
export function enforce(decision: Decision): void {
  if (!decision.allow) throw deniedError('denied by policy', decision.reasons);
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

function timeoutFromEnv(): number {
  const raw = process.env.BPFD_POLICY_TIMEOUT_MS;
  const v = Number(raw);
  return raw !== undefined && raw !== '' && Number.isFinite(v) && v >= 0 ? v : DEFAULT_TIMEOUT_MS;
}

/** undefined: the decision log's own default */
function logMaxFromEnv(): number | undefined {
  const v = Number(process.env.BPFD_DECISION_LOG_MAX);
  return Number.isInteger(v) && v > 0 ? v : undefined;
}
