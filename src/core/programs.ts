import { rmSync } from 'node:fs';
import path from 'node:path';
import { notFound } from '../base/errors.js';
import { type Context, requireRoot } from './context.js';
import type { XdpAttachOptions } from './attach-options.js';
import { useNativeSha256 } from '../base/sha256.js';
import { checkpoint } from '../base/test-hooks.js';
import { mark, timed, timedSync } from '../base/timings.js';
import { attachableProgram, dryRunOrder, planAttach, planLoad, planRemoveLinks, planUnload, programIn, type DryRunResult, type JoinPlan } from './plan.js';
import { reconcile, type Reconciled } from './reconcile.js';
import { runSteps } from './steps.js';
import type { ProgramView } from './view.js';
import { viewOf } from './program-view.js';
import { applyXdpMembers, orderLinks, type IfaceKey } from './dispatcher-members.js';
import { encodeImage, extractImage, type RelocatableImage } from '../dispatcher/image.js';
import { ensureBpffs } from '../loader/bpffs.js';
import { readBpfElf, type BpfElf } from '../loader/elf.js';
import { opensslSha256 } from '../loader/lib.js';
import { inNetns, currentNetnsIno, ifindexOf, netnsIno } from '../loader/netns.js';
import { openBpfObject, progPinPath, type LoadedProgram } from '../loader/object.js';
import { syncAppMounts, warnSyncProblems } from './app-mount-sync.js';
import type { PolicyInput } from '../policy/input.js';
import type { LinkRecord, ProgramRecord, ProgramType, XdpLinkRecord } from '../state/records.js';
import type { LinkIdentity } from '../state/store.js';
import { checkMapSizes } from './map-limits.js';
import { checkMetadata } from './request-checks.js';

export { programIn, type DryRunResult };

// Changes have koffi loaded anyway (this module needs the loader): hash objects and policy inputs
// through OpenSSL rather than loading node:crypto for them.
if (opensslSha256) useNativeSha256(opensslSha256);

// The policy engine (with opa-wasm and node:crypto) loads only for changes, never for list/get.
// Timed whole, loading included: that is the policy's share of a command (BPFD_TIMINGS).
const gate: typeof import('./policy-gate.js').gate = (...args) =>
  timed('policy', async () => (await timed('policy import', () => import('./policy-gate.js'))).gate(...args));

export interface LoadFileRequest {
  path: string;
  name: string;
  type?: ProgramType;
  metadata: Record<string, string>;
  globals: Record<string, Buffer>;
  mapOwnerId?: number;
  application?: string | null;
  persist?: boolean;
  attach?: XdpAttachOptions;
  /** decide and plan only: nothing is loaded or attached */
  dryRun?: boolean;
}

const nowIso = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Loads a program from an object file and, with attach options, attaches it in the same step. */
export async function loadFile(ctx: Context, req: LoadFileRequest): Promise<ProgramView | DryRunResult> {
  requireRoot('bpfd load');
  mark('load');
  checkMetadata(req.metadata);
  const elf = timedSync('read object', () => readBpfElf(path.resolve(req.path)));
  const program = programIn(elf, req.name, req.type, req.attach !== undefined);
  mark('object read');
  return ctx.exclusive(async () => {
    mark('locked');
    return loadObject(ctx, timedSync('recovery check', () => reconcile(ctx, true)), { ...req, elf, program });
  });
}

export interface LoadObjectRequest extends Omit<LoadFileRequest, 'path' | 'type'> {
  elf: BpfElf;
  program: { section: string; type: ProgramType };
  /** restore keeps the original owner; a load records who asked */
  owner?: ProgramRecord['owner'];
  /** restore keeps the link's id and place in attach order */
  linkIdentity?: LinkIdentity;
  /** the PendingRestore key a restore loads it from (ProgramRecord.restored_from) */
  restoredFrom?: string;
  /** where the bytes came from, when not a file (load image: the image and its digest) */
  bytecode?: ProgramRecord['bytecode'];
  /** image facts for the policy, for a program from an OCI image */
  image?: import('../policy/input.js').PolicyImage;
}

/**
 * The body of a load, under the writer lock with `state` reconciled: plan, ask the policy, then
 * load, attach and record as steps with undo. libbpf opens the object once, for the policy's map
 * facts and for the load.
 */
export async function loadObject(ctx: Context, state: Reconciled, req: LoadObjectRequest): Promise<ProgramView | DryRunResult> {
  const { elf, program: { section, type } } = req;
  mark('reconciled');
  const target = req.attach ? resolveInterface(req.attach) : null;
  mark('interface');
  const plan = planLoad(state, req, target);
  const join = plan.join;
  const obj = openBpfObject(elf);
  mark('object opened');
  try {
    const { input, decision, linkIdentity } = await gate(ctx, {
      action: 'load',
      reserveLink: join && req.attach && !req.dryRun ? { keep: req.linkIdentity } : undefined,
      program: { elf, maps: obj.maps(), name: req.name, type, section },
      attach: req.attach ? { iface: req.attach.iface, netns: req.attach.netns, priority: req.attach.priority, proceed_on: req.attach.proceedOn } : undefined,
      existing: (join?.existing ?? []).map((link) => ({ link, program: state.programs.find((p) => p.id === link.prog_id) })),
      application: req.application ?? null,
      metadata: req.metadata,
      image: req.image,
      mapOwner: req.mapOwnerId === undefined ? undefined : state.programs.find((p) => p.id === req.mapOwnerId),
    });
    mark('decided');
    checkMapSizes(input.program?.maps ?? [], elf.path);
    if (req.dryRun) {
      const order = dryRunOrder(state, join, { name: req.name, priority: req.attach?.priority ?? 0, application: req.application });
      return { dry_run: true as const, allow: decision.allow, reasons: decision.reasons, order };
    }
    ensureBpffs(ctx.paths.bpffs);
    checkpoint('load:before-kernel');
    let loaded: LoadedProgram | undefined;
    let record: ProgramRecord | undefined;
    let image: RelocatableImage | null = null;
    let link: XdpLinkRecord | null = null;
    timedSync('kernel load and attach', () => runSteps([
      {
        name: `load ${req.name} into the kernel`,
        run: () => {
          loaded = obj.load({ name: req.name, bpffs: ctx.paths.bpffs, globals: req.globals, shareMapsFrom: plan.shareMapsFrom });
          record = programRecord(ctx, req, loaded, input);
          checkpoint('load:after-pin');
          image = type === 'xdp' ? memberImage(loaded, req, join !== null) : null;
        },
        undo: () => loaded?.discard(),
      },
      ...(join && req.attach
        ? [{
            name: `attach ${req.name} to ${join.target.iface}`,
            run: () => {
              link = newLink(ctx, record!.id, join.target, req.attach!, linkIdentity ?? req.linkIdentity);
              timedSync('attach', () => attachMembers(ctx, join, [...join.existing, link!], new Map([[record!.id, image!]])));
              checkpoint('load:after-attach');
            },
            undo: () => attachMembers(ctx, join, join.existing),
          }]
        : []),
      {
        name: 'record the program in the store',
        run: () => timedSync('store commit', () => ctx.store().commitLoad({ program: record!, image: image && encodeImage(image), object: record!.persist ? elf.bytes : null, link })),
      },
    ]));
    mark('committed');
    // The state after this load is the reconciled one plus what it just committed: no second look.
    const after = { programs: [...state.programs, record!], links: link ? [...state.links, link] : state.links };
    // an application's bpffs that shares this program's application gets its maps now
    timedSync('application bpffs', () => warnSyncProblems(syncAppMounts(ctx, after.programs)));
    return timedSync('answer', () => viewOf(ctx, record!.id, after));
  } finally {
    obj.close();
  }
}

function programRecord(ctx: Context, req: LoadObjectRequest, loaded: LoadedProgram, input: PolicyInput): ProgramRecord {
  const { elf, program: { section, type } } = req;
  return {
    id: loaded.info.id,
    name: req.name,
    type,
    section,
    bytecode: req.bytecode ?? { path: elf.path, sha256: elf.sha256 },
    owner: req.owner ?? { uid: ctx.subject.uid, username: ctx.subject.username },
    metadata: req.metadata,
    maps: { pin_path: loaded.mapsDir, owner_id: req.mapOwnerId ?? null },
    map_names: loaded.mapNames,
    globals: Object.fromEntries(Object.entries(req.globals).map(([k, v]) => [k, v.toString('hex')])),
    application: req.application ?? null,
    license: elf.license,
    tag: loaded.info.tag,
    loaded_at: nowIso(),
    persist: req.persist ?? false,
    boot_id: ctx.bootId(),
    ...(req.restoredFrom ? { restored_from: req.restoredFrom } : {}),
    facts: input.program && 'insn_count' in input.program
      ? { insn_count: input.program.insn_count ?? 0, helpers: input.program.helpers ?? [], kfuncs: input.program.kfuncs ?? [], maps: input.program.maps ?? [] }
      : undefined,
  };
}

/** The relocatable image the dispatcher composes from; loading alone is useful without one (maps, test runs). */
function memberImage(loaded: LoadedProgram, req: LoadObjectRequest, attaching: boolean): RelocatableImage | null {
  try {
    return extractImage(loaded.insns, loaded.mapFds, { license: req.elf.license, frags: req.program.section.startsWith('xdp.frags') });
  } catch (e) {
    if (attaching) throw e;
    return null;
  }
}

/** Attaches an already loaded program to (another) interface. */
export async function attach(ctx: Context, id: number, opts: XdpAttachOptions): Promise<ProgramView> {
  requireRoot('bpfd attach');
  return ctx.exclusive(async () => attachLocked(ctx, reconcile(ctx, true), id, opts));
}

/** The body of an attach, under the writer lock with `state` reconciled. */
export async function attachLocked(ctx: Context, state: Reconciled, id: number, opts: XdpAttachOptions, identity?: LinkIdentity): Promise<ProgramView> {
  const prog = attachableProgram(state, id);
  const join = planAttach(state, prog, resolveInterface(opts), opts.mode);
  const { linkIdentity } = await gate(ctx, {
    action: 'attach',
    reserveLink: { keep: identity },
    program: { record: prog, name: prog.name, type: prog.type, section: prog.section },
    attach: { iface: opts.iface, netns: opts.netns, priority: opts.priority, proceed_on: opts.proceedOn },
    existing: join.existing.map((link) => ({ link, program: state.programs.find((p) => p.id === link.prog_id) })),
    application: prog.application,
    metadata: prog.metadata,
  });
  ensureBpffs(ctx.paths.bpffs);
  const link = newLink(ctx, id, join.target, opts, linkIdentity ?? identity);
  runSteps([
    {
      name: `attach program ${id} to ${join.target.iface}`,
      run: () => {
        attachMembers(ctx, join, [...join.existing, link]);
        checkpoint('attach:after-kernel');
      },
      undo: () => attachMembers(ctx, join, join.existing),
    },
    { name: 'record the link in the store', run: () => ctx.store().addLink(link) },
  ]);
  return viewOf(ctx, id, { programs: state.programs, links: [...state.links, link] });
}

/** Removes one link; the program stays loaded. */
export async function detach(ctx: Context, linkId: number): Promise<void> {
  requireRoot('bpfd detach');
  await ctx.exclusive(async () => {
    const state = reconcile(ctx, true);
    const link = state.links.find((l) => l.id === linkId);
    if (!link) throw notFoundLink(linkId);
    const prog = state.programs.find((p) => p.id === link.prog_id);
    await gate(ctx, {
      action: 'detach',
      program: prog && { record: prog, name: prog.name, type: prog.type, section: prog.section },
      attach: { iface: link.iface, netns: link.netns, priority: link.priority, proceed_on: link.proceed_on },
      application: prog?.application ?? null,
      metadata: prog?.metadata ?? {},
    });
    removeLinks(ctx, state.links, [link]);
    checkpoint('detach:done');
  });
}

/** Detaches every link of the program, then unloads it. */
export async function unload(ctx: Context, id: number): Promise<void> {
  requireRoot('bpfd unload');
  await ctx.exclusive(async () => {
    const state = reconcile(ctx, true);
    const prog = planUnload(state, id);
    await gate(ctx, {
      action: 'unload',
      program: { record: prog, name: prog.name, type: prog.type, section: prog.section },
      application: prog.application,
      metadata: prog.metadata,
    });
    removeProgram(ctx, state, prog);
  });
}

/** Detaches, forgets and unpins a program; no policy question (undo uses it too). */
export function removeProgram(ctx: Context, state: Reconciled, prog: ProgramRecord): void {
  const store = ctx.store();
  const id = prog.id;
  removeLinks(ctx, state.links, state.links.filter((l) => l.prog_id === id));
  checkpoint('unload:after-detach');
  store.removeProgram(prog);
  checkpoint('unload:after-store');
  rmSync(progPinPath(ctx.paths.bpffs, id), { force: true });
  // As in bpfman, shared maps live while any program that uses them remains: the owner's unload
  // leaves them to its users, and the last one out unpins them.
  const others = state.programs.filter((p) => p.id !== id);
  if (!others.some((p) => p.maps.pin_path === prog.maps.pin_path)) rmSync(prog.maps.pin_path, { recursive: true, force: true });
  warnSyncProblems(syncAppMounts(ctx, others));
}

function resolveInterface(opts: XdpAttachOptions): IfaceKey {
  const ino = opts.netns ? netnsIno(opts.netns) : currentNetnsIno();
  const ifindex = inNetns(opts.netns, () => ifindexOf(opts.iface, opts.netns));
  return { iface: opts.iface, ifindex, netnsIno: ino, netns: opts.netns };
}

export type { LinkIdentity } from '../state/store.js';

function newLink(ctx: Context, progId: number, target: IfaceKey, opts: XdpAttachOptions, identity?: LinkIdentity): XdpLinkRecord {
  const { id, seq } = ctx.store().linkIdentity(identity);
  return {
    id,
    prog_id: progId,
    kind: 'xdp',
    iface: target.iface,
    ifindex: target.ifindex,
    netns: target.netns,
    netns_ino: target.netnsIno,
    priority: opts.priority,
    proceed_on: opts.proceedOn,
    mode: opts.mode ?? 'drv',
    seq,
    created_at: nowIso(),
  };
}

/**
 * Applies a new membership to an interface. The dispatcher swaps atomically and leaves the old
 * revision running when it fails, so a failure here changes nothing in the kernel.
 */
function attachMembers(ctx: Context, join: JoinPlan, members: LinkRecord[], fresh?: Map<number, RelocatableImage>): void {
  const actual = applyXdpMembers(ctx, join.target, orderLinks(members), join.mode, fresh);
  for (const m of members) m.mode = actual;
}

function removeLinks(ctx: Context, all: LinkRecord[], gone: LinkRecord[]): void {
  for (const { target, survivors, mode } of planRemoveLinks(all, gone)) applyXdpMembers(ctx, target, survivors, mode);
  checkpoint('detach:after-kernel');
  ctx.store().removeLinks(gone.map((l) => l.id));
}

const notFoundLink = (linkId: number) => notFound(`no link with id ${linkId} (see the links of: bpfd list)`);
