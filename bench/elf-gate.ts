import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkBpfObject } from '../src/loader/elf-gate.js';

/**
 * What the strict ELF gate (src/loader/elf-gate.ts) costs a `bpfd load file`, measured in one
 * run against the same build without it: a copy of dist/ whose checkBpfObject returns at once
 * (the bundle keeps function names), with its own V8 code cache made the way the build makes
 * one. Rounds alternate between the two so that machine load hits both alike. Also the gate
 * alone, in-process, on every fixture. Budget: the gate adds at most 1 ms.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST = path.join(ROOT, 'dist');
const FIXTURES = path.join(ROOT, 'fixtures', 'bytecode');
const OBJ = path.join(FIXTURES, 'xdp_count.o');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** dist/ without the gate, or null when this build has no bundle to patch (a compiled binary). */
function distWithoutGate(dir: string): string | null {
  const main = path.join(DIST, 'bpfd-main.cjs');
  let src: string;
  try {
    src = readFileSync(main, 'utf8');
  } catch {
    return null;
  }
  const m = /function checkBpfObject\((\w+),(\w+)\)\{/.exec(src);
  if (!m) return null;
  // the bundle finds node_modules beside its own directory
  const out = path.join(dir, 'dist');
  mkdirSync(out);
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  for (const f of readdirSync(DIST)) if (!f.endsWith('.cache')) copyFileSync(path.join(DIST, f), path.join(out, f));
  writeFileSync(path.join(out, 'bpfd-main.cjs'), src.replace(m[0], `${m[0]}return{sections:[],names:[],symtab:null};`));
  const scratch = path.join(dir, 'warmup');
  spawnSync(process.execPath, [path.join(out, 'bpfd.cjs')], {
    env: {
      ...process.env,
      BPFD_CODE_CACHE_WARMUP: JSON.stringify([['version'], ['list'], ['load', 'file', '--path', OBJ, '--name', 'xdp_count', '--iface', 'lo', '--dry-run']]),
      BPFD_RUNTIME_DIR: path.join(scratch, 'run'),
      BPFD_STATE_DIR: path.join(scratch, 'state'),
    },
  });
  spawnSync('umount', [path.join(scratch, 'run', 'fs')]);
  return path.join(out, 'bpfd.cjs');
}

export async function benchElfGate(rounds = 21): Promise<string[]> {
  const lines: string[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-bench-gate-'));
  // BPFD_HOME: both builds find the shipped policy in this checkout
  const env = { ...process.env, BPFD_HOME: ROOT, BPFD_RUNTIME_DIR: path.join(dir, 'run'), BPFD_STATE_DIR: path.join(dir, 'state') };
  try {
    const without = distWithoutGate(dir);
    const load = (bin: string) => {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(process.execPath, [bin, 'load', 'file', '--path', OBJ, '--name', 'xdp_count', '-o', 'json'], { env, encoding: 'utf8' });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`bpfd load failed: ${r.stderr}`);
      spawnSync(process.execPath, [bin, 'unload', String(JSON.parse(r.stdout).id)], { env });
      return ms;
    };
    const withGate = path.join(DIST, 'bpfd.cjs');
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
      lines.push('bpfd load file before/after: this build has no bundle to patch; only the in-process figures below');
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
