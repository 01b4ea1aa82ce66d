import { timedSync } from '../base/timings.js';

/**
 * The program loads and link changes bpfd makes itself (the dispatcher's PROG_LOAD, XDP link
 * create, update and detach), timed as one BPFD_TIMINGS span: the kernel's own work, told apart
 * from what bpfd adds around it in the same process. Measured here rather than under strace in
 * another run: tracing changes how long an XDP attach waits for RCU (bench/cli.ts shows both).
 */
export const kernelSyscall = <T>(fn: () => T): T => timedSync('kernel syscalls', fn);
