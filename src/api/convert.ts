import type { KernelOnlyProgram } from '../core/kernel-programs.js';
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
 * What the kernel knows of a program: in full when the view was read from the kernel (Get,
 * Load), else what the record holds (List answers from the store, without a kernel call per
 * program).
 */
export function kernelInfo(v: ProgramView, record: ProgramRecord | undefined): Record<string, unknown> {
  const k = v.kernel;
  return {
    id: v.id,
    name: v.name.slice(0, 15),
    program_type: KERNEL_TYPE_OF[v.type] ?? 0,
    loaded_at: v.loaded_at,
    tag: k?.tag ?? record?.tag ?? '',
    gpl_compatible: k?.gpl_compatible ?? false,
    map_ids: k?.map_ids ?? [],
    btf_id: k?.btf_id ?? 0,
    bytes_xlated: k?.bytes_xlated ?? 0,
    jited: (k?.bytes_jited ?? 0) > 0,
    bytes_jited: k?.bytes_jited ?? 0,
    verified_insns: k?.verified_insns ?? 0,
  };
}

export function unmanagedKernelInfo(p: KernelOnlyProgram, typeNumber: number): Record<string, unknown> {
  return { id: p.id, name: p.name, program_type: typeNumber, tag: p.kernel.tag, map_ids: p.kernel.map_ids };
}
