import { spawnSync } from 'node:child_process';

/**
 * Programs a command of this test may have left in the kernel: new since `before`, with the
 * program name it asked for, and not pinned in another bpffs. Other suites load the same
 * fixtures at the same time, each pinned under its own bpffs; a program pinned in this test's
 * bpffs is caught by the pins check, and one held by nothing is freed by the kernel.
 */
export function newProgramsNamed(before: Set<number>, name: string, ownBpffs: string): Array<{ id: number; name?: string }> {
  const r = spawnSync('bpftool', ['-j', '-f', 'prog', 'list'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bpftool prog list: ${r.stderr}`);
  const progs = JSON.parse(r.stdout) as Array<{ id: number; name?: string; pinned?: string[] }>;
  const kname = name?.slice(0, 15);
  return progs
    .filter((p) => !before.has(p.id) && p.name === kname)
    .filter((p) => !(p.pinned ?? []).some((pin) => !pin.startsWith(ownBpffs + '/')))
    .map(({ id, name: n }) => ({ id, name: n }));
}
