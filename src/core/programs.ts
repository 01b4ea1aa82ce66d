import { rmSync } from 'node:fs';
import path from 'node:path';
import { type Context, requireRoot } from './context.js';
import type { XdpAttachOptions } from './attach-options.js';
import { failed, notFound, invalidInput } from '../base/errors.js';
import { limitReached } from '../base/errors.js';
import { useNativeSha256 } from '../base/sha256.js';
import { checkpoint } from '../base/test-hooks.js';
import { timed, timedSync } from '../base/timings.js';
import { reconcile, type Reconciled } from './reconcile.js';
import type { ProgramView } from './view.js';
import { viewOf } from './program-view.js';
import { applyXdpMembers, ifaceKeyString, keyOfLink, orderLinks, type IfaceKey } from './xdp-interface.js';
import { encodeImage, extractImage, type RelocatableImage } from '../dispatcher/image.js';
import { ensureBpffs } from '../loader/bpffs.js';
import { programTypeOfSection, readBpfElf, type BpfElf } from '../loader/elf.js';
import { inNetns, currentNetnsIno, ifindexOf, netnsIno } from '../loader/netns.js';
import { loadProgramObject, mapsDirPath, progPinPath } from '../loader/object.js';
import { opensslSha256 } from '../loader/lib.js';
import type { LinkRecord, ProgramRecord, ProgramType, XdpLinkRecord } from '../state/records.js';

export const MAX_XDP_PER_INTERFACE = 10;

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

/** What `load --dry-run` answers: the policy's decision and the order the interface would run. */
export interface DryRunResult {
  dry_run: true;
  allow: boolean;
  reasons: string[];
  order: Array<{ position: number; id: number | null; name: string; priority: number; application: string | null; new: boolean }>;
}

const nowIso = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Loads a program from an object file and, with attach options, attaches it in the same step. */
export async function loadFile(ctx: Context, req: LoadFileRequest): Promise<ProgramView | DryRunResult> {
  requireRoot('bpfd load');
  const elf = timedSync('read object', () => readBpfElf(path.resolve(req.path)));
  const program = programIn(elf, req.name, req.type, req.attach !== undefined);
  return ctx.exclusive(async () => loadObject(ctx, timedSync('recovery check', () => reconcile(ctx, true)), { ...req, elf, program }));
}

/** The named function of the object and its type, or an invalid-input error saying what is there. */
export function programIn(elf: BpfElf, name: string, type: ProgramType | undefined, attaching: boolean): { section: string; type: ProgramType } {
  const fn = elf.programs.find((p) => p.name === name);
  if (!fn) {
    const names = elf.programs.map((p) => `${p.name} (section ${p.section})`).join(', ') || 'none';
    throw invalidInput(`function ${name} is not a program in ${elf.path}`, [`programs in the object: ${names}`]);
  }
  const t = type ?? programTypeOfSection(fn.section);
  if (t === 'unspec') throw invalidInput(`cannot tell the program type of section '${fn.section}'; pass --type`);
  if (attaching && t !== 'xdp') throw invalidInput(`--iface attaches XDP programs; ${name} is a ${t} program`);
  return { section: fn.section, type: t };
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

/** The body of a load, under the writer lock with `state` reconciled. */
export async function loadObject(ctx: Context, state: Reconciled, req: LoadObjectRequest): Promise<ProgramView | DryRunResult> {
  const { elf, program: { section, type } } = req;
  const store = ctx.store();
  let shareMapsFrom: string | undefined;
  if (req.mapOwnerId !== undefined) {
    const owner = state.programs.find((p) => p.id === req.mapOwnerId);
    if (!owner) throw invalidInput(`--map-owner-id ${req.mapOwnerId}: no program with that id is loaded by bpfd`);
    if (req.persist && !owner.persist) {
      throw invalidInput(`--persist with --map-owner-id ${req.mapOwnerId}: program ${req.mapOwnerId} is not persisted, so after a reboot there would be no maps to share`, [
        `load program ${req.mapOwnerId} with --persist too, or leave out --persist`,
      ]);
    }
    shareMapsFrom = owner.maps.pin_path;
  }
  const target = req.attach ? resolveInterface(req.attach) : null;
  const existing = target ? state.links.filter((l) => ifaceKeyString(l) === ifaceKeyString(target)) : [];
  if (target && existing.length >= MAX_XDP_PER_INTERFACE) throw tooMany(target.iface, existing);
  const { input, decision } = await gate(ctx, {
    action: 'load',
    program: { elf, name: req.name, type, section },
    attach: req.attach ? { iface: req.attach.iface, netns: req.attach.netns, priority: req.attach.priority, proceed_on: req.attach.proceedOn } : undefined,
    existing: existing.map((link) => ({ link, program: state.programs.find((p) => p.id === link.prog_id) })),
    application: req.application ?? null,
    metadata: req.metadata,
    image: req.image,
  });

  if (req.dryRun) {
    const pending = { id: 0, priority: req.attach?.priority ?? 0, seq: Number.MAX_SAFE_INTEGER };
    const order = orderLinks<{ id: number; priority: number; seq: number }>([...existing, pending]).map((l, position) => {
      const p = l === pending ? null : state.programs.find((x) => x.id === (l as LinkRecord).prog_id);
      return l === pending
        ? { position, id: null, name: req.name, priority: l.priority, application: req.application ?? null, new: true }
        : { position, id: p?.id ?? null, name: p?.name ?? '?', priority: l.priority, application: p?.application ?? null, new: false };
    });
    return { dry_run: true as const, allow: decision.allow, reasons: decision.reasons, order: req.attach ? order : [] };
  }
  ensureBpffs(ctx.paths.bpffs);
  checkpoint('load:before-kernel');
  let added: XdpLinkRecord | null = null;
  const record = timedSync('kernel load and attach', () => loadProgramObject(
    { elf, name: req.name, bpffs: ctx.paths.bpffs, globals: req.globals, shareMapsFrom },
    (loaded) => {
      const rec: ProgramRecord = {
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
      checkpoint('load:after-pin');
      let image: RelocatableImage | null = null;
      if (type === 'xdp') {
        try {
          image = extractImage(loaded.insns, loaded.mapFds, { license: elf.license, frags: section.startsWith('xdp.frags') });
        } catch (e) {
          // Loading alone is still useful (maps, test runs); attaching needs the image.
          if (target) throw e;
        }
      }
      let link: XdpLinkRecord | null = null;
      if (target && req.attach) {
        link = newLink(ctx, rec.id, target, req.attach, req.linkIdentity);
        const added = link;
        timedSync('attach', () => attachMembers(ctx, target, [...existing, added], req.attach!.mode, existing, new Map([[rec.id, image!]])));
        checkpoint('load:after-attach');
      }
      try {
        timedSync('store commit', () => store.commitLoad({ program: rec, image: image && encodeImage(image), object: rec.persist ? elf.bytes : null, link }));
      } catch (e) {
        if (target) attachMembers(ctx, target, existing, req.attach?.mode, [...existing, link!]);
        throw e;
      }
      added = link;
      return rec;
    },
  ));
  // The state after this load is the reconciled one plus what it just committed: no second look.
  const after = { programs: [...state.programs, record], links: added ? [...state.links, added] : state.links };
  return timedSync('answer', () => viewOf(ctx, record.id, after));
}

/** Attaches an already loaded program to (another) interface. */
export async function attach(ctx: Context, id: number, opts: XdpAttachOptions): Promise<ProgramView> {
  requireRoot('bpfd attach');
  return ctx.exclusive(async () => attachLocked(ctx, reconcile(ctx, true), id, opts));
}

/** The body of an attach, under the writer lock with `state` reconciled. */
export async function attachLocked(ctx: Context, state: Reconciled, id: number, opts: XdpAttachOptions, identity?: LinkIdentity): Promise<ProgramView> {
  const prog = state.programs.find((p) => p.id === id);
  if (!prog) throw notFound(`no program with id ${id} is loaded by bpfd (see: bpfd list)`);
  if (prog.type !== 'xdp') throw invalidInput(`program ${id} is a ${prog.type} program; only XDP programs attach to interfaces here`);
  const target = resolveInterface(opts);
  const existing = state.links.filter((l) => ifaceKeyString(l) === ifaceKeyString(target));
  if (existing.some((l) => l.prog_id === id)) throw invalidInput(`program ${id} is already attached to ${opts.iface}`);
  if (existing.length >= MAX_XDP_PER_INTERFACE) throw tooMany(target.iface, existing);
  await gate(ctx, {
    action: 'attach',
    program: { record: prog, name: prog.name, type: prog.type, section: prog.section },
    attach: { iface: opts.iface, netns: opts.netns, priority: opts.priority, proceed_on: opts.proceedOn },
    existing: existing.map((link) => ({ link, program: state.programs.find((p) => p.id === link.prog_id) })),
    application: prog.application,
    metadata: prog.metadata,
  });
  ensureBpffs(ctx.paths.bpffs);
  const store = ctx.store();
  const link = newLink(ctx, id, target, opts, identity);
  attachMembers(ctx, target, [...existing, link], opts.mode, existing);
  checkpoint('attach:after-kernel');
  try {
    await store.addLink(link);
  } catch (e) {
    attachMembers(ctx, target, existing, opts.mode, [...existing, link]);
    throw e;
  }
  return viewOf(ctx, id, { programs: state.programs, links: [...state.links, link] });
}

/** Removes one link; the program stays loaded. */
export async function detach(ctx: Context, linkId: number): Promise<void> {
  requireRoot('bpfd detach');
  await ctx.exclusive(async () => {
    const state = reconcile(ctx, true);
    const link = state.links.find((l) => l.id === linkId);
    if (!link) throw notFound(`no link with id ${linkId} (see the links of: bpfd list)`);
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
    const prog = state.programs.find((p) => p.id === id);
    if (!prog) throw notFound(`no program with id ${id} is loaded by bpfd (see: bpfd list)`);
    const users = state.programs.filter((p) => p.maps.owner_id === id);
    if (users.length) {
      throw failed(`program ${id} owns maps that programs ${users.map((u) => u.id).join(', ')} share`, ['unload those first']);
    }
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
  if (prog.maps.owner_id === null) rmSync(mapsDirPath(ctx.paths.bpffs, id), { recursive: true, force: true });
}

function resolveInterface(opts: XdpAttachOptions): IfaceKey {
  const ino = opts.netns ? netnsIno(opts.netns) : currentNetnsIno();
  const ifindex = inNetns(opts.netns, () => ifindexOf(opts.iface, opts.netns));
  return { iface: opts.iface, ifindex, netnsIno: ino, netns: opts.netns };
}

/** A link's id and its place in attach order (ties in priority keep attach order). */
export interface LinkIdentity {
  id: number;
  seq: number;
}

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
function attachMembers(ctx: Context, target: IfaceKey, members: LinkRecord[], mode: 'skb' | 'drv' | undefined, previous: LinkRecord[], fresh?: Map<number, RelocatableImage>): void {
  const ifaceMode = previous[0]?.mode;
  if (mode && ifaceMode && mode !== ifaceMode) {
    throw invalidInput(`${target.iface} runs its XDP programs in ${ifaceMode} mode; --mode ${mode} cannot be mixed in`, [
      `attach with --mode ${ifaceMode}, or without --mode`,
    ]);
  }
  const actual = applyXdpMembers(ctx, target, orderLinks(members), mode ?? ifaceMode, fresh);
  for (const m of members) m.mode = actual;
}

function removeLinks(ctx: Context, all: LinkRecord[], gone: LinkRecord[]): void {
  const store = ctx.store();
  const goneIds = new Set(gone.map((l) => l.id));
  const ifaces = new Map<string, LinkRecord>();
  for (const l of gone) ifaces.set(ifaceKeyString(l), l);
  for (const [key, l] of ifaces) {
    const survivors = all.filter((x) => ifaceKeyString(x) === key && !goneIds.has(x.id));
    applyXdpMembers(ctx, keyOfLink(l), orderLinks(survivors), l.mode);
  }
  checkpoint('detach:after-kernel');
  store.removeLinks(goneIds);
}

function tooMany(iface: string, existing: LinkRecord[]) {
  return limitReached(`interface ${iface} already has ${existing.length} XDP programs, the maximum`, [
    `programs there: ${orderLinks(existing).map((l) => `${l.prog_id} (priority ${l.priority})`).join(', ')}`,
    'unload or detach one first',
  ]);
}
