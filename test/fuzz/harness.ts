import { spawn } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BpfdError } from '../../src/base/errors.js';
import { parseBpfElf } from '../../src/loader/elf.js';
import { tarOneFile } from '../../src/oci/build.js';
import { objectFromLayer } from '../../src/oci/layer.js';
import { elfProgramFacts } from '../../src/policy/facts.js';
import { bpfdArgv, FIXTURES, kernelProgIds, makeEnv, ROOT, type Env } from '../helpers/bpfd.js';
import { layoutOf, mutate, onlyIgnoredBytesChanged, STRATEGY_NAMES, type Mutant } from './mutate.js';

/**
 * The fuzzing harness: mutants of every fixture object go through the shipped executable's
 * `load file`, which must answer with exit 0, 1 or 2, never a signal, a hang or "internal
 * error"; a load that succeeds must unload again; and after each batch `doctor` must be healthy
 * with nothing of bpfd's left in the kernel or the bpffs.
 *
 * Spawning is what costs (a process start is ~100 ms here, the gate ~0.1 ms), so every mutant is
 * first judged in-process by the same gate and reader code the executable runs, and sorted into
 * three strata:
 * - passed the gate and changed bytes libbpf reads: these reach libbpf and the kernel, where
 *   crashes live. Every one goes through the executable.
 * - refused by the gate: the first of each strategy and kind of message, and one in
 *   `sampleEvery` of the rest, go through the executable, which must refuse them with exit 2 and
 *   the very message the in-process gate gave.
 * - passed the gate but changed only DWARF bytes, which libbpf skips: to the kernel the original.
 *   One in `sampleEvery` goes through the executable.
 * `spawnAll` sends every mutant through the executable. Workers run concurrently, each with its
 * own store and bpffs, so they never wait for each other's writer lock.
 */

export const HOSTILE_DIR = path.join(ROOT, 'fixtures', 'hostile');

export interface FuzzOptions {
  seed: number;
  count: number;
  concurrency: number;
  /** every refused mutant through the executable too, not only a sample */
  spawnAll?: boolean;
  sampleEvery?: number;
  /** mutants per batch between the doctor / kernel checks, per worker */
  batch?: number;
  /** keep failing mutants under fixtures/hostile/ (the CLI does; a test run prints them) */
  keepFailures?: boolean;
  log?: (line: string) => void;
  /** set to stop early: workers finish the mutant at hand, check and clean up */
  stop?: { requested: boolean };
}

export interface FuzzFailure {
  seed: number;
  index: number;
  fixture: string;
  strategy: string;
  what: string;
  problem: string;
  kept?: string;
}

export interface FuzzReport {
  seed: number;
  mutants: number;
  spawned: number;
  exits: Record<string, number>;
  inProcessRefused: number;
  /** passed the gate, but changed only bytes libbpf skips (DWARF): the original to the kernel */
  equivalent: number;
  loaded: number;
  /** mutants also judged by `policy eval --object` in the executable */
  evaluated: number;
  /** layers (the mutant as a gzip tar, and that tar with bytes of its own damaged) through the extractor */
  layers: number;
  byStrategy: Record<string, { mutants: number; spawned: number; refused: number; loaded: number }>;
  failures: FuzzFailure[];
  seconds: number;
}

interface Fixture {
  file: string;
  bytes: Buffer;
  program: string;
  layout: ReturnType<typeof layoutOf>;
}

export function fixtures(): Fixture[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.o'))
    .sort()
    .map((file) => {
      const bytes = readFileSync(path.join(FIXTURES, file));
      const elf = parseBpfElf(file, bytes);
      return { file, bytes, program: elf.programs[0].name, layout: layoutOf(bytes) };
    });
}

/** Mutant `i` of the run: fixtures in turn, each with the strategies in turn. */
export function mutantOf(all: Fixture[], seed: number, i: number): { fx: Fixture; m: Mutant } {
  const fx = all[i % all.length];
  return { fx, m: mutate(fx.bytes, fx.layout, seed, Math.floor(i / all.length)) };
}

/** What bpfd's own code makes of the mutant before libbpf: null when it goes on to libbpf. */
export function judgeInProcess(file: string, bytes: Buffer, program: string): { refused: string } | { internal: string } | null {
  try {
    const elf = parseBpfElf(file, bytes);
    if (!elf.programs.some((p) => p.name === program)) return { refused: `function ${program} is not a program` };
    elfProgramFacts(elf, program);
    return null;
  } catch (e) {
    if (e instanceof BpfdError && e.kind === 'invalid') return { refused: e.message };
    return { internal: (e as Error).stack ?? String(e) };
  }
}

/**
 * The image layer extractor (src/oci/layer.ts) on the mutant packed as an image layer, and on
 * that layer with some of its own bytes (gzip and tar headers included) overwritten: it must
 * answer with an object or a BpfdError, never anything else. A problem, or null.
 */
function judgeLayers(bytes: Buffer, seed: number, index: number): string | null {
  const layer = gzipSync(tarOneFile('prog.o', bytes));
  const damaged = Buffer.from(layer);
  let x = (seed * 7919 + index * 104729) >>> 0;
  for (let k = 0; k < 4; k++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    damaged[x % damaged.length] = x >>> 24;
  }
  for (const [what, l] of [['the mutant as a gzip tar layer', layer], ['that layer with 4 bytes damaged', damaged]] as const) {
    try {
      objectFromLayer(l, 'application/vnd.oci.image.layer.v1.tar+gzip');
    } catch (e) {
      if (!(e instanceof BpfdError)) return `the layer extractor failed on ${what}: ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}`;
    }
  }
  return null;
}

interface Spawned {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function runAsync(env: Env, args: string[], timeoutMs = 30_000): Promise<Spawned> {
  const [cmd, ...rest] = bpfdArgv(...args);
  return new Promise((resolve) => {
    const child = spawn(cmd, rest, { env: env.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}

/** The gate's message without the path (mutants live at different paths). */
const messageClass = (msg: string) => msg.replace(/^.*? is not a valid BPF object: /, '').replace(/\([^)]*\)/g, '').replace(/\d+/g, 'N').split(/[:,]/)[0];

export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const log = opts.log ?? (() => {});
  const started = Date.now();
  const all = fixtures();
  const sampleEvery = opts.sampleEvery ?? 8;
  const batch = opts.batch ?? 100;
  const report: FuzzReport = {
    seed: opts.seed,
    mutants: 0,
    spawned: 0,
    exits: {},
    inProcessRefused: 0,
    equivalent: 0,
    loaded: 0,
    evaluated: 0,
    layers: 0,
    byStrategy: Object.fromEntries(STRATEGY_NAMES.map((s) => [s, { mutants: 0, spawned: 0, refused: 0, loaded: 0 }])),
    failures: [],
    seconds: 0,
  };
  const seenClasses = new Set<string>();
  let next = 0;

  const fail = (i: number, fx: Fixture, m: Mutant, problem: string) => {
    const f: FuzzFailure = { seed: opts.seed, index: i, fixture: fx.file, strategy: m.strategy, what: m.what, problem };
    if (opts.keepFailures) {
      mkdirSync(HOSTILE_DIR, { recursive: true });
      f.kept = path.join(HOSTILE_DIR, `${fx.file.replace(/\.o$/, '')}-s${opts.seed}-i${i}.o`);
      writeFileSync(f.kept, m.bytes);
      writeFileSync(f.kept.replace(/\.o$/, '.json'), JSON.stringify({ program: fx.program, ...f, kept: undefined }, null, 2) + '\n');
    }
    report.failures.push(f);
    log(`FAIL seed=${opts.seed} index=${i} fixture=${fx.file} strategy=${m.strategy} (${m.what}): ${problem}${f.kept ? `\n  kept as ${path.relative(ROOT, f.kept)}` : ''}`);
  };

  async function worker(w: number) {
    const env = makeEnv();
    const mutantPath = path.join(env.dir, `mutant-${w}.o`);
    let sinceCheck = 0;
    const loadedIds: number[] = [];
    try {
      for (let i = next++; i < opts.count && !opts.stop?.requested; i = next++) {
        const { fx, m } = mutantOf(all, opts.seed, i);
        const st = report.byStrategy[m.strategy];
        st.mutants++;
        report.mutants++;
        const layerProblem = judgeLayers(m.bytes, opts.seed, i);
        report.layers += 2;
        if (layerProblem) fail(i, fx, m, layerProblem);
        const judged = judgeInProcess(mutantPath, m.bytes, fx.program);
        if (judged && 'internal' in judged) {
          fail(i, fx, m, `bpfd's reader failed in-process: ${judged.internal.split('\n').slice(0, 3).join(' | ')}`);
          continue;
        }
        let sampled = true;
        if (judged) {
          report.inProcessRefused++;
          st.refused++;
          const cls = `${m.strategy}:${messageClass(judged.refused)}`;
          sampled = !seenClasses.has(cls) || i % sampleEvery === 0;
          seenClasses.add(cls);
        } else if (onlyIgnoredBytesChanged(fx.bytes, fx.layout, m.bytes)) {
          report.equivalent++;
          sampled = i % sampleEvery === 0;
        }
        if (!sampled && !opts.spawnAll) continue;
        writeFileSync(mutantPath, m.bytes);
        const r = await runAsync(env, ['load', 'file', '--path', mutantPath, '--name', fx.program, '-o', 'json']);
        report.spawned++;
        st.spawned++;
        // the policy's view of the same bytes: `policy eval --object` reads them with the same code
        if (i % 4 === 0) {
          const e = await runAsync(env, ['policy', 'eval', '--object', mutantPath, '--name', fx.program, '-o', 'json']);
          report.evaluated++;
          if (e.timedOut || e.signal) fail(i, fx, m, `policy eval --object ${e.timedOut ? 'did not finish within 30 s' : `was killed by ${e.signal}`}`);
          else if (![0, 1, 2, 3].includes(e.status ?? -1)) fail(i, fx, m, `policy eval --object exited ${e.status}: ${e.stderr.slice(0, 300)}`);
          else if (/internal error/i.test(e.stdout + e.stderr)) fail(i, fx, m, `policy eval --object: internal error: ${e.stderr.slice(0, 300)}`);
          else if (judged && (e.status !== 2 || !e.stderr.includes(judged.refused))) {
            fail(i, fx, m, `refused in-process with "${judged.refused}", but policy eval --object answered exit ${e.status}: ${e.stderr.slice(0, 300)}`);
          }
        }
        const key = r.timedOut ? 'timeout' : r.signal ? `signal ${r.signal}` : `exit ${r.status}`;
        report.exits[key] = (report.exits[key] ?? 0) + 1;
        const out = r.stdout + r.stderr;
        if (r.timedOut) fail(i, fx, m, 'load file did not finish within 30 s');
        else if (r.signal) fail(i, fx, m, `load file was killed by ${r.signal}`);
        else if (r.status !== 0 && r.status !== 1 && r.status !== 2) fail(i, fx, m, `load file exited ${r.status}: ${r.stderr.slice(0, 300)}`);
        else if (/internal error/i.test(out)) fail(i, fx, m, `internal error: ${r.stderr.slice(0, 300)}`);
        else if (judged && (r.status !== 2 || !r.stderr.includes(judged.refused))) {
          fail(i, fx, m, `refused in-process with "${judged.refused}", but the executable answered exit ${r.status}: ${r.stderr.slice(0, 300)}`);
        } else if (r.status === 0) {
          report.loaded++;
          st.loaded++;
          let id: number | undefined;
          try {
            id = JSON.parse(r.stdout).id;
          } catch {
            fail(i, fx, m, `load file exited 0 without a JSON answer: ${r.stdout.slice(0, 200)}`);
          }
          if (id !== undefined) {
            loadedIds.push(id);
            const u = await runAsync(env, ['unload', String(id)]);
            if (u.status !== 0) fail(i, fx, m, `unload ${id} after a successful load exited ${u.status ?? u.signal}: ${u.stderr.slice(0, 300)}`);
          }
        }
        if (++sinceCheck >= batch) {
          sinceCheck = 0;
          await checkClean(env, loadedIds.splice(0), (problem) => fail(i, fx, m, `after the batch ending here: ${problem}`));
        }
      }
      await checkClean(env, loadedIds.splice(0), (problem) => report.failures.push({ seed: opts.seed, index: -1, fixture: '-', strategy: '-', what: 'end of run', problem }));
    } finally {
      env.cleanup();
    }
  }

  const progress = setInterval(() => log(`  ${report.mutants}/${opts.count} mutants, ${report.spawned} through the executable, ${report.failures.length} failures, ${Math.round((Date.now() - started) / 1000)} s`), 15_000);
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, (_, w) => worker(w)));
  } finally {
    clearInterval(progress);
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

/** doctor healthy, nothing pinned or recorded, and the programs this worker loaded gone. */
async function checkClean(env: Env, loadedIds: number[], problem: (p: string) => void) {
  const d = await runAsync(env, ['doctor']);
  if (d.status !== 0) problem(`doctor is not healthy (exit ${d.status ?? d.signal}): ${(d.stdout + d.stderr).slice(0, 400)}`);
  const pins = env.pins();
  if (pins.length) problem(`pins left in the bpffs: ${pins.slice(0, 5).join(', ')}`);
  const l = await runAsync(env, ['list', '-o', 'json']);
  if (l.status !== 0 || l.stdout.trim() !== '[]') problem(`the store still lists programs: ${l.stdout.slice(0, 200)}`);
  if (loadedIds.length === 0) return;
  // the kernel frees programs after an RCU grace period: give it a moment before calling it a leak
  for (let attempt = 0; attempt < 50; attempt++) {
    const live = kernelProgIds();
    if (!loadedIds.some((id) => live.has(id))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  const live = kernelProgIds();
  problem(`programs still in the kernel after unload: ${loadedIds.filter((id) => live.has(id)).join(', ')}`);
}

export function summary(r: FuzzReport): string[] {
  const lines = [
    `fuzz seed ${r.seed}: ${r.mutants} mutants in ${r.seconds.toFixed(1)} s; ${r.spawned} through the executable's load file, ` +
      `${r.inProcessRefused} refused by the gate in-process, ${r.equivalent} changed only DWARF bytes, ${r.loaded} loaded and unloaded, ` +
      `${r.evaluated} through policy eval --object, ${r.layers} layers through the image extractor; ${r.failures.length} failures`,
    `  exits: ${Object.entries(r.exits).map(([k, v]) => `${k}: ${v}`).join(', ')}`,
  ];
  for (const [s, v] of Object.entries(r.byStrategy)) {
    lines.push(`  ${s.padEnd(18)} ${String(v.mutants).padStart(6)} mutants ${String(v.spawned).padStart(6)} spawned ${String(v.refused).padStart(6)} refused by the gate ${String(v.loaded).padStart(6)} loaded`);
  }
  return lines;
}
