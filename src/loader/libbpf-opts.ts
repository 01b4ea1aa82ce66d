import { koffi } from './lib.js';

/**
 * libbpf's option structs at their 1.4 sizes (libbpf.h and bpf.h of libbpf 1.4.6; sizes checked
 * against the C headers: open 88, link_create 80, link_update 24 bytes). libbpf reads `sz` to
 * know how much of the struct the caller knows; passing 1.4's full struct (zeroed past what bpfd
 * sets) is what 1.4 expects, and an older libbpf that does not know the later fields refuses a
 * non-zero one instead of ignoring it.
 */
export const ObjectOpenOpts = koffi.struct('bpf_object_open_opts', {
  sz: 'size_t',
  object_name: 'const char *',
  relaxed_maps: 'bool',
  pin_root_path: 'const char *',
  _removed_attach_prog_fd: 'uint32_t',
  kconfig: 'const char *',
  btf_custom_path: 'const char *',
  kernel_log_buf: 'char *',
  kernel_log_size: 'size_t',
  kernel_log_level: 'uint32_t',
  bpf_token_path: 'const char *',
});

/** The union after target_btf_id (perf_event, kprobe_multi, uprobe_multi, tcx, …) as raw words. */
export const LinkCreateOpts = koffi.struct('bpf_link_create_opts', {
  sz: 'size_t',
  flags: 'uint32_t',
  iter_info: 'void *',
  iter_info_len: 'uint32_t',
  target_btf_id: 'uint32_t',
  target: koffi.array('uint64_t', 6),
});

export const LinkUpdateOpts = koffi.struct('bpf_link_update_opts', {
  sz: 'size_t',
  flags: 'uint32_t',
  old_prog_fd: 'uint32_t',
  old_map_fd: 'uint32_t',
});

/** Sizes of the same structs in libbpf 1.4's headers, for the unit test. */
export const LIBBPF_1_4_SIZES = { bpf_object_open_opts: 88, bpf_link_create_opts: 80, bpf_link_update_opts: 24 } as const;
