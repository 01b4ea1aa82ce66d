import http2 from 'node:http2';
import net from 'node:net';
import protobuf from 'protobufjs';
import { BPFD_OPTIONS_HEADER, BPFD_VIEW_FIELD, BPFD_VIEW_HEADER, bpfmanProto } from '../base/bpfman-proto.js';
import { BpfdError, failed, type ErrorKind } from '../base/errors.js';
import { serviceAddress } from './remote-option.js';

// The bpfd command line as a client of `bpfd system service`: one unary bpfman.v1 call over
// HTTP/2, asking for bpfd's own view beside bpfman's answer (BPFD_VIEW_FIELD) so that what it
// prints is what the same command prints in-process. The service's errors come back as the
// core's errors (same kind, message and details), so exit codes match too.

// parsed at first use: the executable registers the embedded .proto before any request
let parsed: protobuf.Root | null = null;
const root = () => (parsed ??= protobuf.parse(bpfmanProto(), { keepCase: true }).root);

/** gRPC status → the error kind the core threw on the other side (src/api/status.ts inverted). */
const KIND_OF: Record<number, ErrorKind> = { 3: 'invalid', 5: 'notFound', 7: 'denied', 8: 'limit', 14: 'busy' };

export interface ServiceAnswer<V> {
  response: Record<string, any>;
  view: V | undefined;
}

export class NoService extends Error {
  constructor(readonly address: string, readonly code: string) {
    super(`no bpfd service answers at ${address} (${code})`);
  }
}


export function noServiceError(e: NoService, needsRootFor?: string): BpfdError {
  const start = ['start the service: sudo systemctl enable --now bpfd.socket (systemd/bpfd.socket), or run: sudo bpfd system service', 'or run this command as root (sudo)'];
  if (needsRootFor) {
    return failed(`${needsRootFor} needs root: loading and attaching eBPF programs requires CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN, and ${e.message} to ask instead`, start);
  }
  return failed(e.message, start);
}

/** extensions: bpfd's options of the request (BPFD_OPTIONS_HEADER), sent only when there are some. */
export async function callService<V = unknown>(method: string, request: Record<string, unknown>, viewOptions: Record<string, unknown> = {}, extensions: Record<string, unknown> = {}, address = serviceAddress()): Promise<ServiceAnswer<V>> {
  const reqType = root().lookupType(`bpfman.v1.${method}Request`);
  const resType = root().lookupType(`bpfman.v1.${method}Response`);
  const msg = reqType.encode(reqType.fromObject(request)).finish();
  const frame = Buffer.alloc(5 + msg.length);
  frame.writeUInt32BE(msg.length, 1);
  frame.set(msg, 5);
    const extra: Record<string, string> = { [BPFD_VIEW_HEADER]: JSON.stringify(viewOptions) };
  if (Object.keys(extensions).length) extra[BPFD_OPTIONS_HEADER] = JSON.stringify(extensions);
  const { headers, trailers, body } = await exchange(address, `/bpfman.v1.Bpfman/${method}`, frame, extra);
  const status = Number(trailers['grpc-status'] ?? headers['grpc-status'] ?? 2);
  if (status !== 0) {
    const text = decodeURIComponent(String(trailers['grpc-message'] ?? headers['grpc-message'] ?? `status ${status}`));
    const [message, ...details] = text.split('\n');
    throw new BpfdError(KIND_OF[status] ?? 'failed', message, details);
  }
  if (body.length < 5) throw failed(`the bpfd service at ${address} sent no answer to ${method}`);
  const payload = body.subarray(5, 5 + body.readUInt32BE(1));
  return { response: resType.toObject(resType.decode(payload), { longs: Number, oneofs: true }), view: viewIn(payload) as V | undefined };
}

function viewIn(payload: Uint8Array): unknown {
  const r = protobuf.Reader.create(payload);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === BPFD_VIEW_FIELD && (tag & 7) === 2) return JSON.parse(r.string());
    r.skipType(tag & 7);
  }
  return undefined;
}

function exchange(address: string, route: string, frame: Buffer, extra: Record<string, string>): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
  const unix = /^unix:(?:\/\/)?(\/.+)$/.exec(address);
  const tcp = /^tcp:\/\/(.+)$/.exec(address);
  if (!unix && !tcp) throw failed(`BPFD_SOCKET=${address}: give unix:///PATH or tcp://HOST:PORT`);
  return new Promise((resolve, reject) => {
    // the socket's own error (ENOENT, ECONNREFUSED, EACCES) says more than the stream's
    let connectError: string | undefined;
    const connection = () => {
      const s = unix ? net.connect({ path: unix[1] }) : net.connect({ host: tcp![1].replace(/:\d+$/, '').replace(/^\[|\]$/g, ''), port: Number(/:(\d+)$/.exec(tcp![1])?.[1]) });
      s.on('error', (e: NodeJS.ErrnoException) => (connectError ??= e.code ?? e.message));
      return s;
    };
    const session = http2.connect('http://localhost', { createConnection: connection });
    let answered = false;
    const fail = (e: NodeJS.ErrnoException) => {
      if (!answered) reject(new NoService(address, connectError ?? e.code ?? e.message));
    };
    session.on('error', fail);
    const stream = session.request({ ':method': 'POST', ':path': route, 'content-type': 'application/grpc+proto', te: 'trailers', ...extra });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', fail);
    stream.on('end', () => {
      answered = true;
      session.close();
      resolve({ headers, trailers, body: Buffer.concat(chunks) });
    });
    stream.end(frame);
  });
}
