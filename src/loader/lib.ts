import koffi from 'koffi';
import { libbpfVersionOf, unsupportedLibbpf } from './libbpf-version.js';

/**
 * The one place that opens native libraries. libbpf 1.4 (bookworm-backports) or newer is
 * required; everything else in src/loader declares its functions against these handles.
 */
export const libbpf = koffi.load('libbpf.so.1');
// Refuse an older libbpf before any of its functions is declared or called (see libbpf-version.ts).
const loadedLibbpf = libbpfVersionOf(libbpf);
if (!loadedLibbpf.supported) throw unsupportedLibbpf(loadedLibbpf);
export const libc = koffi.load('libc.so.6');

/**
 * OpenSSL's one-shot SHA256, for base/sha256's useNativeSha256: every node binary carries OpenSSL,
 * linked in or as libcrypto loaded with it, so its SHA256 is among the process's own symbols.
 * null in a node without it (sha256Hex then stays on node:crypto).
 */
export const opensslSha256: ((data: Uint8Array) => Buffer) | null = (() => {
  try {
    const SHA256 = koffi.load(null as unknown as string).func('void *SHA256(const uint8_t *d, size_t n, _Out_ uint8_t *md)');
    return (data: Uint8Array) => {
      const md = Buffer.alloc(32);
      SHA256(data, data.length, md);
      return md;
    };
  } catch {
    return null; // no SHA256 symbol in this process
  }
})();

// libbpf's opaque handles, declared by name so that signatures elsewhere can say `bpf_object *`.
koffi.opaque('bpf_object');
koffi.opaque('bpf_program');
koffi.opaque('bpf_map');

export { koffi };

// libbpf reports through a printf-style callback with a va_list; on x86-64 a va_list is passed
// as a pointer, so libc's vsnprintf can format it without knowing the arguments.
const vsnprintf = libc.func('int vsnprintf(_Out_ uint8_t *buf, size_t size, const char *fmt, void *ap)');
const PrintFn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *ap)');
const setPrint = libbpf.func('void *libbpf_set_print(libbpf_print_fn *fn)');

const LOG_LIMIT = 256 * 1024;
let captured: string[] = [];
let capturedBytes = 0;
const fmtBuf = Buffer.alloc(64 * 1024);

const printCallback = koffi.register((level: number, fmt: string, ap: unknown): number => {
  const n = vsnprintf(fmtBuf, fmtBuf.length, fmt, ap);
  if (n <= 0 || capturedBytes > LOG_LIMIT) return 0;
  const text = fmtBuf.toString('utf8', 0, Math.min(n, fmtBuf.length - 1));
  captured.push(text);
  capturedBytes += text.length;
  if (process.env.BPFD_DEBUG_LIBBPF) process.stderr.write(`libbpf[${level}]: ${text}`);
  return 0;
}, koffi.pointer(PrintFn));
setPrint(printCallback);

/** Take and clear what libbpf printed since the last call. */
export function takeLibbpfLog(): string {
  const log = captured.join('');
  captured = [];
  capturedBytes = 0;
  return log;
}

const sigfillset = libc.func('int sigfillset(_Out_ uint8_t *set)');
const pthread_sigmask = libc.func('int pthread_sigmask(int how, const uint8_t *set, _Out_ uint8_t *oldset)');
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
const SIGSET_BYTES = 128;
const allSignals = Buffer.alloc(SIGSET_BYTES);
sigfillset(allSignals);
// Under Bun, JavaScriptCore suspends the JS thread with SIGPWR (its sampling profiler does, while
// it holds locks the thread may need to run JS, as libbpf's print callback does inside a load).
// Held back, the sample would wait for the load and the load for the sample: a hang. So SIGPWR
// stays deliverable, and a load it interrupts with EAGAIN is tried again (prog-load.ts; libbpf
// retries its own).
const SIGPWR = 30;
if (process.versions.bun) libc.func('int sigdelset(_Inout_ uint8_t *set, int signo)')(allSignals, SIGPWR);

/**
 * Runs fn with this thread's signals blocked. The verifier gives up with EAGAIN as soon as a
 * signal is pending for the loading thread (a profiler's SIGPROF, a terminal resize), so program
 * loads run with signals held back; they are delivered when fn returns. SIGKILL still kills, and
 * under Bun SIGPWR still arrives (see allSignals).
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const previous = Buffer.alloc(SIGSET_BYTES);
  pthread_sigmask(SIG_BLOCK, allSignals, previous);
  try {
    return fn();
  } finally {
    pthread_sigmask(SIG_SETMASK, previous, Buffer.alloc(SIGSET_BYTES));
  }
}

/** errno of the last failed libc call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}
