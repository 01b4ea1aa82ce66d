import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * What being daemonless and crash-safe costs a command:
 *  - the writer lock under contention: N `bpfd load` processes started at once on one interface,
 *    each one's wait for the lock beside the time its critical section holds it
 *    (BPFD_TIMINGS makes bpfd print both);
 *  - the recovery check every command runs first (reconcile) when there is nothing to recover,
 *    with 0 and 50 programs (5 interfaces x 10), timed in-process around the call, first call in
 *    a fresh process and warm (target < 5 ms).
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BPFD = path.join(ROOT, 'dist', 'bpfd');
const OBJ = path.join(ROOT, 'fixtures', 'bytecode', 'xdp_pass.o');
const CONCURRENT = 8;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f1 = (x: number) => x.toFixed(1).padStart(7);
const f2 = (x: number) => x.toFixed(2).padStart(7);

interface Lab {
  env: NodeJS.ProcessEnv;
  nsPath: string;
  ifaces: string[];
  bpfd(...args: string[]): string;
  cleanup(): void;
}

function lab(ifaceCount: number): Lab {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-bench-rec-'));
  const env = { ...process.env, BPFD_RUNTIME_DIR: path.join(dir, 'run'), BPFD_STATE_DIR: path.join(dir, 'state'), BPFD_POLICY_DATA: path.join(dir, 'policy-data.json') };
  const ns = `bpfd-bench-rec-${process.pid}`;
  spawnSync('ip', ['netns', 'add', ns]);
  const ifaces: string[] = [];
  for (let i = 0; i < ifaceCount; i++) {
    spawnSync('ip', ['-n', ns, 'link', 'add', `brx${i}`, 'type', 'veth', 'peer', 'name', `bry${i}`]);
    for (const dev of [`brx${i}`, `bry${i}`]) spawnSync('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    ifaces.push(`brx${i}`);
  }
  return {
    env,
    nsPath: `/var/run/netns/${ns}`,
    ifaces,
    bpfd(...args) {
      const r = spawnSync(BPFD, args, { env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`bpfd ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
      return r.stdout;
    },
    cleanup() {
      spawnSync('ip', ['netns', 'del', ns]);
      spawnSync('umount', [path.join(dir, 'run', 'fs')]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function lockContention(): Promise<string[]> {
  const l = lab(1);
  try {
    l.bpfd('list'); // the store exists: every contender pays the same start-up
    const runs = Array.from({ length: CONCURRENT }, (_, i) =>
      new Promise<{ wait: number; held: number; wall: number }>((resolve, reject) => {
        const t0 = performance.now();
        const child = spawn(BPFD, ['load', 'file', '--path', OBJ, '--name', 'xdp_pass', '--iface', l.ifaces[0], '--netns', l.nsPath, '--priority', String(10 + i), '-o', 'json'], {
          env: { ...l.env, BPFD_TIMINGS: '1' },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let err = '';
        child.stderr.on('data', (d) => (err += d));
        child.on('close', (code) => {
          const wait = /lock wait ([\d.]+) ms/.exec(err);
          const held = /lock held ([\d.]+) ms/.exec(err);
          if (code !== 0 || !wait || !held) return reject(new Error(`contending load failed (${code}): ${err}`));
          resolve({ wait: Number(wait[1]), held: Number(held[1]), wall: performance.now() - t0 });
        });
      }),
    );
    const results = await Promise.all(runs);
    const waits = results.map((r) => r.wait);
    const held = results.map((r) => r.held);
    return [
      `writer lock under contention: ${CONCURRENT} bpfd load --iface started at once on one interface (ms)`,
      '                                median      max',
      `  wait for the lock            ${f1(median(waits))}  ${f1(Math.max(...waits))}`,
      `  held (critical section)      ${f1(median(held))}  ${f1(Math.max(...held))}`,
      `  whole command (wall)         ${f1(median(results.map((r) => r.wall)))}  ${f1(Math.max(...results.map((r) => r.wall)))}`,
      `  (a waiter waits for the holders before it: the last of ${CONCURRENT} waits about ${CONCURRENT - 1} critical sections)`,
    ];
  } finally {
    l.cleanup();
  }
}

/**
 * One fresh node process, as a command is: it imports what a command imports, opens the store,
 * then, under the lock, times the first call of `what` and then 50 warm ones. `reconcile` is the
 * whole check with repair; `records` only reads and sorts the records (detect without the pin and
 * dispatcher scans), which a command needs anyway to act on them.
 */
function firstAndWarm(env: NodeJS.ProcessEnv, what: 'reconcile' | 'records'): { first: number; warm: number; programs: number } {
  const url = (m: string) => JSON.stringify(pathToFileURL(path.join(ROOT, 'build', 'src', 'core', m)).href);
  const call = what === 'reconcile' ? 'reconcile(ctx, true)' : 'detect(ctx, { deep: false })';
  const script = `
    const { createContext } = await import(${url('context.js')});
    const { reconcile } = await import(${url('reconcile.js')});
    const { detect } = await import(${url('disagreements.js')});
    const ctx = createContext({ what: 'bench' });
    ctx.store();
    const out = await ctx.exclusive(async () => {
      const t = () => performance.now();
      let t0 = t();
      const r = ${call};
      const first = t() - t0;
      if (r.findings.length) throw new Error('expected nothing to recover, found ' + r.findings.map((f) => f.kind).join(', '));
      const warm = [];
      for (let i = 0; i < 50; i++) { t0 = t(); ${call}; warm.push(t() - t0); }
      warm.sort((a, b) => a - b);
      return { first, warm: warm[25], programs: r.programs.length };
    });
    process.stdout.write(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`reconcile timing failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function reconcileCost(): string[] {
  const l = lab(5);
  try {
    l.bpfd('list');
    const runs = 11;
    const sample = () => {
      const full = Array.from({ length: runs }, () => firstAndWarm(l.env, 'reconcile'));
      const records = Array.from({ length: runs }, () => firstAndWarm(l.env, 'records'));
      return {
        first: median(full.map((x) => x.first)),
        records: median(records.map((x) => x.first)),
        warm: median(full.map((x) => x.warm)),
        programs: full[0].programs,
      };
    };
    const empty = sample();
    for (const iface of l.ifaces) {
      for (let i = 0; i < 10; i++) l.bpfd('load', 'file', '--path', OBJ, '--name', 'xdp_pass', '--iface', iface, '--netns', l.nsPath, '--priority', String(i * 10));
    }
    const full = sample();
    if (full.programs !== 50) throw new Error(`expected 50 programs, reconcile saw ${full.programs}`);
    const row = (name: string, x: typeof full) => `  ${name.padEnd(24)} ${f2(x.first)}       ${f2(x.records)}       ${f2(x.first - x.records)}        ${f2(x.warm)}`;
    return [
      `recovery check (reconcile) with nothing to recover, in-process around the call, ms (median of ${runs} fresh processes; target < 5 ms)`,
      '                            first call   of it: reading   the check      warm (median',
      '  programs                  (whole)      the records*     beyond that    of 50 calls)',
      row('0', empty),
      row('50 (5 interfaces x 10)', full),
      '  * what any command pays to act on its records (a fresh process\'s first LMDB reads and decoding);',
      '    the check proper is the pin scan and one meta-map read per interface',
    ];
  } finally {
    l.cleanup();
  }
}

export async function benchRecovery(): Promise<string[]> {
  return [...(await lockContention()), '', ...reconcileCost()];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const line of await benchRecovery()) console.log(line);
}
