import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { BPFD_OPTIONS_HEADER, bpfmanProto } from '../base/bpfman-proto.js';
import { kernelFactsInfo, kernelInfo, kernelTypeOf, loadType, proceedOnNames, programInfo } from './convert.js';
import { RpcError, Status, VIEW, type CallMeta, type UnaryMethod } from './grpc.js';
const STATUS_NAMES = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k])) as Record<number, string>;
import { rpcErrorOf } from './status.js';
import { parseXdpAttach } from '../core/attach-options.js';
import type { Context, Subject } from '../core/context.js';
import type { ProgramView } from '../core/view.js';
import type { LoadFileRequest } from '../core/programs.js';
import { loadExtensions } from './extensions.js';
import { imageArgs } from './images.js';
import type { ProgramRecord } from '../state/records.js';
import { readStamp } from '../core/read-cache.js';

// The seven bpfman.v1 RPCs, each the same core operation the CLI runs, for the caller the
// service identified. Errors keep the core's message and details; only the status differs
// from the CLI's exit code.

export const SERVICE_NAME = 'bpfman.v1.Bpfman';

export interface ServiceCaller {
  subject: Subject;
}

/** A fresh context per call: who asks, and what the lock holder message names. */
export type ContextFor = (subject: Subject, what: string) => Context;

/** Reads are not asked of the policy: who asks does not change what List answers. */
const ANYONE: Subject = { uid: -1, gid: -1, groups: [], username: 'anyone', pid: 0, via: 'socket' };

// parsed at first use: the executable registers the embedded .proto before any request
let parsed: protobuf.Root | null = null;
const root = () => (parsed ??= protobuf.parse(bpfmanProto(), { keepCase: true }).root);
const type = (name: string) => root().lookupType(`bpfman.v1.${name}`);

export function bpfmanMethods(contextFor: ContextFor, log: (line: string) => void): Record<string, UnaryMethod<ServiceCaller>> {
  type Handler = (req: Record<string, any>, ctx: Context, meta: CallMeta) => Promise<Record<string, unknown> & { [VIEW]?: unknown }>;
  const method = (name: string, handle: Handler): UnaryMethod<ServiceCaller> => ({
    request: type(`${name}Request`),
    response: type(`${name}Response`),
    async handle(req, caller, meta) {
      const s = caller.subject;
      const who = `uid ${s.uid} (${s.username}, pid ${s.pid}, via ${s.via})`;
      const ctx = contextFor(s, `bpfd service ${name} for ${who}`);
      try {
        const res = await handle(req, ctx, meta);
        log(`${name} by ${who}: ok`);
        return res;
      } catch (e) {
        const err = rpcErrorOf(e);
        log(`${name} by ${who}: ${STATUS_NAMES[err.code] ?? err.code}: ${err.message.replace(/\n/g, '; ')}`);
        throw err;
      }
    },
  });
  let replayCtx: Context | undefined;
  return {
    Load: method('Load', load),
    Unload: method('Unload', async (req, ctx) => {
      const { unload } = await import('../core/programs.js');
      await unload(ctx, requiredId(req.id, 'UnloadRequest.id'));
      return {};
    }),
    Attach: method('Attach', attach),
    Detach: method('Detach', async (req, ctx) => {
      const { detach } = await import('../core/programs.js');
      await detach(ctx, requiredId(req.link_id, 'DetachRequest.link_id'));
      return {};
    }),
    List: {
      ...method('List', list),
      // bpfd's programs come from its records and the kernel's facts of each, which do not change
      // while the program lives (its pin, in the stamp): unchanged store and pins, unchanged
      // answer. Others' programs come and go in the kernel, which no stamp covers.
      replayKey(req, meta) {
        if (req.bpfman_programs_only !== true) return null;
        replayCtx ??= contextFor(ANYONE, 'bpfd service List');
        const stamp = readStamp(replayCtx);
        return stamp === null ? null : `${stamp}\u0000${JSON.stringify(req)}\u0000${JSON.stringify(meta.view)}`;
      },
    },
    Get: method('Get', async (req, ctx) => {
      const { get } = await import('../core/read.js');
      const view = await get(ctx, requiredId(req.id, 'GetRequest.id'));
      const records = ctx.store().programs();
      const rec = records.find((r) => r.id === view.id);
      const { kernelFacts } = await import('../core/kernel-programs.js');
      return { info: programInfo(view, rec, usedBy(records, view)), kernel_info: kernelInfo(view, kernelFacts(view.id), rec), [VIEW]: view };
    }),
    PullBytecode: method('PullBytecode', async (req, ctx) => {
      // the same pull as `bpfd pull` (policy action pull), under the request's pull policy
      const img = imageArgs(req.image, 'PullBytecodeRequest.image');
      const { ensureImage, imageView } = await import('../core/images.js');
      const { rec } = await ensureImage(ctx, img.url, img.pullPolicy, { auth: img.registryAuth });
      return { [VIEW]: imageView(rec) };
    }),
  };
}

function requiredId(v: unknown, field: string): number {
  if (typeof v !== 'number' || v <= 0) throw new RpcError(Status.INVALID_ARGUMENT, `${field} is missing: give the id shown by List`);
  return v;
}

async function load(req: Record<string, any>, ctx: Context, meta: CallMeta): Promise<Record<string, unknown>> {
  const ext = loadExtensions(meta.options);
  const loc = req.bytecode;
  if (!loc?.location) throw new RpcError(Status.INVALID_ARGUMENT, 'LoadRequest.bytecode is missing: give file (an object file on the host) or image');
  const { loadFile, unload } = await import('../core/programs.js');
  let loadOne: (common: Omit<LoadFileRequest, 'path'>) => Promise<unknown>;
  if (loc.location === 'image') {
    // the same path as `bpfd load image`: pulled or taken from the cache per the pull policy
    const img = imageArgs(loc.image, 'bytecode.image');
    const { loadImage } = await import('../core/images.js');
    let pullPolicy = img.pullPolicy;
    loadOne = async (common) => {
      const v = await loadImage(ctx, { ...common, image: img.url, pullPolicy, registryAuth: img.registryAuth });
      // the request's other programs come from the image just fetched, not a second pull
      pullPolicy = 'Never';
      return v;
    };
  } else {
    const file = loc.file as string;
    if (!path.isAbsolute(file)) throw new RpcError(Status.INVALID_ARGUMENT, `bytecode.file ${JSON.stringify(file)} is not an absolute path: the service runs elsewhere than the client, give the object's full path on the host`);
    callerMayRead(ctx.subject, file);
    loadOne = (common) => loadFile(ctx, { ...common, path: file });
  }
  const infos = (req.info ?? []) as Array<{ name?: string; program_type?: number }>;
  if (infos.length === 0) throw new RpcError(Status.INVALID_ARGUMENT, 'LoadRequest.info is empty: name each program to load (name, program_type)');
  if ((ext.attach || ext.dryRun) && infos.length !== 1) throw new RpcError(Status.INVALID_ARGUMENT, `${BPFD_OPTIONS_HEADER} attach and dry_run are for one program: give one LoadInfo`);
  const views: ProgramView[] = [];
  try {
    for (const info of infos) {
      if (!info.name) throw new RpcError(Status.INVALID_ARGUMENT, 'LoadInfo.name is missing: give the function name of the program in the object');
      const v = await loadOne({
        name: info.name,
        type: loadType(info.program_type),
        metadata: req.metadata ?? {},
        globals: req.global_data ?? {},
        ...(req.map_owner_id !== undefined ? { mapOwnerId: req.map_owner_id } : {}),
        ...ext,
      });
      // a dry run decides and plans only: its plan is the answer, and nothing is loaded
      if (ext.dryRun) return { programs: [], [VIEW]: [v] };
      views.push(v as ProgramView);
    }
  } catch (e) {
    // one request, one outcome: the programs of this request loaded before the failure go again
    for (const v of views.reverse()) await unload(ctx, v.id).catch(() => undefined);
    throw e;
  }
  // the views the core returned, as `bpfd load` prints them in-process: no second read of the
  // records and pins for them (a warm service answered each Load with a full recovery check)
  const full = views;
  const records = ctx.store().programs();
  const recordOf = (id: number) => records.find((r) => r.id === id);
  const { kernelFacts } = await import('../core/kernel-programs.js');
  return { programs: full.map((v) => ({ info: programInfo(v, recordOf(v.id), usedBy(records, v)), kernel_info: kernelInfo(v, kernelFacts(v.id), recordOf(v.id)) })), [VIEW]: full };
}

/**
 * The service reads the object as root: a caller may name only a file they could read
 * themselves (owner, group and other permission bits; ACLs are not consulted).
 */
function callerMayRead(s: Subject, file: string): void {
  if (s.uid === 0 && s.via !== 'tcp') return;
  let st;
  try {
    accessSync(file, constants.R_OK);
    st = statSync(file);
  } catch {
    throw new RpcError(Status.INVALID_ARGUMENT, `bytecode.file ${file} does not exist or cannot be read: give an object file on the host`);
  }
  const mode = st.mode;
  const readable = st.uid === s.uid ? mode & 0o400 : [s.gid, ...s.groups].includes(st.gid) ? mode & 0o040 : mode & 0o004;
  if (!readable) throw new RpcError(Status.PERMISSION_DENIED, `bytecode.file ${file} is not readable by uid ${s.uid} (${s.username}): make it readable to you, or copy it somewhere that is`);
}

async function attach(req: Record<string, any>, ctx: Context, meta: CallMeta): Promise<Record<string, unknown>> {
  const id = requiredId(req.id, 'AttachRequest.id');
  const info = req.attach;
  if (!info?.info) throw new RpcError(Status.INVALID_ARGUMENT, 'AttachRequest.attach is missing: give xdp_attach_info');
  if (info.info !== 'xdp_attach_info') {
    throw new RpcError(Status.INVALID_ARGUMENT, `${info.info} is not supported by bpfd: programs attach to interfaces through the XDP dispatcher (xdp_attach_info)`);
  }
  const x = info.xdp_attach_info;
  const mode = meta.options.mode;
  if (mode !== undefined && typeof mode !== 'string') throw new RpcError(Status.INVALID_ARGUMENT, `${BPFD_OPTIONS_HEADER} mode must be "skb" or "drv"`);
  const opts = parseXdpAttach({ iface: x.iface || undefined, priority: x.priority ?? 0, proceedOn: proceedOnNames(x.proceed_on), netns: x.netns || undefined, mode });
  const { attach: attachProgram } = await import('../core/programs.js');
  const before = new Set<number>(ctx.store().links().map((l) => l.id));
  const view = await attachProgram(ctx, id, opts);
  const link = view.links.find((l) => !before.has(l.id));
  return { link_id: link?.id ?? 0, [VIEW]: view };
}

async function list(req: Record<string, any>, ctx: Context, meta: CallMeta): Promise<Record<string, unknown> & { [VIEW]?: unknown }> {
  const { listWithRecords, dispatcherProgIds } = await import('../core/read.js');
  // bpfd's own filters (bpfd list --type --iface), for the bpfd command line as a client
  const bpfdFilter = { type: typeof meta.view?.type === 'string' ? meta.view.type : undefined, iface: typeof meta.view?.iface === 'string' ? meta.view.iface : undefined };
  if (meta.view?.pending === true) {
    // bpfd list --pending: programs of an earlier boot, not loaded, so nothing in bpfman's answer
    const { listPending } = await import('../core/read.js');
    return { results: [], [VIEW]: { pending: await listPending(ctx, { metadata: req.match_metadata ?? {}, ...bpfdFilter }) } };
  }
  const listed = await listWithRecords(ctx, { metadata: req.match_metadata ?? {}, ...bpfdFilter });
  const views = listed.views.filter((v) => req.program_type === undefined || kernelTypeOf(v) === req.program_type);
  const records = new Map(listed.records.map((p) => [p.id, p]));
  const others: unknown[] = [];
  const all = req.bpfman_programs_only !== true && (Object.keys(req.match_metadata ?? {}).length === 0 || meta.view);
  // the kernel's facts of each program, one bpf_prog_info read each; none to read, no koffi loaded
  const kernel = views.length > 0 || all ? await import('../core/kernel-programs.js') : null;
  const results: Array<Record<string, unknown>> = views.map((v) => {
    const rec = records.get(v.id);
    return { info: programInfo(v, rec, usedByIn(views, v)), kernel_info: kernelInfo(v, kernel!.kernelFacts(v.id), rec) };
  });
  // bpfman lists every program in the kernel unless asked for its own; those have no ProgramInfo
  if (all) {
    for (const { program, facts } of kernel!.unmanagedProgramFacts(new Set([...views.map((v) => v.id), ...(await dispatcherProgIds(ctx))]))) {
      if (req.program_type === undefined || facts.type === req.program_type) {
        results.push({ kernel_info: kernelFactsInfo(facts) });
        others.push(program);
      }
    }
  }
  return { results, [VIEW]: { views, others } };
}

/** The programs sharing this program's maps, the owner first (ProgramInfo.map_used_by). */
function usedBy(records: ProgramRecord[], v: ProgramView): number[] {
  const owner = v.maps.owner_id ?? v.id;
  return [owner, ...records.filter((r) => r.maps.owner_id === owner).map((r) => r.id)];
}

function usedByIn(views: ProgramView[], v: ProgramView): number[] {
  const owner = v.maps.owner_id ?? v.id;
  return [owner, ...views.filter((x) => x.maps.owner_id === owner).map((x) => x.id)];
}
