import type { Context } from './context.js';
import type { BpfElf } from '../loader/elf.js';
import type { MapDescription } from '../loader/object.js';
import { enforce, type Decision } from '../policy/engine.js';
import { authorize } from './authorize.js';
import { groupNames } from '../policy/facts.js';
import { requestFacts } from '../policy/request-facts.js';
import type { PolicyImage, PolicyInput, PolicyProgram, PolicyShare } from '../policy/input.js';
import type { LinkRecord, ProgramRecord } from '../state/records.js';

export type Action = 'load' | 'attach' | 'detach' | 'unload' | 'pull' | 'share';

export interface GateRequest {
  action: Action;
  program?: { record?: ProgramRecord; elf?: BpfElf; maps?: MapDescription[]; name: string; type: string; section: string };
  attach?: { iface: string; netns: string | null; priority: number; proceed_on: string[] };
  existing?: Array<{ link: LinkRecord; program: ProgramRecord | undefined }>;
  application?: string | null;
  metadata?: Record<string, string>;
  /** for a program from an OCI image, and for pull */
  image?: PolicyImage;
  /** the program whose maps a load shares (--map-owner-id) */
  mapOwner?: ProgramRecord;
  share?: PolicyShare;
}

/** Facts about a program already loaded: what was recorded at load, for later decisions. */
function recordFacts(r: ProgramRecord): PolicyProgram {
  return {
    name: r.name,
    type: r.type,
    section: r.section,
    license: r.license,
    ...('path' in r.bytecode ? { sha256: r.bytecode.sha256 } : { image: r.bytecode.image, digest: r.bytecode.digest }),
    insn_count: r.facts?.insn_count ?? 0,
    helpers: r.facts?.helpers ?? [],
    kfuncs: r.facts?.kfuncs ?? [],
    maps: r.facts?.maps ?? [],
  };
}


export function policyInput(ctx: Context, req: GateRequest): PolicyInput {
  const s = ctx.subject;
  const p = req.program;
  const facts = p?.elf ? requestFacts(p.elf, p.name, p.maps ?? []) : p?.record ? recordFacts(p.record) : undefined;
  const img = req.image;
  const program = img && facts ? { ...facts, image: img.reference, digest: img.digest ?? undefined } : img ? { image: img.reference, ...(img.digest ? { digest: img.digest } : {}) } : facts;
  return {
    subject: { uid: s.uid, gid: s.gid, groups: groupNames([s.gid, ...s.groups]), username: s.username, pid: s.pid, via: s.via },
    action: req.action,
    ...(img ? { image: img } : {}),
    ...(program ? { program } : {}),
    ...(req.attach ? { attach: req.attach } : {}),
    ...(req.existing
      ? {
          existing: req.existing.map(({ link, program: ep }) => ({
            name: ep?.name ?? `program ${link.prog_id}`,
            priority: link.priority,
            owner: ep?.owner ?? { uid: -1, username: 'unknown' },
            application: ep?.application ?? null,
            metadata: ep?.metadata ?? {},
          })),
        }
      : {}),
    ...(p?.record ? { owner: p.record.owner } : {}),
    application: req.application ?? null,
    metadata: req.metadata ?? {},
    ...(req.mapOwner ? { map_owner: mapOwnerFacts(req.mapOwner) } : {}),
    ...(req.share ? { share: req.share } : {}),
  };
}

function mapOwnerFacts(r: ProgramRecord): NonNullable<PolicyInput['map_owner']> {
  return { id: r.id, name: r.name, owner: r.owner, application: r.application, maps: r.map_names };
}

/**
 * Asks the policy before any mutating step and logs the decision; a deny (or any failure to
 * decide) throws the `denied` error with the policy's reasons. Returns the facts the policy saw,
 * so the load can keep them for later decisions about the same program.
 */
export async function gate(ctx: Context, req: GateRequest): Promise<{ decision: Decision; input: PolicyInput }> {
  const input = policyInput(ctx, req);
  const decision = await authorize(input, { paths: ctx.paths, store: ctx.store() });
  enforce(decision);
  return { decision, input };
}
