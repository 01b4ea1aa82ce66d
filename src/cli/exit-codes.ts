import type { BpfdError } from '../base/errors.js';

/** Exit codes are part of the CLI contract (shared/CLI.md): scripts branch on them. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  denied: 3,
  notFound: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * CLI.md's exit status of each error kind: the one place a kind becomes an exit code. A limit,
 * a busy lock and a kernel refusal are failures (1): the request was well formed.
 */
export function exitCodeOf(e: BpfdError): ExitCode {
  switch (e.kind) {
    case 'invalid':
      return ExitCode.usage;
    case 'denied':
      return ExitCode.denied;
    case 'notFound':
      return ExitCode.notFound;
    case 'limit':
    case 'busy':
    case 'kernel':
    case 'failed':
      return ExitCode.failed;
  }
}
