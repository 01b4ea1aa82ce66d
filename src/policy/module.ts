import { readFileSync } from 'node:fs';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { addFuel, FUEL_GET_EXPORT, FUEL_SET_EXPORT, LEGACY_FUEL_EXPORT, WasmRewriteError } from './wasm-fuel.js';
import { sha256Hex } from '../base/sha256.js';
import { dataDepthProblem, dataFileProblem } from './data-limits.js';
import { mark, timed, timedSync } from '../base/timings.js';

/**
 * Loading a compiled policy module and its data document. Every way this can go wrong becomes a
 * PolicyUnavailable with a message an administrator can act on; the engine turns it into a deny.
 */

/** The entrypoint of the shipped policy, and the one a custom module should export. */
export const DEFAULT_ENTRYPOINT = 'bpfd/authz/decision';

/**
 * Builtins this engine implements in JavaScript for a module: none. Policies compile against
 * policies/capabilities.json, which only lists builtins the wasm target implements itself, so a
 * module asking for a host builtin was built some other way and would fail at its first use.
 */
export const PROVIDED_BUILTINS: ReadonlySet<string> = new Set();

/** wasm memory limit (64 KiB pages): a policy that allocates without bound fails, it does not eat the host. */
const MAX_MEMORY_PAGES = 4096; // 256 MiB

export class PolicyUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyUnavailable';
  }
}

/**
 * Evaluation budget, in charges (one per loop iteration and per call of a function whose calls
 * could add up, as wasm-fuel.ts chooses them). The shipped policy spends ~8,600 on a decision with
 * 10 programs on the interface (bench/policy.ts prints it). 5 million leaves it 500 times that,
 * and stops the test suite's runaway policy after ~50 ms once V8 has optimised the module, ~0.3 s
 * while it still runs baseline code (a long-running call is not tiered up).
 */
export const DEFAULT_FUEL = 5_000_000n;

export interface PolicyModule {
  path: string;
  sha256: string;
  policy: LoadedPolicy;
  entrypoint: string;
  /** the entrypoint's number, as opa_eval takes it */
  entrypointId: number;
  /** sets the module's remaining budget, before every call into it */
  setFuel: (fuel: bigint) => void;
  /** the module's remaining budget: 0 after a trap when it ran out */
  fuelLeft: () => bigint;
  /** the instance's opa_eval */
  opaEval: (...args: number[]) => number;
  /** the instance's memory as a Buffer, replaced when the memory grows (which detaches the old one) */
  view: Buffer;
  /** `view` from the input's address on (where runPolicy writes it) */
  inputView: Buffer;
}

/** The parsed data document, or the reason it cannot be used. */
export type PolicyData = { path: string; ok: true; document: Record<string, unknown> } | { path: string; ok: false; error: string };

// Imported on first use: the SDK pulls in its JS builtins (yaml, regex; ~25 ms unbundled), which
// commands that never consult the policy should not pay for.
let sdkModule: Promise<typeof import('@open-policy-agent/opa-wasm')> | null = null;
const sdk = () => (sdkModule ??= import('@open-policy-agent/opa-wasm'));
// The package's ESM entry only re-exports loadPolicy; loadPolicySync lives on its default export.
type Sdk = typeof import('@open-policy-agent/opa-wasm');
const sdkApi = (m: Sdk): Sdk => (m as Sdk & { default?: Sdk }).default ?? m;

export function readModuleBytes(path: string): { bytes: Buffer; sha256: string } {
  const bytes = readModuleFile(path);
  return { bytes, sha256: sha256Hex(bytes) };
}

function readModuleFile(path: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'the file does not exist' : (e as Error).message;
    throw new PolicyUnavailable(`policy module ${path} cannot be read: ${why}`);
  }
  return bytes;
}

/**
 * Compiles the module with its evaluation budget: added at build time (npm run policy:build does,
 * so a cold `bpfd load` of the shipped policy compiles once and rewrites nothing), or added here
 * and compiled again. Whether it is there is read from the compiled module's exports, which V8
 * already knows, rather than by walking the bytes. A module exporting the budget global is trusted
 * to charge it, as it is trusted with everything else it does inside bpfd: it is installed by
 * root, like bpfd itself.
 */
function compileWithFuel(path: string, bytes: Uint8Array<ArrayBuffer>): WebAssembly.Module {
  const compiled = compile(path, bytes);
  if (hasFuel(compiled)) return compiled;
  try {
    return compile(path, addFuel(bytes, DEFAULT_FUEL).bytes);
  } catch (e) {
    if (!(e instanceof WasmRewriteError)) throw e;
    if (e.unsupported) throw new PolicyUnavailable(`policy module ${path} cannot be given an evaluation budget: ${e.message}`);
    throw new PolicyUnavailable(`policy module ${path} is not a valid WebAssembly module: ${e.message}`);
  }
}

const hasFuel = (m: WebAssembly.Module) => WebAssembly.Module.exports(m).some((e) => e.name === FUEL_SET_EXPORT || e.name === LEGACY_FUEL_EXPORT);

/**
 * The budget's accessors: the functions bpfd's rewrite exports, or, in a module built by an older
 * bpfd, the exported global itself (slower: JavaScriptCore keeps an exported mutable global behind
 * an indirection, which every charge pays for).
 */
function fuelAccess(path: string, exports: WebAssembly.Exports): Pick<PolicyModule, 'setFuel' | 'fuelLeft'> {
  const set = exports[FUEL_SET_EXPORT];
  const get = exports[FUEL_GET_EXPORT];
  if (typeof set === 'function' && typeof get === 'function') {
    return { setFuel: set as PolicyModule['setFuel'], fuelLeft: get as PolicyModule['fuelLeft'] };
  }
  const global = exports[LEGACY_FUEL_EXPORT];
  if (!(FUEL_SET_EXPORT in exports) && global instanceof WebAssembly.Global && typeof global.value === 'bigint') {
    return {
      setFuel: (fuel) => {
        global.value = fuel;
      },
      fuelLeft: () => global.value as bigint,
    };
  }
  throw new PolicyUnavailable(`policy module ${path} exports ${FUEL_SET_EXPORT} or ${LEGACY_FUEL_EXPORT}, but not as the budget bpfd adds; rebuild it`);
}

// Synchronous compile when no early compile was started (prepareModule): awaited at once, the
// async version measured ~20 ms on node against ~3 ms; it pays only when started ahead of need.
function compile(path: string, bytes: Uint8Array<ArrayBuffer>): WebAssembly.Module {
  try {
    return new WebAssembly.Module(bytes);
  } catch (e) {
    throw new PolicyUnavailable(`policy module ${path} is not a valid WebAssembly module: ${message(e)}`);
  }
}

// Compiles started ahead of need (prepareModule), by path, with the bytes they compile.
const early = new Map<string, { bytes: Buffer; compiled: Promise<WebAssembly.Module | null> }>();

/**
 * Starts compiling the module at `path` in the background (WebAssembly.compile: JavaScriptCore
 * and V8 compile on threads of their own), for a command that will consult the policy once it has
 * done other work (loaded addons, read the object, taken the lock). Nothing is trusted or run
 * here: loadModule reads the file again when the policy is consulted, after the checks on the
 * policy files, and uses this compile only for exactly the bytes it reads then. A file that
 * cannot be read or compiled is left to loadModule to report.
 */
export function prepareModule(path: string): void {
  if (early.has(path)) return;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return;
  }
  early.set(path, { bytes, compiled: WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>).catch(() => null) });
  mark('policy compile started');
}

/** The early compile of exactly these bytes, if one was started (it is used once). */
async function earlyCompile(path: string, bytes: Buffer): Promise<WebAssembly.Module | null> {
  const started = early.get(path);
  if (!started) return null;
  early.delete(path);
  return started.bytes.equals(bytes) ? await started.compiled : null;
}

export async function loadModule(path: string): Promise<PolicyModule> {
  const bytes = readModuleFile(path);
  const sha256 = sha256Hex(bytes);
  const ahead = await timed('policy compile', () => earlyCompile(path, bytes));
  // A file read whole is a Buffer over an ArrayBuffer of its own: compile it without a copy.
  const compiled = ahead && hasFuel(ahead) ? ahead : timedSync('policy compile', () => compileWithFuel(path, bytes as Uint8Array<ArrayBuffer>));
  const exports = new Set(WebAssembly.Module.exports(compiled).map((x) => x.name));
  for (const needed of ['opa_eval', 'builtins', 'entrypoints', 'opa_json_dump']) {
    if (!exports.has(needed)) {
      throw new PolicyUnavailable(`policy module ${path} is not an OPA policy (no ${needed} export); build it with opa build -t wasm`);
    }
  }
  let policy: LoadedPolicy;
  try {
    const api = sdkApi(await sdk());
    policy = timedSync('policy instantiate', () => api.loadPolicySync(compiled, { initial: 5, maximum: MAX_MEMORY_PAGES }));
  } catch (e) {
    throw new PolicyUnavailable(`policy module ${path} cannot be instantiated: ${message(e)}`);
  }
  const fuel = fuelAccess(path, instanceExports(policy));
  const missing = requiredBuiltins(policy).filter((b) => !PROVIDED_BUILTINS.has(b));
  if (missing.length > 0) {
    throw new PolicyUnavailable(
      `policy module ${path} needs builtins bpfd does not provide: ${missing.join(', ')}; ` +
        'rebuild it with --capabilities policies/capabilities.json (only builtins native to wasm)',
    );
  }
  const entrypoint = chooseEntrypoint(path, policy);
  const entrypointId = (policy.entrypoints as Record<string, number>)[entrypoint];
  const opaEval = (instanceExports(policy) as OpaExports).opa_eval;
  const view = Buffer.from(policy.mem.buffer as ArrayBuffer);
  return { path, sha256, policy, entrypoint, entrypointId, ...fuel, opaEval, view, inputView: view };
}

const instanceExports = (policy: LoadedPolicy) => (policy.wasmInstance as WebAssembly.Instance).exports;
type OpaExports = Record<string, (...a: number[]) => number>;

/** The builtins the module will call back into the host for (its `builtins` export). */
export function requiredBuiltins(policy: LoadedPolicy): string[] {
  const ex = instanceExports(policy) as OpaExports;
  const mem = new Uint8Array(policy.mem.buffer);
  const start = ex.opa_json_dump(ex.builtins());
  return Object.keys(JSON.parse(Buffer.from(mem.subarray(start, mem.indexOf(0, start))).toString('utf8')) as object).sort();
}

const encoder = new TextEncoder();
const PAGE = 65536;

/**
 * Evaluates the entrypoint with `json` as input, within `fuel` charges, and returns the parsed
 * result set. The SDK's evaluate does the same through an intermediate buffer; this encodes the
 * input straight into the module's memory, past the data (where the SDK puts it too), and reads
 * the result's JSON from there. A trap throws: WebAssembly.RuntimeError, with `fuelLeft()` 0 when
 * the budget ran out.
 */
export function runPolicy(m: PolicyModule, json: string, fuel: bigint): unknown {
  const { policy } = m;
  const at: number = policy.dataHeapPtr;
  let mem = memory(m);
  // UTF-8 takes at most 3 bytes per UTF-16 unit; grow first so the encoder never truncates.
  const room = at + json.length * 3 - mem.length;
  if (room > 0) {
    policy.mem.grow(Math.ceil(room / PAGE));
    mem = memory(m);
  }
  // The view from `at` on is kept between calls: the data, and so `at`, change only with setPolicyData.
  if (m.inputView.byteOffset !== at) m.inputView = mem.subarray(at);
  const { written } = encoder.encodeInto(json, m.inputView);
  m.setFuel(fuel);
  const result = m.opaEval(0, m.entrypointId, policy.dataAddr, at, written, at + written, 0);
  mem = memory(m);
  return JSON.parse(mem.toString('utf8', result, mem.indexOf(0, result)));
}

/** The module's memory as bytes: the cached view, unless the memory grew since (a call can grow it). */
function memory(m: PolicyModule): Buffer {
  const buffer = m.policy.mem.buffer as ArrayBuffer;
  if (m.view.buffer !== buffer) m.inputView = m.view = Buffer.from(buffer);
  return m.view;
}

/** Parses the data document into the module, within `fuel` charges. */
export function setPolicyData(m: PolicyModule, document: Record<string, unknown>, fuel: bigint): void {
  m.setFuel(fuel);
  m.policy.setData(document);
}

function chooseEntrypoint(path: string, policy: LoadedPolicy): string {
  const names = Object.keys(policy.entrypoints as Record<string, number>);
  if (names.includes(DEFAULT_ENTRYPOINT)) return DEFAULT_ENTRYPOINT;
  // A custom module with a single entrypoint needs no naming convention.
  if (names.length === 1) return names[0];
  throw new PolicyUnavailable(
    `policy module ${path} has no entrypoint ${DEFAULT_ENTRYPOINT} (it has: ${names.join(', ') || 'none'}); ` +
      `build it with opa build -t wasm -e ${DEFAULT_ENTRYPOINT}`,
  );
}

/** A missing data file means "no grants"; an unreadable or unparsable one must not mean that. */
export function readData(path: string): PolicyData {
  let text: string;
  const tooBig = dataFileProblem(path);
  if (tooBig) return { path, ok: false, error: tooBig };
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { path, ok: true, document: {} };
    return { path, ok: false, error: `policy data ${path} cannot be read: ${message(e)}` };
  }
  const tooDeep = dataDepthProblem(path, text);
  if (tooDeep) return { path, ok: false, error: tooDeep };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { path, ok: false, error: `policy data ${path} is not valid JSON: ${message(e)}` };
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    const kind = Array.isArray(doc) ? 'an array' : doc === null ? 'null' : typeof doc;
    return { path, ok: false, error: `policy data ${path} must be a JSON object, not ${kind}` };
  }
  return { path, ok: true, document: doc as Record<string, unknown> };
}

/** opa-wasm throws strings as well as Errors. */
export function message(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  if (e && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
  return String(e);
}
