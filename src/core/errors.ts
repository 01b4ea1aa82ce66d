/** Exit codes are part of the CLI contract (shared/CLI.md): scripts branch on them. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  denied: 3,
  notFound: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorKind = 'failed' | 'usage' | 'denied' | 'notFound';

/**
 * Every failure a user can see is a BpfdError: a message that names what was wrong and what to
 * do, a kind that fixes the exit status and the gRPC code, and optional detail lines (verifier
 * output, policy reasons) printed after the message.
 */
export class BpfdError extends Error {
  readonly kind: ErrorKind;
  readonly details: string[];
  constructor(kind: ErrorKind, message: string, details: string[] = []) {
    super(message);
    this.name = 'BpfdError';
    this.kind = kind;
    this.details = details;
  }
  get exitCode(): ExitCode {
    return ExitCode[this.kind];
  }
}

export const usageError = (msg: string, details: string[] = []) => new BpfdError('usage', msg, details);
export const failedError = (msg: string, details: string[] = []) => new BpfdError('failed', msg, details);
export const notFoundError = (msg: string) => new BpfdError('notFound', msg);
export const deniedError = (msg: string, reasons: string[]) => new BpfdError('denied', msg, reasons);

/** A kernel call failed: errno is positive. */
export class KernelError extends BpfdError {
  readonly errno: number;
  constructor(what: string, errno: number, details: string[] = []) {
    super('failed', `${what}: ${errnoText(errno)}`, details);
    this.errno = errno;
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM (operation not permitted)',
  2: 'ENOENT (no such file or object)',
  7: 'E2BIG (argument list too long)',
  9: 'EBADF (bad file descriptor)',
  12: 'ENOMEM (out of memory)',
  13: 'EACCES (permission denied)',
  16: 'EBUSY (resource busy)',
  17: 'EEXIST (already exists)',
  19: 'ENODEV (no such device)',
  22: 'EINVAL (invalid argument)',
  28: 'ENOSPC (no space left)',
  95: 'EOPNOTSUPP (operation not supported)',
  524: 'ENOTSUPP (not supported by the kernel)',
};

export function errnoText(errno: number): string {
  const e = Math.abs(errno);
  return ERRNO_NAMES[e] ?? `errno ${e}`;
}
