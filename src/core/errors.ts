// Transitional: the typed errors live in src/base/errors.ts and the exit codes in the CLI. This
// file keeps the old names working while the layers move (issue #11); new code imports base.
import { BpfdError, KernelError, errnoText, type ErrorKind } from '../base/errors.js';

export { BpfdError, KernelError, errnoText, type ErrorKind };

/** Exit codes are part of the CLI contract (shared/CLI.md): scripts branch on them. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  denied: 3,
  notFound: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** CLI.md's exit status of each error kind. */
export function exitCodeOf(e: BpfdError): ExitCode {
  switch (e.kind) {
    case 'invalid':
      return ExitCode.usage;
    case 'denied':
      return ExitCode.denied;
    case 'notFound':
      return ExitCode.notFound;
    default:
      return ExitCode.failed;
  }
}

export const usageError = (msg: string, details: string[] = []) => new BpfdError('invalid', msg, details);
export const failedError = (msg: string, details: string[] = []) => new BpfdError('failed', msg, details);
export const notFoundError = (msg: string) => new BpfdError('notFound', msg);
export const deniedError = (msg: string, reasons: string[]) => new BpfdError('denied', msg, reasons);
