import { type Context, requireRoot } from './context.js';
import { BpfdError, failed } from '../base/errors.js';
import { attachLocked, loadObject, programIn, removeProgram } from './programs.js';
import { list } from './read.js';
import { checkpoint } from '../base/test-hooks.js';
import { reconcile } from './reconcile.js';
import type { XdpAttachOptions } from './attach-options.js';
import type { ProgramView } from './view.js';
import { parseBpfElf, type BpfElf } from '../loader/elf.js';
import { retargetProgramShares } from '../state/mounts.js';
import { syncAppMounts, warnSyncProblems } from './app-mount-sync.js';
import type { LinkRecord, PendingRestore } from '../state/records.js';

export interface RestoreReport {
  restored: Array<{ key: string; previous_id: number; id: number; name: string; links: ProgramView['links'] }>;
  failed: Array<{ key: string; previous_id: number; name: string; reason: string; details: string[] }>;
}

/**
 * Loads and attaches again the programs persisted in earlier boots (`load --persist`), from the
 * object bytes the store kept, with their name, globals, metadata, application, owner, and each
 * link's interface, netns, priority, proceed-on, mode, id and place in attach order. Each is
 * asked of the policy again, as a load by whoever runs restore (root at boot): the rules in
 * force now decide, not those of the boot it was loaded in. One that fails is undone and stays
 * pending, and the others go on.
 */
export async function restore(ctx: Context): Promise<RestoreReport> {
  requireRoot('bpfd system restore');
  return ctx.exclusive(async () => {
    // moves the persisted records of earlier boots aside, as pending
    const state = reconcile(ctx, true);
    /** pending key -> kernel id of the program restored from it (map owners, restores cut short) */
    const restoredIds = new Map(state.programs.filter((p) => p.restored_from).map((p) => [p.restored_from!, p.id]));
    const failures: RestoreReport['failed'] = [];
    const done: Array<{ pending: PendingRestore; id: number }> = [];
    const all = ctx.store().pendingRestores();
    const waiting = new Set(all.map((p) => p.key));
    for (const pending of inDependencyOrder(all)) {
      const { program } = pending;
      try {
        const ownerKey = program.maps.owner_id === null ? null : `${program.boot_id}/${program.maps.owner_id}`;
        const ownerId = ownerKey === null ? undefined : restoredIds.get(ownerKey);
        // An owner unloaded before the reboot left its maps to its users (bpfman's semantics):
        // the first user restored gets fresh maps, and the other users share them.
        const ownerGone = ownerKey !== null && ownerId === undefined && !waiting.has(ownerKey);
        if (ownerKey !== null && ownerId === undefined && !ownerGone) throw failed(`it shares the maps of program ${program.maps.owner_id}, which was not restored`);
        const id = await restoreOne(ctx, pending, ownerId);
        restoredIds.set(pending.key, id);
        if (ownerGone) restoredIds.set(ownerKey, id);
        done.push({ pending, id });
      } catch (e) {
        const err = e instanceof BpfdError ? e : failed((e as Error).message);
        failures.push({ key: pending.key, previous_id: program.id, name: program.name, reason: err.message, details: err.details });
      }
    }
    // positions once everything is back: a later restore may have gone in front of an earlier one
    const views = new Map((await list(ctx)).map((v) => [v.id, v]));
    const restored = done.map(({ pending, id }) => ({ key: pending.key, previous_id: pending.program.id, id, name: pending.program.name, links: views.get(id)?.links ?? [] }));
    return { restored, failed: failures };
  });
}

/** Map owners before the programs that share their maps; otherwise in the order they were loaded. */
function inDependencyOrder(all: PendingRestore[]): PendingRestore[] {
  const byLoad = [...all].sort((a, b) => a.program.loaded_at.localeCompare(b.program.loaded_at) || a.program.id - b.program.id);
  const out: PendingRestore[] = [];
  const placed = new Set<string>();
  while (out.length < byLoad.length) {
    const next = byLoad.find((p) => !placed.has(p.key) && (p.program.maps.owner_id === null || !byLoad.some((o) => !placed.has(o.key) && o.key === `${p.program.boot_id}/${p.program.maps.owner_id}`)));
    // a cycle cannot be recorded (an owner exists before its users); take the rest as they come
    const take = next ?? byLoad.find((p) => !placed.has(p.key))!;
    placed.add(take.key);
    out.push(take);
  }
  return out;
}

/**
 * Restores one program with all its links. A restore killed half-way left a program whose
 * record names this pending entry: it is completed, not loaded a second time. The pending entry
 * goes only once every link is back.
 */
async function restoreOne(ctx: Context, pending: PendingRestore, mapOwnerId: number | undefined): Promise<number> {
  const { program: rec } = pending;
  const links = [...pending.links].sort((a, b) => a.seq - b.seq);
  let id = reconcile(ctx, false).programs.find((p) => p.restored_from === pending.key)?.id;
  const loadedNow = id === undefined;
  try {
    if (id === undefined) {
      // a program from an image comes back from the image cache: no registry at boot
      const fromImage = 'image' in rec.bytecode ? (await import('./images.js')).restoreSource(ctx, rec.bytecode, rec.name) : null;
      const elf = fromImage?.elf ?? storedObject(ctx, pending);
      const loaded = await loadObject(ctx, reconcile(ctx, false), {
        elf,
        ...(fromImage ? { bytecode: rec.bytecode, image: fromImage.image } : {}),
        name: rec.name,
        program: programIn(elf, rec.name, rec.type, links.length > 0),
        metadata: rec.metadata,
        globals: Object.fromEntries(Object.entries(rec.globals).map(([k, hex]) => [k, Buffer.from(hex, 'hex')])),
        mapOwnerId,
        application: rec.application,
        persist: true,
        owner: rec.owner,
        attach: links[0] && attachOptionsOf(links[0]),
        linkIdentity: links[0] && { id: links[0].id, seq: links[0].seq },
        restoredFrom: pending.key,
      });
      if ('dry_run' in loaded) throw new Error('restore never asks for a dry run');
      id = loaded.id;
      checkpoint('restore:after-load');
    }
    for (const l of links) {
      const state = reconcile(ctx, false);
      if (!state.links.some((x) => x.id === l.id)) await attachLocked(ctx, state, id, attachOptionsOf(l), { id: l.id, seq: l.seq });
    }
  } catch (e) {
    if (id !== undefined && loadedNow) {
      const state = reconcile(ctx, false);
      removeProgram(ctx, state, state.programs.find((p) => p.id === id)!);
    }
    throw e;
  }
  // shares of this program into applications' bpffs follow it to its new id
  retargetProgramShares(ctx.store(), { program: rec.id, boot_id: rec.boot_id }, { program: id, boot_id: ctx.bootId() });
  warnSyncProblems(syncAppMounts(ctx, reconcile(ctx, false).programs));
  ctx.store().removePending(pending.key);
  return id;
}

function storedObject(ctx: Context, { program: rec }: PendingRestore): BpfElf {
  if (!('sha256' in rec.bytecode)) throw failed('it was loaded from an image, which restore cannot load yet');
  const bytes = ctx.store().storedObject(rec.bytecode.sha256);
  if (!bytes) throw failed(`the store has no copy of its object (sha256 ${rec.bytecode.sha256})`, ['load it again from its file with --persist']);
  const elf = parseBpfElf(rec.bytecode.path, bytes);
  if (elf.sha256 !== rec.bytecode.sha256) throw failed(`the stored copy of its object is damaged (sha256 ${elf.sha256}, recorded ${rec.bytecode.sha256})`);
  return elf;
}

const attachOptionsOf = (l: LinkRecord): XdpAttachOptions => ({ iface: l.iface, netns: l.netns, priority: l.priority, proceedOn: l.proceed_on, mode: l.mode });
