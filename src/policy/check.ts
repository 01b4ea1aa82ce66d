import { outOfFuel, resultProblem } from './engine.js';
import type { PolicyInput } from './input.js';
import { DEFAULT_FUEL, loadModule, message, PolicyUnavailable, readData, readModuleBytes, requiredBuiltins, runPolicy, setPolicyData, type PolicyModule } from './module.js';
import { hasFuelExport } from './wasm-fuel.js';

/**
 * `bpfd policy check`: whether bpfd will accept a module, found out the way bpfd uses it — loaded
 * (entrypoint, builtins, evaluation budget), given the data document, and asked for a decision on
 * inputs of its own — so an administrator learns before installing /etc/bpfd/policy.wasm, not
 * at the first denied load.
 */

export interface CheckReport {
  ok: boolean;
  path: string;
  sha256: string | null;
  bytes: number | null;
  entrypoint: string | null;
  entrypoints: string[];
  /** builtins the module asks the host for (bpfd provides none) */
  builtins: string[];
  /** "built in": the module carries it (bpfd policy build); "added at load": bpfd rewrites it on every cold start */
  budget: 'built in' | 'added at load' | null;
  data: string;
  smoke: Array<{ input: string; allow: boolean; reasons: string[] }>;
  /** why bpfd would not use it; null when ok */
  problem: string | null;
}

/** Inputs every policy must answer with a well-formed decision (which decision is its own business). */
export const SMOKE_INPUTS: Array<{ name: string; input: PolicyInput }> = (() => {
  const program = {
    name: 'xdp_pass', type: 'xdp', section: 'xdp', license: 'GPL', sha256: '0'.repeat(64),
    insn_count: 2, helpers: [], kfuncs: [], maps: [],
  };
  const attach = { iface: 'eth0', netns: null, priority: 50, proceed_on: ['pass', 'dispatcher_return'] };
  const base = { action: 'load' as const, program, attach, existing: [], application: null, metadata: {} };
  return [
    { name: 'a load by root', input: { subject: { uid: 0, gid: 0, groups: ['root'], username: 'root', pid: 1, via: 'cli' }, ...base } },
    { name: 'a load by uid 65534', input: { subject: { uid: 65534, gid: 65534, groups: ['nogroup'], username: 'nobody', pid: 1, via: 'socket' }, ...base } },
  ];
})();

export async function checkModule(path: string, dataPath: string, fuel: bigint = DEFAULT_FUEL): Promise<CheckReport> {
  const report: CheckReport = {
    ok: false, path, sha256: null, bytes: null, entrypoint: null, entrypoints: [], builtins: [], budget: null, data: dataPath, smoke: [], problem: null,
  };
  const fail = (problem: string) => ({ ...report, problem });
  let bytes: Buffer;
  try {
    ({ bytes, sha256: report.sha256 } = readModuleBytes(path));
  } catch (e) {
    return fail(message(e));
  }
  report.bytes = bytes.length;
  try {
    report.budget = hasFuelExport(bytes) ? 'built in' : 'added at load';
  } catch {
    // not decodable as wasm: loadModule says so in its own words
  }
  let module: PolicyModule;
  try {
    module = await loadModule(path);
  } catch (e) {
    return fail(e instanceof PolicyUnavailable ? e.message : `policy module ${path} failed to load: ${message(e)}`);
  }
  report.entrypoint = module.entrypoint;
  report.entrypoints = Object.keys(module.policy.entrypoints as Record<string, number>).sort();
  report.builtins = requiredBuiltins(module.policy);

  const data = readData(dataPath);
  if (!data.ok) return fail(data.error);
  try {
    setPolicyData(module, data.document, fuel);
  } catch (e) {
    return fail(`policy data ${dataPath} cannot be loaded into the policy: ${trapped(e, module, fuel)}`);
  }
  for (const { name, input } of SMOKE_INPUTS) {
    let raw: unknown;
    try {
      raw = runPolicy(module, JSON.stringify(input), fuel);
    } catch (e) {
      return fail(`evaluating ${name} failed: ${trapped(e, module, fuel)}`);
    }
    const problem = resultProblem(raw, module.entrypoint);
    if (problem) return fail(`on ${name}: ${problem}`);
    const { allow, reasons } = (raw as Array<{ result: { allow: boolean; reasons: string[] } }>)[0].result;
    report.smoke.push({ input: name, allow, reasons });
  }
  return { ...report, ok: true };
}

function trapped(e: unknown, module: PolicyModule, fuel: bigint): string {
  return e instanceof WebAssembly.RuntimeError && module.fuelLeft() === 0n ? outOfFuel(fuel) : message(e);
}
