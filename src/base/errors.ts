/**
 * Typed errors for every layer. A kind says what went wrong, never how to exit: the CLI maps
 * kinds to exit codes (src/cli/exit-codes.ts) and the service maps the same kinds to gRPC status.
 * Every failure a user can see is a BpfdError: a message that names what was wrong and what to
 * do, and optional detail lines (verifier output, policy reasons) shown after it.
 */
export type ErrorKind =
  /** the request or its input (flags, object file, data document) is wrong: fix it and retry */
  | 'invalid'
  /** the program, link, image or mount named does not exist */
  | 'notFound'
  /** the policy said no; details are its reasons */
  | 'denied'
  /** a limit was reached (programs per interface, sizes) */
  | 'limit'
  /** another bpfd holds what this needs (the writer lock) and did not let go in time */
  | 'busy'
  /** a kernel call failed; see KernelError.errno */
  | 'kernel'
  /** anything else that failed: registry, store, a precondition */
  | 'failed';

export class BpfdError extends Error {
  readonly kind: ErrorKind;
  readonly details: string[];
  constructor(kind: ErrorKind, message: string, details: string[] = []) {
    super(message);
    this.name = 'BpfdError';
    this.kind = kind;
    this.details = details;
  }
}

export const invalidInput = (msg: string, details: string[] = []) => new BpfdError('invalid', msg, details);
export const notFound = (msg: string, details: string[] = []) => new BpfdError('notFound', msg, details);
export const denied = (msg: string, reasons: string[]) => new BpfdError('denied', msg, reasons);
export const limitReached = (msg: string, details: string[] = []) => new BpfdError('limit', msg, details);
export const busy = (msg: string, details: string[] = []) => new BpfdError('busy', msg, details);
export const failed = (msg: string, details: string[] = []) => new BpfdError('failed', msg, details);

/** errno values bpfd branches on or names, by their names. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  ELOOP: 40,
  EOPNOTSUPP: 95,
  ENOTSUPP: 524,
} as const;
export type ErrnoName = keyof typeof Errno;

const ERRNO_TEXT: Partial<Record<ErrnoName, string>> = {
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or object',
  ESRCH: 'no such process',
  EINTR: 'interrupted',
  EIO: 'input/output error',
  E2BIG: 'argument list too long',
  EBADF: 'bad file descriptor',
  EAGAIN: 'try again',
  ENOMEM: 'out of memory',
  EACCES: 'permission denied',
  EFAULT: 'bad address',
  EBUSY: 'resource busy',
  EEXIST: 'already exists',
  ENODEV: 'no such device',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EINVAL: 'invalid argument',
  ENOSPC: 'no space left',
  ERANGE: 'out of range',
  ENOSYS: 'not implemented',
  ELOOP: 'too many levels of symbolic links',
  EOPNOTSUPP: 'operation not supported',
  ENOTSUPP: 'not supported by the kernel',
};

const NAME_OF = new Map<number, ErrnoName>(Object.entries(Errno).map(([k, v]) => [v, k as ErrnoName]));

/** The errno's name, or `errno N` for one bpfd has no name for. */
export function errnoName(errno: number): string {
  return NAME_OF.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/** `EPERM (operation not permitted)`: what messages show. */
export function errnoText(errno: number): string {
  const name = NAME_OF.get(Math.abs(errno));
  return name ? `${name} (${ERRNO_TEXT[name] ?? name})` : `errno ${Math.abs(errno)}`;
}

/** A kernel call failed: errno is positive. */
export class KernelError extends BpfdError {
  readonly errno: number;
  constructor(what: string, errno: number, details: string[] = []) {
    super('kernel', `${what}: ${errnoText(errno)}`, details);
    this.errno = Math.abs(errno);
  }
}
