import path from 'node:path';
import type { Parsed } from './command.js';
import { callService, NoService, noServiceError } from './service-client.js';
import type { XdpAttachOptions } from '../core/attach-options.js';
import type { ImageView } from '../core/images.js';
import type { KernelOnlyProgram } from '../core/kernel-programs.js';
import type { ProgramView } from '../core/view.js';

// load, unload, attach, detach, list and get through the bpfd service instead of in-process:
// for a user without the privileges to act (the policy then judges them as who they are), or
// with --remote. The commands print what they print in-process: the service sends bpfd's views.

async function call<V>(what: string, p: Parsed, method: string, request: Record<string, unknown>, view: Record<string, unknown> = {}): Promise<{ response: Record<string, any>; view: V }> {
  try {
    const r = await callService<V>(method, request, view);
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
  path: string;
  name: string;
  type: string;
  metadata: Record<string, string>;
  globals: Record<string, Buffer>;
  mapOwnerId?: number;
  attach?: XdpAttachOptions;
}

/** Load, then Attach when asked: a failed Attach unloads again, so nothing is left half-done. */
export async function remoteLoad(p: Parsed, req: RemoteLoad): Promise<ProgramView> {
  const loaded = await call<ProgramView[]>('bpfd load', p, 'Load', {
    bytecode: { file: path.resolve(req.path) },
    info: [{ name: req.name, program_type: LOAD_TYPE_NUMBERS[req.type] ?? 0 }],
    metadata: req.metadata,
    global_data: req.globals,
    ...(req.mapOwnerId !== undefined ? { map_owner_id: req.mapOwnerId } : {}),
  });
  const view = loaded.view[0];
  if (!req.attach) return view;
  try {
    return await remoteAttach(p, view.id, req.attach);
  } catch (e) {
    await call('bpfd load', p, 'Unload', { id: view.id }).catch(() => undefined);
    throw e;
  }
}

export async function remoteAttach(p: Parsed, id: number, o: XdpAttachOptions): Promise<ProgramView> {
  return (await call<ProgramView>('bpfd attach', p, 'Attach', { id, attach: xdpAttachInfo(o) })).view;
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

/** `bpfd pull` as PullBytecode (Always): --registry-auth travels as BytecodeImage's username and password. */
export async function remotePull(p: Parsed, ref: string, registryAuth: string | undefined): Promise<ImageView> {
  const { parseRegistryAuth } = await import('../oci/auth.js');
  const cred = registryAuth !== undefined ? parseRegistryAuth(registryAuth, '--registry-auth') : null;
  const image = { url: ref, image_pull_policy: 0, ...(cred ? { username: cred.username, password: cred.password } : {}) };
  return (await call<ImageView>('bpfd pull', p, 'PullBytecode', { image })).view;
}
