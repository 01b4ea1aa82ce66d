import koffi, { type TypeObject } from 'koffi';

/**
 * The kernel's BPF ABI as bpfd uses it, declared once by name (include/uapi/linux/bpf.h,
 * linux/if_link.h, and the head of libbpf's option structs): bpf(2) commands, program, map and
 * attach types, flags, the bpf_attr variants and the info structs. Every other loader module
 * reads and writes these structs through koffi.encode/decode or their field offsets, never at a
 * hand-written byte offset. test/unit/kernel-abi.test.ts compiles a C program against the
 * machine's headers and checks every size, offset and value here. x86-64 only (SYS_BPF).
 */

export const SYS_BPF = 321;

/** enum bpf_cmd */
export const BpfCmd = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_TEST_RUN: 10,
  OBJ_GET_INFO_BY_FD: 15,
  BTF_LOAD: 18,
  MAP_LOOKUP_BATCH: 24,
  LINK_CREATE: 28,
  LINK_UPDATE: 29,
  LINK_DETACH: 34,
} as const;

/**
 * enum bpf_prog_type, every value the headers name, by its name without BPF_PROG_TYPE_. bpfd shows
 * a type in lower case, as libbpf names it ("xdp", "sched_cls"): progTypeName.
 */
export const BpfProgType = {
  UNSPEC: 0, SOCKET_FILTER: 1, KPROBE: 2, SCHED_CLS: 3, SCHED_ACT: 4, TRACEPOINT: 5, XDP: 6,
  PERF_EVENT: 7, CGROUP_SKB: 8, CGROUP_SOCK: 9, LWT_IN: 10, LWT_OUT: 11, LWT_XMIT: 12,
  SOCK_OPS: 13, SK_SKB: 14, CGROUP_DEVICE: 15, SK_MSG: 16, RAW_TRACEPOINT: 17,
  CGROUP_SOCK_ADDR: 18, LWT_SEG6LOCAL: 19, LIRC_MODE2: 20, SK_REUSEPORT: 21, FLOW_DISSECTOR: 22,
  CGROUP_SYSCTL: 23, RAW_TRACEPOINT_WRITABLE: 24, CGROUP_SOCKOPT: 25, TRACING: 26, STRUCT_OPS: 27,
  EXT: 28, LSM: 29, SK_LOOKUP: 30, SYSCALL: 31, NETFILTER: 32,
} as const;

/** enum bpf_attach_type */
export const BpfAttachType = { XDP: 37 } as const;

/**
 * enum bpf_map_type, every value the headers name, by its name without BPF_MAP_TYPE_ (19 and 21
 * under their libbpf names; the headers also call them *_DEPRECATED). Shown in lower case, as
 * libbpf names them ("array", "percpu_array"): mapTypeName.
 */
export const BpfMapType = {
  UNSPEC: 0, HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERF_EVENT_ARRAY: 4, PERCPU_HASH: 5,
  PERCPU_ARRAY: 6, STACK_TRACE: 7, CGROUP_ARRAY: 8, LRU_HASH: 9, LRU_PERCPU_HASH: 10, LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12, HASH_OF_MAPS: 13, DEVMAP: 14, SOCKMAP: 15, CPUMAP: 16, XSKMAP: 17,
  SOCKHASH: 18, CGROUP_STORAGE: 19, REUSEPORT_SOCKARRAY: 20, PERCPU_CGROUP_STORAGE: 21, QUEUE: 22,
  STACK: 23, SK_STORAGE: 24, DEVMAP_HASH: 25, STRUCT_OPS: 26, RINGBUF: 27, INODE_STORAGE: 28,
  TASK_STORAGE: 29, BLOOM_FILTER: 30, USER_RINGBUF: 31, CGRP_STORAGE: 32, ARENA: 33,
} as const;

const namesByNumber = (e: Record<string, number>) => new Map(Object.entries(e).map(([name, n]) => [n, name.toLowerCase()]));
const progTypeNames = namesByNumber(BpfProgType);
const mapTypeNames = namesByNumber(BpfMapType);

/** The name of a kernel program type number, as bpfd shows it; `type N` for one newer than this table. */
export const progTypeName = (n: number): string => progTypeNames.get(n) ?? `type ${n}`;
/** The name of a kernel map type number, as bpfd shows it and policies see it; `type N` for one newer than this table. */
export const mapTypeName = (n: number): string => mapTypeNames.get(n) ?? `type ${n}`;

/** Flags, each under the name the headers give it. */
export const BpfFlag = {
  /** BPF_LINK_UPDATE: replace only if the old program is the one given */
  F_REPLACE: 1 << 2,
  /** BPF_MAP_CREATE: programs may not write the map */
  F_RDONLY_PROG: 1 << 7,
  /** BPF_PROG_LOAD: the XDP program handles multi-buffer packets */
  F_XDP_HAS_FRAGS: 1 << 5,
  /** linux/if_link.h: generic XDP */
  XDP_FLAGS_SKB_MODE: 1 << 1,
  /** linux/if_link.h: native (driver) XDP */
  XDP_FLAGS_DRV_MODE: 1 << 2,
} as const;

const u32 = 'uint32_t';
const s32 = 'int32_t';
const u64 = 'uint64_t';
/** BPF_OBJ_NAME_LEN */
export const BPF_OBJ_NAME_LEN = 16;
const objName = koffi.array('char', BPF_OBJ_NAME_LEN, 'String');

/** union bpf_attr, BPF_MAP_CREATE */
export const MapCreateAttr = koffi.struct('bpfd_attr_map_create', {
  map_type: u32,
  key_size: u32,
  value_size: u32,
  max_entries: u32,
  map_flags: u32,
  inner_map_fd: u32,
  numa_node: u32,
  map_name: objName,
  map_ifindex: u32,
  btf_fd: u32,
  btf_key_type_id: u32,
  btf_value_type_id: u32,
  btf_vmlinux_value_type_id: u32,
  map_extra: u64,
  value_type_btf_obj_fd: s32,
  map_token_fd: s32,
});

/** union bpf_attr, BPF_PROG_LOAD */
export const ProgLoadAttr = koffi.struct('bpfd_attr_prog_load', {
  prog_type: u32,
  insn_cnt: u32,
  insns: u64,
  license: u64,
  log_level: u32,
  log_size: u32,
  log_buf: u64,
  kern_version: u32,
  prog_flags: u32,
  prog_name: objName,
  prog_ifindex: u32,
  expected_attach_type: u32,
  prog_btf_fd: u32,
  func_info_rec_size: u32,
  func_info: u64,
  func_info_cnt: u32,
  line_info_rec_size: u32,
  line_info: u64,
  line_info_cnt: u32,
  attach_btf_id: u32,
  attach_prog_fd: u32,
  core_relo_cnt: u32,
  fd_array: u64,
  core_relos: u64,
  core_relo_rec_size: u32,
  log_true_size: u32,
  prog_token_fd: s32,
});

/** union bpf_attr, BPF_PROG_TEST_RUN (`test` in the headers) */
export const TestRunAttr = koffi.struct('bpfd_attr_test_run', {
  prog_fd: u32,
  retval: u32,
  data_size_in: u32,
  data_size_out: u32,
  data_in: u64,
  data_out: u64,
  repeat: u32,
  duration: u32,
  ctx_size_in: u32,
  ctx_size_out: u32,
  ctx_in: u64,
  ctx_out: u64,
  flags: u32,
  cpu: u32,
  batch_size: u32,
});

/** union bpf_attr, BPF_BTF_LOAD */
export const BtfLoadAttr = koffi.struct('bpfd_attr_btf_load', {
  btf: u64,
  btf_log_buf: u64,
  btf_size: u32,
  btf_log_size: u32,
  btf_log_level: u32,
  btf_log_true_size: u32,
  btf_flags: u32,
  btf_token_fd: s32,
});

/** struct bpf_prog_info. `flags` is the word of bit fields after ifindex: bit 0 is gpl_compatible. */
export const ProgInfoStruct = koffi.struct('bpfd_prog_info', {
  type: u32,
  id: u32,
  tag: koffi.array('uint8_t', 8),
  jited_prog_len: u32,
  xlated_prog_len: u32,
  jited_prog_insns: u64,
  xlated_prog_insns: u64,
  load_time: u64,
  created_by_uid: u32,
  nr_map_ids: u32,
  map_ids: u64,
  name: objName,
  ifindex: u32,
  flags: u32,
  netns_dev: u64,
  netns_ino: u64,
  nr_jited_ksyms: u32,
  nr_jited_func_lens: u32,
  jited_ksyms: u64,
  jited_func_lens: u64,
  btf_id: u32,
  func_info_rec_size: u32,
  func_info: u64,
  nr_func_info: u32,
  nr_line_info: u32,
  line_info: u64,
  jited_line_info: u64,
  nr_jited_line_info: u32,
  line_info_rec_size: u32,
  jited_line_info_rec_size: u32,
  nr_prog_tags: u32,
  prog_tags: u64,
  run_time_ns: u64,
  run_cnt: u64,
  recursion_misses: u64,
  verified_insns: u32,
  attach_btf_obj_id: u32,
  attach_btf_id: u32,
});
export const PROG_INFO_GPL_COMPATIBLE = 1;

/** struct bpf_map_info */
export const MapInfoStruct = koffi.struct('bpfd_map_info', {
  type: u32,
  id: u32,
  key_size: u32,
  value_size: u32,
  max_entries: u32,
  map_flags: u32,
  name: objName,
  ifindex: u32,
  btf_vmlinux_value_type_id: u32,
  netns_dev: u64,
  netns_ino: u64,
  btf_id: u32,
  btf_key_type_id: u32,
  btf_value_type_id: u32,
  btf_vmlinux_id: u32,
  map_extra: u64,
});

/**
 * struct bpf_link_info with its XDP member of the union. The union holds 64-bit fields, so it
 * starts 8-aligned, after a word of padding; `union_rest` fills it to the struct's full size.
 */
export const XdpLinkInfoStruct = koffi.struct('bpfd_link_info_xdp', {
  type: u32,
  id: u32,
  prog_id: u32,
  union_align: u32,
  xdp_ifindex: u32,
  union_rest: koffi.array('uint8_t', 44),
});

/** struct timespec (time.h), for clock_gettime */
export const TimespecStruct = koffi.struct('bpfd_timespec', { tv_sec: 'int64_t', tv_nsec: 'int64_t' });
/** time.h clock ids: the wall clock, and the clock bpf_prog_info.load_time counts (since boot, suspend included) */
export const Clock = { REALTIME: 0, BOOTTIME: 7 } as const;

/**
 * libbpf's option structs at their 1.4 sizes (libbpf.h and bpf.h of libbpf 1.4.6, checked against
 * the C headers: open 88, link_create 80, link_update 24 bytes). libbpf reads `sz` to know how
 * much of the struct the caller knows; 1.4's full struct, zeroed past what bpfd sets, is what
 * 1.4 expects (bpfd refuses older libbpf, see libbpf-version.ts).
 */
export const LinkCreateOpts = koffi.struct('bpf_link_create_opts', {
  sz: 'size_t',
  flags: u32,
  iter_info: 'void *',
  iter_info_len: u32,
  target_btf_id: u32,
  /** the union of perf_event, kprobe_multi, uprobe_multi, tracing, netfilter, tcx, netkit */
  target: koffi.array('uint64_t', 6),
});
export const LinkUpdateOpts = koffi.struct('bpf_link_update_opts', { sz: 'size_t', flags: u32, old_prog_fd: u32, old_map_fd: u32 });
export const ObjectOpenOpts = koffi.struct('bpf_object_open_opts', {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
  _removed_attach_prog_fd: u32,
  kconfig: 'const char *',
  btf_custom_path: 'const char *',
  kernel_log_buf: 'char *',
  kernel_log_size: 'size_t',
  kernel_log_level: u32,
  bpf_token_path: 'const char *',
});
/** Sizes of the same structs in libbpf 1.4's headers, for the unit test. */
export const LIBBPF_1_4_SIZES = { bpf_object_open_opts: 88, bpf_link_create_opts: 80, bpf_link_update_opts: 24 } as const;

/** A zeroed buffer the size of a koffi struct, with `fields` encoded into it. */
export function encodeStruct(type: TypeObject, fields: Record<string, unknown>): Buffer {
  const buf = Buffer.alloc(koffi.sizeof(type));
  koffi.encode(buf, type, fields);
  return buf;
}

/** Byte offset of a field: for the few places that write one field of an encoded struct. */
export const offsetOf = (type: TypeObject, field: string): number => koffi.offsetof(type, field);
