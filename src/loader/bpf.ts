import { KernelError } from '../base/errors.js';
import { koffi, libbpf, libc } from './lib.js';

/** Thin, typed wrappers over libbpf's low-level (syscall) API. Negative returns are -errno. */

export const BPF_PROG_TYPE_XDP = 6;
export const BPF_XDP = 37; // enum bpf_attach_type
export const BPF_F_REPLACE = 1 << 2;
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;

const prog_get_fd_by_id = libbpf.func('int bpf_prog_get_fd_by_id(uint32_t id)');
const map_get_fd_by_id = libbpf.func('int bpf_map_get_fd_by_id(uint32_t id)');
const link_get_fd_by_id = libbpf.func('int bpf_link_get_fd_by_id(uint32_t id)');
const obj_pin = libbpf.func('int bpf_obj_pin(int fd, const char *path)');
const obj_get = libbpf.func('int bpf_obj_get(const char *path)');
const obj_get_info_by_fd = libbpf.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint32_t *len)');
const prog_get_next_id = libbpf.func('int bpf_prog_get_next_id(uint32_t start, _Out_ uint32_t *next)');
const link_get_next_id = libbpf.func('int bpf_link_get_next_id(uint32_t start, _Out_ uint32_t *next)');
const LinkCreateOpts = koffi.struct('bpf_link_create_opts_head', { sz: 'size_t', flags: 'uint32_t' });
const link_create = libbpf.func('int bpf_link_create(int prog_fd, int target, int attach_type, const bpf_link_create_opts_head *opts)');
const LinkUpdateOpts = koffi.struct('bpf_link_update_opts', { sz: 'size_t', flags: 'uint32_t', old_prog_fd: 'uint32_t' });
const link_update = libbpf.func('int bpf_link_update(int link_fd, int new_prog_fd, const bpf_link_update_opts *opts)');
const link_detach = libbpf.func('int bpf_link_detach(int link_fd)');
const map_lookup_elem = libbpf.func('int bpf_map_lookup_elem(int fd, const uint8_t *key, _Out_ uint8_t *value)');
const map_lookup_batch = libbpf.func(
  'int bpf_map_lookup_batch(int fd, void *in_batch, _Out_ uint8_t *out_batch, _Out_ uint8_t *keys, _Out_ uint8_t *values, _Inout_ uint32_t *count, void *opts)',
);
const map_update_elem = libbpf.func('int bpf_map_update_elem(int fd, const uint8_t *key, const uint8_t *value, uint64_t flags)');
const c_close = libc.func('int close(int fd)');

function check(what: string, rc: number): number {
  if (rc < 0) throw new KernelError(what, -rc);
  return rc;
}

export function closeFd(fd: number): void {
  if (fd >= 0) c_close(fd);
}

/** Run fn with fd and close it afterwards, whatever happens. */
export function withFd<T>(fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    closeFd(fd);
  }
}

export const progFdById = (id: number) => check(`open BPF program id ${id}`, prog_get_fd_by_id(id));
export const mapFdById = (id: number) => check(`open BPF map id ${id}`, map_get_fd_by_id(id));
export const linkFdById = (id: number) => check(`open BPF link id ${id}`, link_get_fd_by_id(id));

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

const PROG_INFO_SIZE = 232;

export function progInfo(fd: number): ProgInfo {
  let buf = Buffer.alloc(PROG_INFO_SIZE);
  const len = [PROG_INFO_SIZE];
  check('read BPF program info', obj_get_info_by_fd(fd, buf, len));
  const nrMaps = buf.readUInt32LE(52);
  let mapIds: number[] = [];
  if (nrMaps > 0) {
    const ids = koffi.alloc('uint32_t', nrMaps);
    try {
      buf = Buffer.alloc(PROG_INFO_SIZE);
      buf.writeUInt32LE(nrMaps, 52);
      buf.writeBigUInt64LE(BigInt(koffi.address(ids)), 56);
      check('read BPF program map ids', obj_get_info_by_fd(fd, buf, [PROG_INFO_SIZE]));
      mapIds = Array.from(koffi.decode(ids, 'uint32_t', Math.min(nrMaps, buf.readUInt32LE(52))) as ArrayLike<number>);
    } finally {
      koffi.free(ids);
    }
  }
  return {
    type: buf.readUInt32LE(0),
    id: buf.readUInt32LE(4),
    tag: buf.subarray(8, 16).toString('hex'),
    jitedLen: buf.readUInt32LE(16),
    xlatedLen: buf.readUInt32LE(20),
    loadTimeNs: buf.readBigUInt64LE(40),
    createdByUid: buf.readUInt32LE(48),
    mapIds,
    name: cstr(buf.subarray(64, 80)),
    gplCompatible: (buf.readUInt32LE(84) & 1) === 1,
    btfId: buf.readUInt32LE(128),
    runTimeNs: buf.readBigUInt64LE(192),
    runCnt: buf.readBigUInt64LE(200),
    verifiedInsns: buf.readUInt32LE(216),
  };
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

export function mapInfo(fd: number): MapInfo {
  const buf = Buffer.alloc(88);
  check('read BPF map info', obj_get_info_by_fd(fd, buf, [88]));
  return {
    type: buf.readUInt32LE(0),
    id: buf.readUInt32LE(4),
    keySize: buf.readUInt32LE(8),
    valueSize: buf.readUInt32LE(12),
    maxEntries: buf.readUInt32LE(16),
    flags: buf.readUInt32LE(20),
    name: cstr(buf.subarray(24, 40)),
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
  const buf = Buffer.alloc(128);
  check('read BPF link info', obj_get_info_by_fd(fd, buf, [128]));
  return { type: buf.readUInt32LE(0), id: buf.readUInt32LE(4), progId: buf.readUInt32LE(8), ifindex: buf.readUInt32LE(16) };
}

/** Every program id the kernel has, in order. */
export function allProgIds(): number[] {
  return walkIds(prog_get_next_id);
}

export function allLinkIds(): number[] {
  return walkIds(link_get_next_id);
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
  return link_create(progFd, target, attachType, { sz: 16, flags });
}

export function linkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number): void {
  const opts = oldProgFd === undefined ? { sz: 16, flags: 0, old_prog_fd: 0 } : { sz: 16, flags: BPF_F_REPLACE, old_prog_fd: oldProgFd };
  check('replace the program behind a BPF link', link_update(linkFd, newProgFd, opts));
}

export function linkDetach(linkFd: number): void {
  check('detach BPF link', link_detach(linkFd));
}

export function mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | null {
  const value = Buffer.alloc(valueSize);
  const rc = map_lookup_elem(fd, key, value);
  if (rc === -2) return null;
  check('look up a map element', rc);
  return value;
}

/** Every element of an array map, in one bpf() call (BPF_MAP_LOOKUP_BATCH) instead of one per element. */
export function mapLookupAll(fd: number, entries: number, valueSize: number): Buffer {
  const values = Buffer.alloc(entries * valueSize);
  const count = [entries];
  const rc = map_lookup_batch(fd, null, Buffer.alloc(4), Buffer.alloc(entries * 4), values, count, null);
  // ENOENT only says the batch reached the map's end
  if (rc < 0 && !(rc === -2 && count[0] === entries)) check('look up map elements', rc);
  return values;
}

export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags = 0): void {
  check('update a map element', map_update_elem(fd, key, value, BigInt(flags)));
}

function cstr(b: Buffer): string {
  const z = b.indexOf(0);
  return b.toString('utf8', 0, z < 0 ? b.length : z);
}
