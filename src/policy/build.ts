import { spawnSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { failed, invalidInput } from '../base/errors.js';
import { sha256Hex } from '../base/sha256.js';
import { DEFAULT_ENTRYPOINT, DEFAULT_FUEL } from './module.js';
import { addFuel, type FuelStats } from './wasm-fuel.js';

/**
 * Builds Rego into a module bpfd accepts, the way bpfd's own wasm/bpfd.wasm is built: `opa build
 * -t wasm` against the wasm-only capabilities (so the module needs no builtin from bpfd) and the
 * entrypoint bpfd evaluates, then bpfd's evaluation budget added to the module (so a cold start
 * does not rewrite it). No `-O`: the optimiser partially evaluates against the bundle's empty data
 * and folds the rules that read the data document away.
 */

/** The OPA release bpfd's own policy and capabilities file are made with. */
export const OPA_VERSION = 'v1.22.0';

export interface BuildRequest {
  /** directories (their *.rego, tests excluded) and .rego files */
  sources: string[];
  out: string;
  /** default: `<package>/decision` when the sources declare one package, else bpfd/authz/decision */
  entrypoint?: string;
  /** the capabilities file's text (capabilities.ts) */
  capabilities: string;
  /** path of opa; default $OPA, opa on PATH, then ~/go/bin/opa (where go install puts it) */
  opa?: string;
  /** also write the module as opa built it, before the budget (the shipped policy's test fixture) */
  opaOutput?: string;
}

export interface BuildResult {
  out: string;
  bytes: number;
  sha256: string;
  entrypoint: string;
  sources: string[];
  opa: string;
  fuel: FuelStats;
}

export function findOpa(env: NodeJS.ProcessEnv = process.env): string | null {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (env.OPA) return executable(env.OPA) ? env.OPA : null;
  for (const dir of (env.PATH ?? '').split(':').filter(Boolean)) {
    if (executable(path.join(dir, 'opa'))) return path.join(dir, 'opa');
  }
  const goBin = path.join(env.HOME ?? os.homedir(), 'go', 'bin', 'opa');
  return executable(goBin) ? goBin : null;
}

/** The .rego files a build takes: a directory's own (not its tests, not its subdirectories), or a file. */
export function regoSources(args: string[]): string[] {
  if (args.length === 0) throw invalidInput('give the Rego to build: a directory or .rego files (see: bpfd policy build --help)');
  const out: string[] = [];
  for (const a of args) {
    const st = statSync(a, { throwIfNoEntry: false });
    if (!st) throw invalidInput(`${a}: no such file or directory`);
    if (st.isDirectory()) {
      const files = readdirSync(a).filter((f) => f.endsWith('.rego') && !f.endsWith('_test.rego')).sort();
      if (files.length === 0) throw invalidInput(`${a}: no .rego files in it (tests, *_test.rego, are left out)`);
      out.push(...files.map((f) => path.resolve(a, f)));
    } else if (a.endsWith('.rego')) out.push(path.resolve(a));
    else throw invalidInput(`${a}: not a .rego file or a directory`);
  }
  return [...new Set(out)];
}

/** `<package path>/decision` when every source declares the same package. */
export function defaultEntrypoint(sources: string[]): string {
  const packages = new Set(sources.map((f) => /^package\s+([\w.]+)/m.exec(readFileSync(f, 'utf8'))?.[1] ?? ''));
  const [only] = [...packages];
  return packages.size === 1 && only ? `${only.replace(/\./g, '/')}/decision` : DEFAULT_ENTRYPOINT;
}

function writeModule(file: string, bytes: Uint8Array): void {
  try {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    writeFileSync(file, bytes);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOENT' ? 'no such directory' : (e as Error).message;
    throw failed(`cannot write ${file}: ${why}`);
  }
}

export function buildPolicy(req: BuildRequest): BuildResult {
  const opa = req.opa ?? findOpa();
  if (!opa) {
    throw failed('opa is not on PATH: bpfd policy build runs opa build -t wasm', [
      `install it with: go install github.com/open-policy-agent/opa@${OPA_VERSION} (it lands in ~/go/bin), or set OPA=/path/to/opa`,
      'or build it yourself with the capabilities from bpfd policy capabilities (see policies/README.md)',
    ]);
  }
  const sources = regoSources(req.sources);
  const entrypoint = req.entrypoint ?? defaultEntrypoint(sources);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bpfd-policy-build-'));
  try {
    // Only the chosen modules go in: a directory's tests and data files are not part of the bundle.
    // opa runs in the temp dir on relative names, so the module it builds (which names its source
    // files) is the same byte for byte wherever and whenever it is built.
    const names = sources.map((f, i, all) => (all.filter((g) => path.basename(g) === path.basename(f)).length > 1 ? `${i}-` : '') + path.basename(f));
    mkdirSync(path.join(tmp, 'src'));
    sources.forEach((f, i) => copyFileSync(f, path.join(tmp, 'src', names[i])));
    writeFileSync(path.join(tmp, 'capabilities.json'), req.capabilities);
    const bundle = path.join(tmp, 'bundle.tar.gz');
    const built = spawnSync(opa, ['build', '-t', 'wasm', '-e', entrypoint, '--capabilities', 'capabilities.json', '-o', bundle, 'src'], { cwd: tmp, encoding: 'utf8' });
    if (built.error) throw failed(`cannot run ${opa}: ${built.error.message}`);
    if (built.status !== 0) {
      // opa names the copies; name the admin's files instead
      let said = `${built.stderr}${built.stdout}`;
      names.forEach((n, i) => (said = said.split(`src/${n}`).join(sources[i])));
      throw invalidInput(`opa build failed for entrypoint ${entrypoint}`, [
        ...said.trim().split('\n'),
        ...(/undefined function|unsafe built-in|not supported/i.test(said) ? ['a builtin outside the capabilities is used: bpfd policy capabilities lists those a module may use'] : []),
        ...(/entrypoint/i.test(said) ? ['give the rule bpfd evaluates with --entrypoint PKG/PATH/RULE (e.g. mycorp/bpf/decision)'] : []),
      ]);
    }
    const untar = spawnSync('tar', ['-xzf', bundle, '-C', tmp, '/policy.wasm'], { encoding: 'utf8' });
    if (untar.status !== 0) throw failed(`cannot extract policy.wasm from opa's bundle: ${untar.stderr || untar.error?.message}`);
    const raw = readFileSync(path.join(tmp, 'policy.wasm'));
    const { bytes, stats } = addFuel(raw, DEFAULT_FUEL);
    writeModule(req.out, bytes);
    if (req.opaOutput) writeModule(req.opaOutput, raw);
    return { out: path.resolve(req.out), bytes: bytes.length, sha256: sha256Hex(bytes), entrypoint, sources, opa, fuel: stats };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

