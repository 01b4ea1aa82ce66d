import { checkPolicyFiles, isDelegated } from './caller.js';
import type { Context, Subject } from './context.js';
import type { BpfElf } from '../loader/elf.js';
import type { MapDescription } from '../loader/object.js';
import { enforce, type Decision } from '../policy/engine.js';
import { authorize } from './authorize.js';
import { groupNames } from '../base/accounts.js';
import { requestFacts } from '../policy/request-facts.js';
import type { PolicyExisting, PolicyImage, PolicyInput, PolicyProgram, PolicyShare, PolicySubject } from '../policy/input.js';
import type { LinkRecord, ProgramRecord } from '../state/records.js';
import type { LinkIdentity } from '../state/store.js';

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
  /** `policy eval --existing`: the programs already there, given as facts rather than records */
  existingFacts?: PolicyExisting[];
  /** `policy eval --owner`: who loaded the program acted on, when there is no record of it */
  owner?: { uid: number; username: string };
  share?: PolicyShare;
  /** a change that adds a link: reserve its identity with the decision (one commit) */
  reserveLink?: { keep?: LinkIdentity };
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
  return policyInputFor(subjectFacts(ctx.subject), req);
}

/** The subject as the policy sees it: group names, the primary group first. */
export function subjectFacts(s: Subject): PolicySubject {
  return { uid: s.uid, gid: s.gid, groups: groupNames([s.gid, ...s.groups]), username: s.username, pid: s.pid, via: s.via };
}

/** A program already on the interface, as the policy sees it. */
export function existingFacts(link: LinkRecord, program: ProgramRecord | undefined): PolicyExisting {
  return {
    name: program?.name ?? `program ${link.prog_id}`,
    priority: link.priority,
    owner: program?.owner ?? { uid: -1, username: 'unknown' },
    application: program?.application ?? null,
    metadata: program?.metadata ?? {},
  };
}

/**
 * The one way a request becomes policy input: real requests (gate) and `bpfd policy eval|test`
 * (policy-request.ts, which gives the facts it cannot take from a store) both come here.
 */
export function policyInputFor(subject: PolicySubject, req: GateRequest): PolicyInput {
  const p = req.program;
  const facts = p?.elf ? requestFacts(p.elf, p.name, p.maps ?? []) : p?.record ? recordFacts(p.record) : undefined;
  const img = req.image;
  const program = img && facts ? { ...facts, image: img.reference, digest: img.digest ?? undefined } : img ? { image: img.reference, ...(img.digest ? { digest: img.digest } : {}) } : facts;
  const existing = req.existingFacts ?? req.existing?.map(({ link, program: ep }) => existingFacts(link, ep));
  const owner = p?.record ? p.record.owner : req.owner;
  return {
    subject,
    action: req.action,
    ...(img ? { image: img } : {}),
    ...(program ? { program } : {}),
    ...(req.attach ? { attach: req.attach } : {}),
    ...(existing ? { existing } : {}),
    ...(owner ? { owner } : {}),
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
export async function gate(ctx: Context, req: GateRequest): Promise<{ decision: Decision; input: PolicyInput; linkIdentity?: LinkIdentity }> {
  // a caller judged by rules someone else chose must not be able to rewrite them
  if (isDelegated(ctx.subject)) checkPolicyFiles(ctx.paths);
  const input = policyInput(ctx, req);
  const { linkIdentity, ...decision } = await authorize(input, { paths: ctx.paths, store: ctx.store(), reserveLink: req.reserveLink });
  enforce(decision);
  return { decision, input, linkIdentity };
}
