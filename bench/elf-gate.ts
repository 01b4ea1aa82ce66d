import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkBpfObject } from '../src/loader/elf-gate.js';
import { BUN } from './cli.js';

/**
 * What the strict ELF gate (src/loader/elf-gate.ts) costs a `bpfd load file`, measured in one
 * run against the same executable built without it (scripts/compile.mjs --no-elf-gate: its
 * checkBpfObject returns at once). Rounds alternate between the two so that machine load hits both alike. Also the gate
 * alone, in-process, on every fixture. Budget: the gate adds at most 1 ms.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST = path.join(ROOT, 'dist');
const FIXTURES = path.join(ROOT, 'fixtures', 'bytecode');
const OBJ = path.join(FIXTURES, 'xdp_count.o');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The executable built again without the gate (scripts/compile.mjs --no-elf-gate), or null if that fails. */
function executableWithoutGate(dir: string): string | null {
  const out = path.join(dir, 'bpfd-no-gate');
  const r = spawnSync(BUN, [path.join(ROOT, 'scripts', 'compile.mjs'), out, '0.0.0-bench', 'no-gate', '--no-elf-gate'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`bench: could not build the executable without the gate: ${r.stderr}`);
    return null;
  }
  return out;
}

export async function benchElfGate(rounds = 21): Promise<string[]> {
  const lines: string[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-bench-gate-'));
  // both executables carry the same shipped policy
  const env = { ...process.env, BPFD_RUNTIME_DIR: path.join(dir, 'run'), BPFD_STATE_DIR: path.join(dir, 'state') };
  try {
    const without = executableWithoutGate(dir);
    const load = (bin: string) => {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(bin, ['load', 'file', '--path', OBJ, '--name', 'xdp_count', '-o', 'json'], { env, encoding: 'utf8' });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`bpfd load failed: ${r.stderr}`);
      spawnSync(bin, ['unload', String(JSON.parse(r.stdout).id)], { env });
      return ms;
    };
    const withGate = path.join(DIST, 'bpfd');
    if (without) {
      load(withGate);
      load(without);
      const before: number[] = [];
      const after: number[] = [];
      for (let i = 0; i < rounds; i++) {
        before.push(load(without));
        after.push(load(withGate));
      }
      const b = median(before);
      const a = median(after);
      lines.push(
        `bpfd load file of xdp_count.o, median of ${rounds} alternating rounds (budget: the gate adds <= 1 ms)`,
        `  ${'bpfd load file, before the strict reader'.padEnd(46)} ${b.toFixed(1).padStart(7)} ms`,
        `  ${'bpfd load file, with the strict reader'.padEnd(46)} ${a.toFixed(1).padStart(7)} ms   (${a - b >= 0 ? '+' : ''}${(a - b).toFixed(1)} ms, process noise included)`,
      );
    } else {
      lines.push('bpfd load file before/after: the executable without the gate did not build; only the in-process figures below');
    }
    // The gate alone: what it adds to every load, without process start-up noise.
    const per: Array<[string, number]> = [];
    for (const f of readdirSync(FIXTURES).filter((n) => n.endsWith('.o')).sort()) {
      const bytes = readFileSync(path.join(FIXTURES, f));
      for (let i = 0; i < 50; i++) checkBpfObject(f, bytes);
      const times: number[] = [];
      for (let i = 0; i < 201; i++) {
        const t0 = process.hrtime.bigint();
        checkBpfObject(f, bytes);
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      per.push([`${f} (${bytes.length} B)`, median(times)]);
    }
    const worst = per.reduce((m, p) => (p[1] > m[1] ? p : m));
    lines.push(
      `  ${'strict reader alone, in-process, median'.padEnd(46)} ${median(per.map((p) => p[1])).toFixed(3).padStart(7)} ms   (slowest fixture ${worst[0]}: ${worst[1].toFixed(3)} ms)`,
    );
    return lines;
  } finally {
    spawnSync('umount', [path.join(dir, 'run', 'fs')]);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of await benchElfGate()) console.log(line);
}
