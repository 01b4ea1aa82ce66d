import { BpfdError, type ErrorKind } from '../base/errors.js';
import { RpcError, Status } from './grpc.js';

/** The gRPC status of each error kind, as the CLI has an exit code for each. */
const CODE_OF: Record<ErrorKind, number> = {
  invalid: Status.INVALID_ARGUMENT,
  notFound: Status.NOT_FOUND,
  denied: Status.PERMISSION_DENIED,
  limit: Status.RESOURCE_EXHAUSTED,
  busy: Status.UNAVAILABLE,
  kernel: Status.FAILED_PRECONDITION,
  failed: Status.FAILED_PRECONDITION,
};

/**
 * A core error as the client sees it: the message the CLI would print, then its details (the
 * policy's reasons, the verifier's log, what to do) one a line, as the CLI prints them.
 */
export function rpcErrorOf(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  if (e instanceof BpfdError) return new RpcError(CODE_OF[e.kind], [e.message, ...e.details].join('\n'));
  return new RpcError(Status.INTERNAL, `internal error: ${(e as Error)?.message ?? String(e)}; please report it`);
}
