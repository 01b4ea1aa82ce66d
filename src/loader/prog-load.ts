import { failed, KernelError } from '../base/errors.js';
import { koffi, lastErrno, libc, withSignalsBlocked } from './lib.js';

/**
 * The bpf(2) commands the dispatcher needs that libbpf's object API does not cover: loading raw
 * instructions (a composed program has no ELF), loading generated BTF, creating maps, and
 * BPF_PROG_TEST_RUN. Raw syscalls keep the attr layouts in one visible place instead of
 * depending on which option-struct fields libbpf 1.1 happens to know.
 */

const SYS_BPF = 321; // x86-64
const sys_bpf = libc.func('long syscall(long nr, int cmd, uint8_t *attr, unsigned int size)');

const BPF_MAP_CREATE = 0;
const BPF_MAP_FREEZE = 22;
const BPF_PROG_LOAD = 5;
const BPF_PROG_TEST_RUN = 10;
const BPF_BTF_LOAD = 18;

export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_F_RDONLY_PROG = 1 << 7;
export const BPF_F_XDP_HAS_FRAGS = 1 << 5;

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
  const attr = Buffer.alloc(144);
  attr.writeUInt32LE(req.progType, 0);
  attr.writeUInt32LE(req.insns.length / 8, 4);
  attr.writeBigUInt64LE(addr(req.insns), 8);
  attr.writeBigUInt64LE(addr(license), 16);
  attr.writeUInt32LE(logLevel, 24);
  attr.writeUInt32LE(log ? log.length : 0, 28);
  attr.writeBigUInt64LE(addr(log), 32);
  attr.writeUInt32LE(req.progFlags ?? 0, 44);
  Buffer.from(req.name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15)).copy(attr, 48);
  attr.writeUInt32LE(req.expectedAttachType ?? 0, 68);
  if (req.btfFd !== undefined && req.funcInfo && req.funcInfo.length) {
    attr.writeUInt32LE(req.btfFd, 72);
    attr.writeUInt32LE(8, 76);
    attr.writeBigUInt64LE(addr(req.funcInfo), 80);
    attr.writeUInt32LE(req.funcInfo.length / 8, 88);
  }
  return { fd: withSignalsBlocked(() => bpfSyscall(BPF_PROG_LOAD, attr)) };
}

/** Loads BTF data; returns its fd. */
export function loadBtf(data: Buffer): number {
  const attr = Buffer.alloc(32);
  attr.writeBigUInt64LE(addr(data), 0);
  attr.writeUInt32LE(data.length, 16);
  let fd = bpfSyscall(BPF_BTF_LOAD, attr);
  if (fd >= 0) return fd;
  const log = Buffer.alloc(64 * 1024);
  attr.writeBigUInt64LE(addr(log), 8);
  attr.writeUInt32LE(log.length, 20);
  attr.writeUInt32LE(1, 24);
  fd = bpfSyscall(BPF_BTF_LOAD, attr);
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
  const attr = Buffer.alloc(72);
  attr.writeUInt32LE(req.mapType, 0);
  attr.writeUInt32LE(req.keySize, 4);
  attr.writeUInt32LE(req.valueSize, 8);
  attr.writeUInt32LE(req.maxEntries, 12);
  attr.writeUInt32LE(req.flags ?? 0, 16);
  Buffer.from(req.name.slice(0, 15)).copy(attr, 28);
  const fd = bpfSyscall(BPF_MAP_CREATE, attr);
  if (fd < 0) throw new KernelError(`create map ${req.name}`, -fd);
  return fd;
}

/** Makes a map read-only for user space from now on. */
export function freezeMap(fd: number): void {
  const attr = Buffer.alloc(8);
  attr.writeUInt32LE(fd, 0);
  const rc = bpfSyscall(BPF_MAP_FREEZE, attr);
  if (rc < 0) throw new KernelError('freeze map', -rc);
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
  const attr = Buffer.alloc(80);
  attr.writeUInt32LE(progFd, 0);
  attr.writeUInt32LE(req.data.length, 8);
  attr.writeUInt32LE(out.length, 12);
  attr.writeBigUInt64LE(addr(req.data), 16);
  attr.writeBigUInt64LE(addr(out), 24);
  attr.writeUInt32LE(req.repeat ?? 1, 32);
  const rc = bpfSyscall(BPF_PROG_TEST_RUN, attr);
  if (rc < 0) throw new KernelError('BPF_PROG_TEST_RUN', -rc);
  const outLen = attr.readUInt32LE(12);
  if (outLen > out.length) throw failed('BPF_PROG_TEST_RUN returned more data than expected');
  return { retval: attr.readUInt32LE(4), durationNs: attr.readUInt32LE(36), dataOut: out.subarray(0, outLen) };
}
