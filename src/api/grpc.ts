import type { Http2Server, ServerHttp2Stream, IncomingHttpHeaders, ServerHttp2Session } from 'node:http2';
import type protobuf from 'protobufjs';
import { BPFD_OPTIONS_HEADER, BPFD_VIEW_FIELD, BPFD_VIEW_HEADER } from '../base/bpfman-proto.js';

/**
 * Unary gRPC over node:http2, the part of the protocol bpfman.v1 uses: one length-prefixed
 * protobuf message each way, status in trailers. Hand-written rather than @grpc/grpc-js's server
 * because the service must serve a socket systemd passed (fd 3), know the connection of every
 * call (SO_PEERCRED), and decide itself when a call is refused during shutdown; grpc-js binds its
 * own sockets by address and hides connections from handlers.
 */

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

export class RpcError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** A response's bpfd view (BPFD_VIEW_FIELD), under this key of the object a handler returns. */
export const VIEW = Symbol('bpfd view');

export interface CallMeta {
  /** the BPFD_VIEW_HEADER request header: the caller wants bpfd's view (JSON options), or null */
  view: Record<string, unknown> | null;
  /** the BPFD_OPTIONS_HEADER request header: bpfd's extensions of the request (JSON object), or {} */
  options: Record<string, unknown>;
}

export interface UnaryMethod<Caller> {
  request: protobuf.Type;
  response: protobuf.Type;
  /**
   * For a read whose answer depends only on the request and on state that can be stamped: equal
   * keys mean an equal answer, so the last one is sent again without asking the core. null: ask.
   */
  replayKey?(req: Record<string, any>, meta: CallMeta): string | null;
  handle(req: Record<string, any>, caller: Caller, meta: CallMeta): Promise<Record<string, unknown> & { [VIEW]?: unknown }>;
}

export interface CallHooks<Caller> {
  /** null: refuse the call with UNAVAILABLE and this message (shutting down) */
  admit(): string | null;
  callerOf(session: ServerHttp2Session): Promise<Caller>;
  started(): void;
  finished(): void;
}

/** Bigger requests are refused; a Load names a file, it does not carry one. */
const MAX_MESSAGE = 4 * 1024 * 1024;

export function serveGrpc<Caller>(server: Http2Server, service: string, methods: Record<string, UnaryMethod<Caller>>, hooks: CallHooks<Caller>): void {
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const route = String(headers[':path'] ?? '');
    const prefix = `/${service}/`;
    const method = route.startsWith(prefix) ? methods[route.slice(prefix.length)] : undefined;
    if (headers[':method'] !== 'POST' || !String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    if (!method) {
      trailersOnly(stream, Status.UNIMPLEMENTED, `no method ${route}: this is ${service} (Load, Unload, Attach, Detach, List, Get, PullBytecode)`);
      return;
    }
    const refusal = hooks.admit();
    if (refusal !== null) {
      trailersOnly(stream, Status.UNAVAILABLE, refusal);
      stream.resume();
      return;
    }
    hooks.started();
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        hooks.finished();
      }
    };
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_MESSAGE + 5) chunks.push(c);
    });
    stream.on('error', () => {
      /* the client went away; the call still completes (never half-done), unanswered */
    });
    let answering = false;
    stream.on('close', () => {
      // closed before the whole request arrived: nothing was started
      if (!answering) finish();
    });
    stream.on('end', () => {
      answering = true;
      void answer(stream, method, Buffer.concat(chunks), size, hooks.callerOf(stream.session as ServerHttp2Session), headers).finally(finish);
    });
  });
}

const replays = new WeakMap<object, { key: string; out: Uint8Array }>();

function viewOptions(headers: IncomingHttpHeaders): Record<string, unknown> | null {
  const h = headers[BPFD_VIEW_HEADER];
  if (typeof h !== 'string') return null;
  try {
    const v = JSON.parse(h);
    return typeof v === 'object' && v !== null ? v : {};
  } catch {
    return {};
  }
}

/** bpfd's request extensions: absent is none; anything but a JSON object is the caller's mistake. */
function requestOptions(headers: IncomingHttpHeaders): Record<string, unknown> {
  const h = headers[BPFD_OPTIONS_HEADER];
  if (h === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(String(h));
  } catch {
    v = null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RpcError(Status.INVALID_ARGUMENT, `the ${BPFD_OPTIONS_HEADER} header is not a JSON object: send bpfd's options as one, or leave the header out`);
  return v as Record<string, unknown>;
}

async function answer<Caller>(stream: ServerHttp2Stream, method: UnaryMethod<Caller>, body: Buffer, size: number, callerP: Promise<Caller>, headers: IncomingHttpHeaders): Promise<void> {
  let reply: Buffer;
  const view = viewOptions(headers);
  try {
    const options = requestOptions(headers);
    if (size > MAX_MESSAGE + 5) throw new RpcError(Status.RESOURCE_EXHAUSTED, `request of ${size} bytes is larger than ${MAX_MESSAGE}`);
    const req = decodeRequest(method.request, body);
    const caller = await callerP;
    const key = method.replayKey?.(req, { view, options }) ?? null;
    let out: Uint8Array;
    if (key !== null && replays.get(method)?.key === key) out = replays.get(method)!.out;
    else {
      const res = await method.handle(req, caller, { view, options });
      const writer = method.response.encode(method.response.fromObject(res));
      // unknown to bpfman.v1, skipped by its clients; only for a caller that asked
      if (view && res[VIEW] !== undefined) writer.uint32((BPFD_VIEW_FIELD << 3) | 2).string(JSON.stringify(res[VIEW]));
      out = writer.finish();
      if (key !== null) replays.set(method, { key, out });
    }
    reply = Buffer.alloc(5 + out.length);
    reply.writeUInt32BE(out.length, 1);
    reply.set(out, 5);
  } catch (e) {
    const err = e instanceof RpcError ? e : new RpcError(Status.INTERNAL, `internal error: ${(e as Error)?.message ?? String(e)}; please report it`);
    trailersOnly(stream, err.code, err.message);
    return;
  }
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': String(Status.OK) }));
  stream.end(reply);
}

function decodeRequest(type: protobuf.Type, body: Buffer): Record<string, any> {
  if (body.length < 5) throw new RpcError(Status.INVALID_ARGUMENT, 'the request carries no gRPC message');
  if (body[0] !== 0) throw new RpcError(Status.UNIMPLEMENTED, 'compressed messages are not supported: send them uncompressed (identity)');
  const len = body.readUInt32BE(1);
  if (body.length !== 5 + len) throw new RpcError(Status.INVALID_ARGUMENT, 'a unary call carries exactly one message');
  try {
    return type.toObject(type.decode(body.subarray(5)), { longs: Number, bytes: Buffer, oneofs: true, defaults: false });
  } catch (e) {
    throw new RpcError(Status.INVALID_ARGUMENT, `cannot decode ${type.name}: ${(e as Error).message}`);
  }
}

function trailersOnly(stream: ServerHttp2Stream, code: number, message: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-status': String(code), 'grpc-message': percentEncode(message) }, { endStream: true });
}

/** grpc-message is percent-encoded UTF-8 (the gRPC HTTP/2 protocol), so newlines survive. */
function percentEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}
