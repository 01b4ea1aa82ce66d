import type { KernelFacts } from '../core/kernel-programs.js';
import type { ProgramView } from '../core/view.js';
import type { ProgramRecord, ProgramType, XdpAction } from '../state/records.js';
import { RpcError, Status } from './grpc.js';

// bpfd's views as bpfman.v1 messages, and bpfman.v1 enums as bpfd's names. Kept apart from the
// handlers so each side of the mapping can be read against proto/bpfman/v1/bpfman.proto.

/** BpfmanProgramType → bpfd's type; null for types this host cannot run (DESIGN.md §2). */
const LOAD_TYPES: Record<number, ProgramType | null> = { 0: 'xdp', 1: 'tc', 2: 'tracepoint', 3: null, 4: 'uprobe', 5: null, 6: null, 7: 'tcx', 8: null };
const TYPE_NAMES = ['XDP', 'TC', 'TRACEPOINT', 'KPROBE', 'UPROBE', 'FENTRY', 'FEXIT', 'TCX', 'LSM'];

export function loadType(n: number | undefined): ProgramType {
  const t = LOAD_TYPES[n ?? 0];
  if (t === undefined) throw new RpcError(Status.INVALID_ARGUMENT, `program_type ${n} is not a BpfmanProgramType (0 XDP … 8 LSM)`);
  if (t === null) {
    throw new RpcError(Status.INVALID_ARGUMENT, `program_type ${TYPE_NAMES[n!]} cannot be loaded on this host: kprobes are not built into the kernel and fentry, fexit and LSM need BPF trampolines, which it refuses; load an XDP, TC, TCX, tracepoint or uprobe program`);
  }
  return t;
}

/** Kernel enum bpf_prog_type of bpfd's types, as KernelProgramInfo.program_type carries it. */
const KERNEL_TYPE_OF: Record<string, number> = { xdp: 6, tc: 3, tcx: 3, tracepoint: 5, uprobe: 2, kprobe: 2 };

/** XDP proceed-on values are the action numbers, with 31 for dispatcher_return. */
const XDP_ACTIONS: Record<number, XdpAction> = { 0: 'aborted', 1: 'drop', 2: 'pass', 3: 'tx', 4: 'redirect', 31: 'dispatcher_return' };

export function proceedOnNames(values: number[] | undefined): XdpAction[] | undefined {
  if (!values?.length) return undefined;
  return values.map((v) => {
    const a = XDP_ACTIONS[v];
    if (!a) throw new RpcError(Status.INVALID_ARGUMENT, `proceed_on ${v} is not an XDP action: give 0 aborted, 1 drop, 2 pass, 3 tx, 4 redirect or 31 dispatcher_return`);
    return a;
  });
}

export function programInfo(v: ProgramView, record: ProgramRecord | undefined, usedBy: number[]): Record<string, unknown> {
  return {
    name: v.name,
    bytecode: 'path' in v.bytecode ? { file: v.bytecode.path } : { image: { url: v.bytecode.image, image_pull_policy: 1 } },
    links: v.links.map((l) => l.id),
    global_data: Object.fromEntries(Object.entries(record?.globals ?? {}).map(([k, hex]) => [k, Buffer.from(hex, 'hex')])),
    ...(v.maps.owner_id !== null ? { map_owner_id: v.maps.owner_id } : {}),
    map_pin_path: v.maps.pin_path,
    map_used_by: usedBy.map(String),
    metadata: v.metadata,
  };
}

/**
 * KernelProgramInfo: what the kernel says of the program (read for every answer, one program at
 * a time, see core/kernel-programs.ts). A program gone from the kernel behind bpfd's back (null)
 * keeps what bpfd's record holds, and zeros for what only the kernel knows.
 */
export function kernelInfo(v: ProgramView, k: KernelFacts | null, record: ProgramRecord | undefined): Record<string, unknown> {
  if (!k) return { id: v.id, name: v.name.slice(0, 15), program_type: KERNEL_TYPE_OF[v.type] ?? 0, loaded_at: v.loaded_at, tag: record?.tag ?? '' };
  return kernelFactsInfo(k);
}

/** The same for a program bpfd does not manage (List without bpfman_programs_only). */
export function kernelFactsInfo(k: KernelFacts): Record<string, unknown> {
  return {
    id: k.id,
    name: k.name,
    program_type: k.type,
    loaded_at: k.loaded_at,
    tag: k.tag,
    gpl_compatible: k.gpl_compatible,
    map_ids: k.map_ids,
    btf_id: k.btf_id,
    bytes_xlated: k.bytes_xlated,
    jited: k.bytes_jited > 0,
    bytes_jited: k.bytes_jited,
    bytes_memlock: k.bytes_memlock,
    verified_insns: k.verified_insns,
  };
}

/** bpfd's type as the kernel's program type number, for filtering before any kernel call. */
export const kernelTypeOf = (v: ProgramView): number => KERNEL_TYPE_OF[v.type] ?? 0;
