import { Errno, KernelError } from '../base/errors.js';
import { readFileSync } from 'node:fs';
import { BpfFlag, Clock, encodeStruct, TimespecStruct, LinkCreateOpts, LinkUpdateOpts, MapInfoStruct, offsetOf, PROG_INFO_GPL_COMPATIBLE, ProgInfoStruct, XdpLinkInfoStruct } from './abi.js';
import { koffi, libbpf, libc } from './lib.js';
import { kernelSyscall } from './kernel-time.js';
import { timedSync } from '../base/timings.js';

/** Thin, typed wrappers over libbpf's low-level (syscall) API. Negative returns are -errno. */

const prog_get_fd_by_id = libbpf.func('int bpf_prog_get_fd_by_id(uint32_t id)');
const obj_pin = libbpf.func('int bpf_obj_pin(int fd, const char *path)');
const obj_get = libbpf.func('int bpf_obj_get(const char *path)');
const obj_get_info_by_fd = libbpf.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint32_t *len)');
const prog_get_next_id = libbpf.func('int bpf_prog_get_next_id(uint32_t start, _Out_ uint32_t *next)');
const link_create = libbpf.func('int bpf_link_create(int prog_fd, int target, int attach_type, const bpf_link_create_opts *opts)');
const link_update = libbpf.func('int bpf_link_update(int link_fd, int new_prog_fd, const bpf_link_update_opts *opts)');
const link_detach = libbpf.func('int bpf_link_detach(int link_fd)');
const map_lookup_elem = libbpf.func('int bpf_map_lookup_elem(int fd, const uint8_t *key, _Out_ uint8_t *value)');
const map_lookup_batch = libbpf.func(
  'int bpf_map_lookup_batch(int fd, void *in_batch, _Out_ uint8_t *out_batch, _Out_ uint8_t *keys, _Out_ uint8_t *values, _Inout_ uint32_t *count, void *opts)',
);
const map_update_elem = libbpf.func('int bpf_map_update_elem(int fd, const uint8_t *key, const uint8_t *value, uint64_t flags)');
const c_close = libc.func('int close(int fd)');
const clock_gettime = libc.func('int clock_gettime(int clk, _Out_ bpfd_timespec *ts)');

function check(what: string, rc: number): number {
  if (rc < 0) throw new KernelError(what, -rc);
  return rc;
}

export function closeFd(fd: number): void {
  if (fd >= 0) c_close(fd);
}

export const progFdById = (id: number) => check(`open BPF program id ${id}`, prog_get_fd_by_id(id));

/** -errno instead of throwing: for existence probes where ENOENT is an answer, not a failure. */
export const tryProgFdById = (id: number): number => prog_get_fd_by_id(id);

export function objPin(fd: number, path: string): void {
  check(`pin ${path}`, obj_pin(fd, path));
}

export function objGet(path: string): number {
  return check(`open pinned object ${path}`, obj_get(path));
}

export function tryObjGet(path: string): number {
  return obj_get(path);
}

export interface ProgInfo {
  type: number;
  id: number;
  tag: string;
  jitedLen: number;
  xlatedLen: number;
  loadTimeNs: bigint; // since boot
  createdByUid: number;
  mapIds: number[];
  name: string;
  gplCompatible: boolean;
  btfId: number;
  verifiedInsns: number;
  runTimeNs: bigint;
  runCnt: bigint;
}

const PROG_INFO_SIZE = koffi.sizeof(ProgInfoStruct);
const u64At = (buf: Buffer, field: string) => buf.readBigUInt64LE(offsetOf(ProgInfoStruct, field));

export function progInfo(fd: number): ProgInfo {
  let buf: Buffer = Buffer.alloc(PROG_INFO_SIZE);
  check('read BPF program info', obj_get_info_by_fd(fd, buf, [PROG_INFO_SIZE]));
  const nrMaps = (koffi.decode(buf, ProgInfoStruct) as { nr_map_ids: number }).nr_map_ids;
  let mapIds: number[] = [];
  if (nrMaps > 0) {
    const ids = koffi.alloc('uint32_t', nrMaps);
    try {
      buf = encodeStruct(ProgInfoStruct, { nr_map_ids: nrMaps, map_ids: BigInt(koffi.address(ids)) });
      check('read BPF program map ids', obj_get_info_by_fd(fd, buf, [PROG_INFO_SIZE]));
      const got = (koffi.decode(buf, ProgInfoStruct) as { nr_map_ids: number }).nr_map_ids;
      mapIds = Array.from(koffi.decode(ids, 'uint32_t', Math.min(nrMaps, got)) as ArrayLike<number>);
    } finally {
      koffi.free(ids);
    }
  }
  const i = koffi.decode(buf, ProgInfoStruct) as Record<string, number> & { tag: Uint8Array; name: string };
  return {
    type: i.type,
    id: i.id,
    tag: Buffer.from(i.tag).toString('hex'),
    jitedLen: i.jited_prog_len,
    xlatedLen: i.xlated_prog_len,
    loadTimeNs: u64At(buf, 'load_time'),
    createdByUid: i.created_by_uid,
    mapIds,
    name: i.name,
    gplCompatible: (i.flags & PROG_INFO_GPL_COMPATIBLE) !== 0,
    btfId: i.btf_id,
    runTimeNs: u64At(buf, 'run_time_ns'),
    runCnt: u64At(buf, 'run_cnt'),
    verifiedInsns: i.verified_insns,
  };
}

export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  /** for XDP links */
  ifindex: number;
}

export function linkInfo(fd: number): LinkInfo {
  const size = koffi.sizeof(XdpLinkInfoStruct);
  const buf = Buffer.alloc(size);
  check('read BPF link info', obj_get_info_by_fd(fd, buf, [size]));
  const i = koffi.decode(buf, XdpLinkInfoStruct) as Record<string, number>;
  return { type: i.type, id: i.id, progId: i.prog_id, ifindex: i.xdp_ifindex };
}

/** Kernel id of the map behind fd (struct bpf_map_info's id). */
export function mapIdOf(fd: number): number {
  const size = koffi.sizeof(MapInfoStruct);
  const buf = Buffer.alloc(size);
  check('read BPF map info', obj_get_info_by_fd(fd, buf, [size]));
  return (koffi.decode(buf, MapInfoStruct) as { id: number }).id;
}

/** Every program id the kernel has, in order. */
export function allProgIds(): number[] {
  return walkIds(prog_get_next_id);
}

function walkIds(next: (start: number, out: number[]) => number): number[] {
  const ids: number[] = [];
  const out = [0];
  let cur = 0;
  while (next(cur, out) === 0) {
    cur = out[0];
    ids.push(cur);
  }
  return ids;
}

export function linkCreate(progFd: number, target: number, attachType: number, flags: number): number {
  // timed apart as well: an XDP attach is most of a load's kernel time (BPFD_TIMINGS)
  return kernelSyscall(() => timedSync('link create', () => link_create(progFd, target, attachType, { sz: koffi.sizeof(LinkCreateOpts), flags })));
}

export function linkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number): void {
  const sz = koffi.sizeof(LinkUpdateOpts);
  const opts = oldProgFd === undefined ? { sz, flags: 0, old_prog_fd: 0 } : { sz, flags: BpfFlag.F_REPLACE, old_prog_fd: oldProgFd };
  check('replace the program behind a BPF link', kernelSyscall(() => link_update(linkFd, newProgFd, opts)));
}

export function linkDetach(linkFd: number): void {
  check('detach BPF link', kernelSyscall(() => link_detach(linkFd)));
}

export function mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | null {
  const value = Buffer.alloc(valueSize);
  const rc = map_lookup_elem(fd, key, value);
  if (rc === -Errno.ENOENT) return null;
  check('look up a map element', rc);
  return value;
}

/** Every element of an array map, in one bpf() call (BPF_MAP_LOOKUP_BATCH) instead of one per element. */
export function mapLookupAll(fd: number, entries: number, valueSize: number): Buffer {
  const values = Buffer.alloc(entries * valueSize);
  const count = [entries];
  const rc = map_lookup_batch(fd, null, Buffer.alloc(4), Buffer.alloc(entries * 4), values, count, null);
  // ENOENT only says the batch reached the map's end
  if (rc < 0 && !(rc === -Errno.ENOENT && count[0] === entries)) check('look up map elements', rc);
  return values;
}

export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags = 0): void {
  check('update a map element', map_update_elem(fd, key, value, BigInt(flags)));
}

/**
 * The wall-clock time, in ns since the epoch, of a kernel time in ns since boot (such as
 * bpf_prog_info.load_time), as bpftool converts it: now on the wall clock, less now since boot.
 */
export function wallClockNsOfBootNs(bootNs: bigint): bigint {
  const now = (clk: number) => {
    const ts = { tv_sec: 0n, tv_nsec: 0n };
    if (clock_gettime(clk, ts) !== 0) throw new KernelError('read the clock', 22);
    return BigInt(ts.tv_sec) * 1_000_000_000n + BigInt(ts.tv_nsec);
  };
  return now(Clock.REALTIME) - now(Clock.BOOTTIME) + bootNs;
}

/** The memory a BPF object charges, as the kernel shows it for the fd (fdinfo memlock; bpftool's bytes_memlock). */
export function fdMemlock(fd: number): number {
  try {
    const m = /^memlock:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
