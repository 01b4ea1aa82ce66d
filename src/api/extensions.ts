import { BPFD_OPTIONS_HEADER } from '../base/bpfman-proto.js';
import { parseXdpAttach, type XdpAttachOptions } from '../core/attach-options.js';
import { RpcError, Status } from './grpc.js';

// bpfd's extensions of a Load (the BPFD_OPTIONS_HEADER request header): what `bpfd load` can ask
// and bpfman.v1's LoadRequest has no field for. Each goes to the core as the command line's own
// option does, so the policy judges it the same way; a bpfman client sends none of them.

export interface LoadExtensions {
  persist?: boolean;
  application?: string | null;
  dryRun?: boolean;
  /** load and attach in one step, as `bpfd load --iface` does in-process */
  attach?: XdpAttachOptions;
}

const KNOWN = ['persist', 'application', 'dry_run', 'attach'];

export function loadExtensions(o: Record<string, unknown>): LoadExtensions {
  const unknown = Object.keys(o).filter((k) => !KNOWN.includes(k));
  if (unknown.length) throw bad(`${unknown.join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not a Load option (${KNOWN.join(', ')})`);
  const out: LoadExtensions = {};
  if (o.persist !== undefined) out.persist = flag(o.persist, 'persist');
  if (o.dry_run !== undefined) out.dryRun = flag(o.dry_run, 'dry_run');
  if (o.application !== undefined) {
    if (typeof o.application !== 'string' || o.application === '') throw bad('application must be the application name (a non-empty string)');
    out.application = o.application;
  }
  if (o.attach !== undefined) {
    const a = o.attach as Record<string, unknown>;
    if (typeof a !== 'object' || a === null) throw bad('attach must be an object (iface, priority, proceed_on, netns, mode)');
    const str = (k: string) => (a[k] === undefined || a[k] === null ? undefined : String(a[k]));
    out.attach = parseXdpAttach({
      iface: str('iface'),
      priority: a.priority as number | undefined,
      proceedOn: Array.isArray(a.proceed_on) ? a.proceed_on.map(String) : undefined,
      mode: str('mode'),
      netns: str('netns'),
    });
  }
  return out;
}

function flag(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw bad(`${name} must be true or false`);
  return v;
}

const bad = (msg: string) => new RpcError(Status.INVALID_ARGUMENT, `${BPFD_OPTIONS_HEADER}: ${msg}`);
