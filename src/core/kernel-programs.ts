import { allProgIds, closeFd, progInfo, tryProgFdById } from '../loader/bpf.js';

/** Kernel program type numbers (enum bpf_prog_type) and the names bpfd shows. */
export const KERNEL_TYPES: Record<number, string> = {
  1: 'socket_filter', 2: 'kprobe', 3: 'sched_cls', 4: 'sched_act', 5: 'tracepoint', 6: 'xdp', 7: 'perf_event',
  8: 'cgroup_skb', 9: 'cgroup_sock', 13: 'sock_ops', 17: 'raw_tracepoint', 26: 'tracing', 28: 'ext', 29: 'lsm',
};

export interface KernelOnlyProgram {
  id: number;
  name: string;
  type: string;
  managed: false;
  kernel: { tag: string; loaded_by_uid: number; map_ids: number[] };
}

/** Programs in the kernel that bpfd did not load (list --all). */
export function unmanagedPrograms(managed: Set<number>): KernelOnlyProgram[] {
  const out: KernelOnlyProgram[] = [];
  for (const id of allProgIds()) {
    if (managed.has(id)) continue;
    const fd = tryProgFdById(id);
    if (fd < 0) continue;
    try {
      const i = progInfo(fd);
      out.push({ id, name: i.name, type: KERNEL_TYPES[i.type] ?? `type ${i.type}`, managed: false, kernel: { tag: i.tag, loaded_by_uid: i.createdByUid, map_ids: i.mapIds } });
    } finally {
      closeFd(fd);
    }
  }
  return out;
}
