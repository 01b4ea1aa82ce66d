import { Errno, failed, KernelError } from '../base/errors.js';
import { BpfCmd, BtfLoadAttr, encodeStruct, MapCreateAttr, ProgLoadAttr, SYS_BPF, TestRunAttr } from './abi.js';
import { koffi, lastErrno, libc, withSignalsBlocked } from './lib.js';
import { kernelSyscall } from './kernel-time.js';

/**
 * The bpf(2) commands the dispatcher needs that libbpf's object API does not cover: loading raw
 * instructions (a composed program has no ELF), loading generated BTF, creating maps, and
 * BPF_PROG_TEST_RUN. Raw syscalls with the attr layouts of abi.ts, instead of depending on
 * which option-struct fields libbpf happens to know.
 */

const sys_bpf = libc.func('long syscall(long nr, int cmd, uint8_t *attr, unsigned int size)');

/** Returns the syscall's result, or -errno. attr must stay referenced until this returns. */
export function bpfSyscall(cmd: number, attr: Buffer): number {
  const rc = Number(sys_bpf(SYS_BPF, cmd, attr, attr.length));
  return rc < 0 ? -lastErrno() : rc;
}

/** Address of a Buffer's bytes for a u64 pointer field; the caller keeps the Buffer alive. */
const addr = (b: Buffer | null | undefined): bigint => (b && b.length ? BigInt(koffi.address(b)) : 0n);

export interface ProgLoadRequest {
  progType: number;
  insns: Buffer;
  license: string;
  /** at most 15 bytes are kept */
  name: string;
  expectedAttachType?: number;
  progFlags?: number;
  btfFd?: number;
  /** records of {insn_off u32, type_id u32} */
  funcInfo?: Buffer;
}

export interface ProgLoadResult {
  fd: number;
}

/**
 * Loads a program. The first attempt runs without a verifier log (it is faster); on failure the
 * load is repeated with a log so the error carries the verifier's explanation.
 */
export function loadProgram(req: ProgLoadRequest): ProgLoadResult {
  const first = progLoadOnce(req, 0, null);
  if (first.fd >= 0) return { fd: first.fd };
  const log = Buffer.alloc(4 * 1024 * 1024);
  const second = progLoadOnce(req, 1, log);
  if (second.fd >= 0) return { fd: second.fd }; // flaky first attempt (e.g. EAGAIN): accept it
  const text = log.toString('utf8', 0, Math.max(0, log.indexOf(0)));
  throw new VerifierError(`the kernel refused the program ${req.name}`, -second.fd, text);
}

/** A failed program load with the verifier's log attached (tail kept: that is where the reason is). */
export class VerifierError extends KernelError {
  readonly log: string;
  constructor(what: string, errno: number, log: string) {
    const lines = log.split('\n').filter((l) => l.trim() !== '');
    super(what, errno, lines.length > 40 ? ['…', ...lines.slice(-40)] : lines);
    this.log = log;
  }
}

function progLoadOnce(req: ProgLoadRequest, logLevel: number, log: Buffer | null): { fd: number } {
  const license = Buffer.from(`${req.license}\0`);
  const withFuncInfo = req.btfFd !== undefined && req.funcInfo && req.funcInfo.length;
  const attr = encodeStruct(ProgLoadAttr, {
    prog_type: req.progType,
    insn_cnt: req.insns.length / 8,
    insns: addr(req.insns),
    license: addr(license),
    log_level: logLevel,
    log_size: log ? log.length : 0,
    log_buf: addr(log),
    prog_flags: req.progFlags ?? 0,
    prog_name: req.name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15),
    expected_attach_type: req.expectedAttachType ?? 0,
    ...(withFuncInfo ? { prog_btf_fd: req.btfFd, func_info_rec_size: 8, func_info: addr(req.funcInfo), func_info_cnt: req.funcInfo!.length / 8 } : {}),
  });
  // A signal that loads cannot hold back (see withSignalsBlocked) makes the verifier give up with
  // EAGAIN: try again, as libbpf does for its own loads (5 attempts).
  let fd = -Errno.EAGAIN;
  for (let attempt = 0; attempt < 5 && fd === -Errno.EAGAIN; attempt++) fd = withSignalsBlocked(() => kernelSyscall(() => bpfSyscall(BpfCmd.PROG_LOAD, attr)));
  return { fd };
}

/** Loads BTF data; returns its fd. */
export function loadBtf(data: Buffer): number {
  let fd = bpfSyscall(BpfCmd.BTF_LOAD, encodeStruct(BtfLoadAttr, { btf: addr(data), btf_size: data.length }));
  if (fd >= 0) return fd;
  const log = Buffer.alloc(64 * 1024);
  fd = bpfSyscall(BpfCmd.BTF_LOAD, encodeStruct(BtfLoadAttr, { btf: addr(data), btf_size: data.length, btf_log_buf: addr(log), btf_log_size: log.length, btf_log_level: 1 }));
  if (fd >= 0) return fd;
  const text = log.toString('utf8', 0, Math.max(0, log.indexOf(0)));
  throw new KernelError('the kernel refused generated BTF', -fd, text.split('\n').filter(Boolean));
}

export interface MapCreateRequest {
  mapType: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  name: string;
}

export function createMap(req: MapCreateRequest): number {
  const attr = encodeStruct(MapCreateAttr, {
    map_type: req.mapType,
    key_size: req.keySize,
    value_size: req.valueSize,
    max_entries: req.maxEntries,
    map_flags: req.flags ?? 0,
    map_name: req.name.slice(0, 15),
  });
  const fd = bpfSyscall(BpfCmd.MAP_CREATE, attr);
  if (fd < 0) throw new KernelError(`create map ${req.name}`, -fd);
  return fd;
}

export interface TestRunRequest {
  data: Buffer;
  repeat?: number;
  /** room for the packet as the program leaves it; defaults to data's length plus headroom */
  dataOutSize?: number;
}

export interface TestRunResult {
  retval: number;
  /** average ns per run, as measured by the kernel */
  durationNs: number;
  dataOut: Buffer;
}

/** BPF_PROG_TEST_RUN: runs the program on data in the kernel, repeat times. */
export function testRun(progFd: number, req: TestRunRequest): TestRunResult {
  const out = Buffer.alloc(req.dataOutSize ?? req.data.length + 256);
  const attr = encodeStruct(TestRunAttr, {
    prog_fd: progFd,
    data_size_in: req.data.length,
    data_size_out: out.length,
    data_in: addr(req.data),
    data_out: addr(out),
    repeat: req.repeat ?? 1,
  });
  const rc = bpfSyscall(BpfCmd.PROG_TEST_RUN, attr);
  if (rc < 0) throw new KernelError('BPF_PROG_TEST_RUN', -rc);
  const res = koffi.decode(attr, TestRunAttr) as { retval: number; duration: number; data_size_out: number };
  if (res.data_size_out > out.length) throw failed('BPF_PROG_TEST_RUN returned more data than expected');
  return { retval: res.retval, durationNs: res.duration, dataOut: out.subarray(0, res.data_size_out) };
}
