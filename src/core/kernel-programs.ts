import { BpfProgType, progTypeName } from '../loader/abi.js';
import { allProgIds, closeFd, progInfo, tryProgFdById } from '../loader/bpf.js';

/** Kernel program type numbers (enum bpf_prog_type) and the names bpfd shows, from loader/abi.ts. */
export const KERNEL_TYPES: Record<number, string> = Object.fromEntries(Object.values(BpfProgType).map((n) => [n, progTypeName(n)]));

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
      out.push({ id, name: i.name, type: progTypeName(i.type), managed: false, kernel: { tag: i.tag, loaded_by_uid: i.createdByUid, map_ids: i.mapIds } });
    } finally {
      closeFd(fd);
    }
  }
  return out;
}
