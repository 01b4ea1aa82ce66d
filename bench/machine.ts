import { spawnSync } from 'node:child_process';

/**
 * What this machine charges for things bpfd does not control, measured in the same run as the
 * figures beside it: absolute millisecond targets read differently on a VM whose page faults
 * cost several times bare metal's (seen: 2.2 us each against 0.3-0.5), and every process start
 * is mostly page faults.
 */

const PAGE = 4096;

/** Microseconds to fault in one fresh anonymous page: a large zeroed buffer, touched once per page. */
export function pageFaultUs(pages = 3000, rounds = 5): number {
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // large enough that the allocator maps it fresh from the kernel: untouched until written
    const buf = new Uint8Array(pages * PAGE);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < buf.length; i += PAGE) buf[i] = 1;
    samples.push(Number(process.hrtime.bigint() - t0) / 1e3 / pages);
  }
  return samples.sort((a, b) => a - b)[Math.floor(rounds / 2)];
}

/**
 * The minor page faults of one whole command, from wait4's rusage (node's spawnSync reports no
 * rusage of its child; python3's os.wait4 does). null when python3 is not on the machine.
 */
export function pageFaultsOf(cmd: string, args: string[], env: NodeJS.ProcessEnv): { faults: number; stdout: string } | null {
  const script = [
    'import os, subprocess, sys',
    'p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)',
    'out = p.stdout.read()',
    '_, status, ru = os.wait4(p.pid, 0)',
    'sys.stderr.write(str(ru.ru_minflt))',
    'sys.stdout.buffer.write(out)',
    'sys.exit(os.waitstatus_to_exitcode(status))',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script, cmd, ...args], { env, encoding: 'utf8' });
  if (r.error) return null;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}) under the fault counter`);
  return { faults: Number(r.stderr), stdout: r.stdout };
}
