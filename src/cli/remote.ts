import path from 'node:path';
import { PULL_POLICIES, type PullPolicy } from '../base/bpfman-proto.js';
import type { Parsed } from './command.js';
import { callService, NoService, noServiceError } from './service-client.js';
import type { XdpAttachOptions } from '../core/attach-options.js';
import type { ImageView } from '../core/images.js';
import type { KernelOnlyProgram } from '../core/kernel-programs.js';
import type { PendingView, ProgramView } from '../core/view.js';
import type { DryRunResult } from '../core/plan.js';

// load, unload, attach, detach, list and get through the bpfd service instead of in-process:
// for a user without the privileges to act (the policy then judges them as who they are), or
// with --remote. The commands print what they print in-process: the service sends bpfd's views.

async function call<V>(what: string, p: Parsed, method: string, request: Record<string, unknown>, view: Record<string, unknown> = {}, extensions: Record<string, unknown> = {}): Promise<{ response: Record<string, any>; view: V }> {
  try {
    const r = await callService<V>(method, request, view, extensions);
    return { response: r.response, view: r.view as V };
  } catch (e) {
    if (e instanceof NoService) throw noServiceError(e, p.values.remote === true ? undefined : what);
    throw e;
  }
}

const PROCEED_ON_NUMBERS: Record<string, number> = { aborted: 0, drop: 1, pass: 2, tx: 3, redirect: 4, dispatcher_return: 31 };
const LOAD_TYPE_NUMBERS: Record<string, number> = { xdp: 0, tc: 1, tracepoint: 2, kprobe: 3, uprobe: 4, tcx: 7 };

function xdpAttachInfo(o: XdpAttachOptions): Record<string, unknown> {
  return { xdp_attach_info: { iface: o.iface, priority: o.priority, proceed_on: o.proceedOn.map((a) => PROCEED_ON_NUMBERS[a]), ...(o.netns ? { netns: o.netns } : {}) } };
}

export interface RemoteLoad {
  /** the object file, or the image (load image) */
  path?: string;
  image?: { url: string; pullPolicy: PullPolicy; registryAuth?: string };
  name: string;
  type: string;
  metadata: Record<string, string>;
  globals: Record<string, Buffer>;
  mapOwnerId?: number;
  attach?: XdpAttachOptions;
  persist: boolean;
  application: string | null;
  dryRun: boolean;
}

/**
 * One Load, as one `bpfd load` in-process: bpfd's options bpfman.v1 has no field for (attach,
 * --persist, --application, --dry-run) go as the service's extensions (BPFD_OPTIONS_HEADER).
 */
export async function remoteLoad(p: Parsed, req: RemoteLoad): Promise<ProgramView | DryRunResult> {
  const extensions = {
    ...(req.attach ? { attach: { iface: req.attach.iface, priority: req.attach.priority, proceed_on: req.attach.proceedOn, netns: req.attach.netns, mode: req.attach.mode } } : {}),
    ...(req.persist ? { persist: true } : {}),
    ...(req.application !== null ? { application: req.application } : {}),
    ...(req.dryRun ? { dry_run: true } : {}),
  };
  const loaded = await call<Array<ProgramView | DryRunResult>>(req.image ? 'bpfd load image' : 'bpfd load', p, 'Load', {
    bytecode: req.image ? { image: await bytecodeImage(req.image) } : { file: path.resolve(req.path!) },
    info: [{ name: req.name, program_type: LOAD_TYPE_NUMBERS[req.type] ?? 0 }],
    metadata: req.metadata,
    global_data: req.globals,
    ...(req.mapOwnerId !== undefined ? { map_owner_id: req.mapOwnerId } : {}),
  }, {}, extensions);
  return loaded.view[0];
}

/** BytecodeImage: the caller's own credentials travel in it (the service never lends its own to another uid). */
async function bytecodeImage(i: NonNullable<RemoteLoad['image']>): Promise<Record<string, unknown>> {
  const { parseRegistryAuth } = await import('../oci/auth.js');
  const cred = i.registryAuth !== undefined ? parseRegistryAuth(i.registryAuth, '--registry-auth') : null;
  return { url: i.url, image_pull_policy: PULL_POLICIES.indexOf(i.pullPolicy), ...(cred ? { username: cred.username, password: cred.password } : {}) };
}

/** --mode, which XDPAttachInfo has no field for, goes as the service's extension. */
export async function remoteAttach(p: Parsed, id: number, o: XdpAttachOptions): Promise<ProgramView> {
  return (await call<ProgramView>('bpfd attach', p, 'Attach', { id, attach: xdpAttachInfo(o) }, {}, o.mode ? { mode: o.mode } : {})).view;
}

export async function remoteUnload(p: Parsed, id: number): Promise<void> {
  await call('bpfd unload', p, 'Unload', { id });
}

export async function remoteDetach(p: Parsed, linkId: number): Promise<void> {
  await call('bpfd detach', p, 'Detach', { link_id: linkId });
}

export async function remoteGet(p: Parsed, id: number): Promise<ProgramView> {
  return (await call<ProgramView>('bpfd get', p, 'Get', { id })).view;
}

export async function remoteList(p: Parsed, filter: { type?: string; iface?: string; metadata: Record<string, string> }, all: boolean): Promise<{ views: ProgramView[]; others: KernelOnlyProgram[] }> {
  const r = await call<{ views: ProgramView[]; others: KernelOnlyProgram[] }>('bpfd list', p, 'List', { bpfman_programs_only: !all, match_metadata: filter.metadata }, { type: filter.type, iface: filter.iface });
  return r.view;
}

/** list --pending: bpfd's view of the programs waiting for restore (bpfman's answer has none). */
export async function remoteListPending(p: Parsed, filter: { type?: string; iface?: string; metadata: Record<string, string> }): Promise<PendingView[]> {
  const r = await call<{ pending: PendingView[] }>('bpfd list', p, 'List', { bpfman_programs_only: true, match_metadata: filter.metadata }, { type: filter.type, iface: filter.iface, pending: true });
  return r.view.pending;
}

/** `bpfd pull` as PullBytecode (Always): --registry-auth travels as BytecodeImage's username and password. */
export async function remotePull(p: Parsed, ref: string, registryAuth: string | undefined): Promise<ImageView> {
  const { parseRegistryAuth } = await import('../oci/auth.js');
  const cred = registryAuth !== undefined ? parseRegistryAuth(registryAuth, '--registry-auth') : null;
  const image = { url: ref, image_pull_policy: 0, ...(cred ? { username: cred.username, password: cred.password } : {}) };
  return (await call<ImageView>('bpfd pull', p, 'PullBytecode', { image })).view;
}
