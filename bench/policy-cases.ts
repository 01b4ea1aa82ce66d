import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import YAML from 'yaml';

/**
 * `bpfd policy test` on policies/examples/ci/cases.yaml, the way a CI job runs it (the shipped
 * executable, a process per run): the whole run per case, what each case adds beyond the first
 * (reading the object's facts, building the input, evaluating), and the evaluation alone.
 * Runs without root: `node build/bench/policy-cases.js`.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXAMPLE = path.join(ROOT, 'policies', 'examples', 'ci', 'cases.yaml');
// the shipped executable, as a CI job runs it
const BPFD = path.join(ROOT, 'dist', 'bpfd');
const RUNS = 7;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function timeRun(file: string): { ms: number; cases: Array<{ duration_us: number }> } {
  const started = process.hrtime.bigint();
  const r = spawnSync(BPFD, ['policy', 'test', file, '-o', 'json'], { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0) throw new Error(`bpfd policy test ${file}: exit ${r.status}: ${r.stderr}`);
  return { ms, cases: JSON.parse(r.stdout).cases };
}

export async function benchPolicyCases(): Promise<string[]> {
  const doc = YAML.parse(readFileSync(EXAMPLE, 'utf8'));
  const n: number = doc.cases.length;
  // the same file with only its first case, its paths made absolute
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-bench-cases-'));
  const one = path.join(dir, 'one.json');
  const abs = (p: string) => path.resolve(path.dirname(EXAMPLE), p);
  const [c] = doc.cases;
  const request = { ...c.request, object: abs(c.request.object), ...(c.request.existing ? { existing: abs(c.request.existing) } : {}) };
  try {
    writeFileSync(one, JSON.stringify({ data: abs(doc.data), cases: [{ ...c, request }] }));
    timeRun(EXAMPLE); // warm the page cache
    const all: number[] = [];
    const first: number[] = [];
    const evalUs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const r = timeRun(EXAMPLE);
      all.push(r.ms);
      evalUs.push(...r.cases.map((c) => c.duration_us));
      first.push(timeRun(one).ms);
    }
    const wall = median(all);
    const marginal = (wall - median(first)) / (n - 1);
    return [
      `policy test ${path.relative(ROOT, EXAMPLE)} (${n} cases, shipped executable, median of ${RUNS} runs):`,
      `  whole run                    ${wall.toFixed(1)} ms, ${(wall / n).toFixed(1)} ms per case`,
      `  each case beyond the first   ${marginal.toFixed(2)} ms (bytecode facts, input, decision)`,
      `  evaluation alone             ${(median(evalUs) / 1000).toFixed(3)} ms per case (median)`,
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const line of await benchPolicyCases()) console.log(line);
}
