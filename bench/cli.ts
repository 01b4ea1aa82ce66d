import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Start-up cost of the daemonless CLI: every bpfd command is its own process, so what bpfd adds
 * above a bare `node -e 0` is what a user pays per command. Compared in the same run with
 * xdp-loader (libxdp's C tool) loading and unloading the same object on the same kind of
 * interface.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BPFD = path.join(ROOT, 'dist', 'bpfd.cjs');
const OBJ = path.join(ROOT, 'fixtures', 'bytecode', 'xdp_pass.o');

function timeMs(cmd: string, args: string[], env?: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchCli(rounds = 15): Promise<string[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-bench-'));
  const env = { ...process.env, BPFD_RUNTIME_DIR: path.join(dir, 'run'), BPFD_STATE_DIR: path.join(dir, 'state') };
  const ns = `bpfd-bench-${process.pid}`;
  const ifA = `bbx${process.pid % 100000}`;
  const ifB = `bby${process.pid % 100000}`;
  const nsPath = `/var/run/netns/${ns}`;
  const bpfd = (...a: string[]) => timeMs(process.execPath, [BPFD, ...a], env);
  const bpfdOut = (...a: string[]) => spawnSync(process.execPath, [BPFD, ...a], { env, encoding: 'utf8' });
  spawnSync('ip', ['netns', 'add', ns]);
  spawnSync('ip', ['link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', ns]);
  spawnSync('ip', ['link', 'set', ifA, 'up']);
  spawnSync('ip', ['-n', ns, 'link', 'set', ifB, 'up']);
  try {
    const node0: number[] = [];
    const version: number[] = [];
    const load: number[] = [];
    const unload: number[] = [];
    const xload: number[] = [];
    const xunload: number[] = [];
    const list0: number[] = [];
    bpfd('list'); // first run creates the store and mounts the bpffs: not what a user pays each time
    for (let i = 0; i < rounds; i++) {
      node0.push(timeMs(process.execPath, ['-e', '0']));
      version.push(bpfd('version'));
      list0.push(bpfd('list'));
      const t0 = process.hrtime.bigint();
      const r = bpfdOut('load', 'file', '--path', OBJ, '--name', 'xdp_pass', '--iface', ifB, '--netns', nsPath, '-o', 'json');
      load.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (r.status !== 0) throw new Error(`bpfd load failed: ${r.stderr}`);
      unload.push(bpfd('unload', String(JSON.parse(r.stdout).id)));
      xload.push(timeMs('ip', ['netns', 'exec', ns, 'xdp-loader', 'load', '-m', 'native', ifB, OBJ]));
      xunload.push(timeMs('ip', ['netns', 'exec', ns, 'xdp-loader', 'unload', ifB, '--all']));
    }
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const r = bpfdOut('load', 'file', '--path', OBJ, '--name', 'xdp_pass', '-o', 'json');
      if (r.status !== 0) throw new Error(`bpfd load failed: ${r.stderr}`);
      ids.push(String(JSON.parse(r.stdout).id));
    }
    const list50: number[] = [];
    const listJson50: number[] = [];
    for (let i = 0; i < rounds; i++) {
      list50.push(bpfd('list'));
      listJson50.push(bpfd('list', '-o', 'json'));
    }
    for (const id of ids) bpfd('unload', id);
    const n = median(node0);
    const row = (name: string, xs: number[], ref?: [string, number]) => {
      const m = median(xs);
      const above = m - n;
      return `  ${name.padEnd(34)} ${m.toFixed(1).padStart(7)} ms   node+${above.toFixed(1).padStart(5)} ms${ref ? `   ${(m / ref[1]).toFixed(2)}x ${ref[0]}` : ''}`;
    };
    const xl = median(xload);
    const xu = median(xunload);
    return [
      `CLI start-up and commands (median of ${rounds}; "node+" is what bpfd adds above a bare node start-up; target <= 20 ms)`,
      `  ${'node -e 0'.padEnd(34)} ${n.toFixed(1).padStart(7)} ms`,
      `  ${'xdp-loader load (ip netns exec)'.padEnd(34)} ${xl.toFixed(1).padStart(7)} ms`,
      `  ${'xdp-loader unload (ip netns exec)'.padEnd(34)} ${xu.toFixed(1).padStart(7)} ms`,
      row('bpfd version', version),
      row('bpfd load file --iface (attach)', load, ['xdp-loader load', xl]),
      row('bpfd unload', unload, ['xdp-loader unload', xu]),
      row('bpfd list (0 programs)', list0),
      row('bpfd list (50 programs)', list50),
      row('bpfd list -o json (50 programs)', listJson50),
    ];
  } finally {
    spawnSync('ip', ['netns', 'exec', ns, 'xdp-loader', 'unload', ifB, '--all']);
    spawnSync('ip', ['link', 'del', ifA]);
    spawnSync('ip', ['netns', 'del', ns]);
    spawnSync('umount', [path.join(dir, 'run', 'fs')]);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of await benchCli()) console.log(line);
}
