import { BpfProgType, progTypeName } from '../loader/abi.js';
import { allProgIds, closeFd, fdMemlock, progInfo, tryProgFdById, wallClockNsOfBootNs, type ProgInfo } from '../loader/bpf.js';
import type { KernelView } from './view.js';

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
  return eachUnmanaged(managed, (id, _fd, i) => kernelOnly(id, i));
}

/** The same, each with its kernel facts (the service's List), from one bpf_prog_info read. */
export function unmanagedProgramFacts(managed: Set<number>): Array<{ program: KernelOnlyProgram; facts: KernelFacts }> {
  return eachUnmanaged(managed, (id, fd, i) => ({ program: kernelOnly(id, i), facts: factsOf(id, fd, i) }));
}

function eachUnmanaged<T>(managed: Set<number>, read: (id: number, fd: number, i: ProgInfo) => T): T[] {
  const out: T[] = [];
  for (const id of allProgIds()) {
    if (managed.has(id)) continue;
    const fd = tryProgFdById(id);
    if (fd < 0) continue;
    try {
      out.push(read(id, fd, progInfo(fd)));
    } finally {
      closeFd(fd);
    }
  }
  return out;
}

function kernelOnly(id: number, i: ProgInfo): KernelOnlyProgram {
  return { id, name: i.name, type: progTypeName(i.type), managed: false, kernel: { tag: i.tag, loaded_by_uid: i.createdByUid, map_ids: i.mapIds } };
}

/** What the kernel says of one program (bpf_prog_info and its fd's memlock), as bpfman's KernelProgramInfo carries it. */
export interface KernelFacts extends KernelView {
  id: number;
  /** the kernel's name: the program's, cut to 15 bytes */
  name: string;
  /** enum bpf_prog_type */
  type: number;
  /** when the kernel loaded it, to the second (as bpftool shows it) */
  loaded_at: string;
  bytes_memlock: number;
}

/** The part of bpf_prog_info `bpfd get` shows. */
export function kernelViewOf(i: ProgInfo): KernelView {
  return { tag: i.tag, gpl_compatible: i.gplCompatible, map_ids: i.mapIds, btf_id: i.btfId, bytes_xlated: i.xlatedLen, bytes_jited: i.jitedLen, verified_insns: i.verifiedInsns };
}

/** One program's kernel facts; null when no program has this id (unloaded behind bpfd's back). */
export function kernelFacts(id: number): KernelFacts | null {
  const fd = tryProgFdById(id);
  if (fd < 0) return null;
  try {
    return factsOf(id, fd, progInfo(fd));
  } finally {
    closeFd(fd);
  }
}

function factsOf(id: number, fd: number, i: ProgInfo): KernelFacts {
  const wallS = Number(wallClockNsOfBootNs(i.loadTimeNs) / 1_000_000_000n);
  return {
    ...kernelViewOf(i),
    id,
    name: i.name,
    type: i.type,
    loaded_at: new Date(wallS * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    bytes_memlock: fdMemlock(fd),
  };
}
