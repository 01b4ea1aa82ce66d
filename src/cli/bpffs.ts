import { bpfdCommand, defineCommand, outputOption, parseId, type Parsed } from './command.js';
import { printJson, table, writeOut } from './output.js';
import { ctxFor, lockOption } from './programs.js';
import { invalidInput } from '../base/errors.js';
import type { AppMountView } from '../core/app-bpffs.js';

// bpfd bpffs …: applications' own bpffs mounts, where bpfd shares the maps of the programs it
// loaded with an unprivileged application, governed by the pins' owner and mode.

const core = () => import('../core/app-bpffs.js');

function parseOwner(s: string | undefined): { uid: number; gid: number } {
  const m = s === undefined ? null : /^(\d+)(?::(\d+))?$/.exec(s);
  if (!m) throw invalidInput(`--owner ${s ?? ''}: give the application's numeric UID, or UID:GID (e.g. --owner 1000:1000)`);
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? uid : Number(m[2]);
  if (uid > 0xfffffffe || gid > 0xfffffffe) throw invalidInput(`--owner ${s}: ids go up to 4294967294`);
  return { uid, gid };
}

function parseMode(s: string | undefined, fallback: number, flag: string, noExec: boolean): number {
  if (s === undefined) return fallback;
  if (!/^0?[0-7]{3}$/.test(s)) throw invalidInput(`${flag} ${s}: give permission bits in octal, e.g. ${flag} ${fallback.toString(8).padStart(4, '0')}`);
  const mode = parseInt(s, 8);
  if (noExec && mode & 0o111) throw invalidInput(`${flag} ${s}: a pin has no use for execute bits; give read (4) and write (2) bits, e.g. 0660 or 0440`);
  return mode;
}

function parseMaps(s: unknown): string[] | null {
  if (s === undefined) return null;
  const names = String(s).split(',').map((x) => x.trim()).filter(Boolean);
  if (names.length === 0) throw invalidInput('--maps: give map names separated by commas, e.g. --maps xdp_stats,config');
  return names;
}

const fmtSource = (s: AppMountView['shares'][number]['source']) => ('program' in s ? `program ${s.program}` : `application ${s.application}`);

function mountText(m: AppMountView): string {
  const head = `${m.path}  owner ${m.owner.uid}:${m.owner.gid}  mode ${m.mode}  application ${m.application ?? '-'}${m.mounted ? '' : '  (NOT MOUNTED: see bpfd doctor)'}\n`;
  const shares = m.shares.length
    ? table(['SHARED', 'MAPS', 'MODE'], m.shares.map((s) => [fmtSource(s.source), s.maps === 'all' ? `all${s.except.length ? ` but ${s.except.join(',')}` : ''}` : s.maps.join(','), s.mode]))
    : '  nothing shared yet (bpfd bpffs share PATH --program ID | --application NAME)\n';
  const pins = m.pins.length ? table(['PIN', 'PROGRAM', 'MODE', 'PRESENT'], m.pins.map((p) => [p.path, String(p.program), p.mode, p.present ? 'yes' : 'no'])) : '';
  return head + shares + pins;
}

const print = (p: Parsed, m: AppMountView) => (p.values.output === 'json' ? printJson(m) : writeOut(mountText(m)));

const createCommand = bpfdCommand({
  name: 'bpffs create',
  description:
    "Mount a bpffs at PATH for one application, owned by --owner with --mode, and make it a shared mount (so a bind mount of it into a container sees later pins). " +
    "bpfd records it, and mounts it again after a reboot (bpfd system restore, or any changing command). Refused inside bpfd's own directories and on a directory that is not empty. " +
    'Creating it again with the same options changes nothing',
  positionals: [{ name: 'path', description: 'where to mount it (created if missing)' }],
  options: {
    owner: { type: 'string', description: "the application's UID, or UID:GID (GID defaults to UID) (required)", valueHint: 'UID[:GID]' },
    mode: { type: 'string', description: 'permission bits of the mount root (default 0750: the owner and its group may enter, nobody else)', valueHint: 'MODE' },
    application: { type: 'string', description: 'the application it is for (given to the policy, shown by list)', valueHint: 'NAME' },
    ...lockOption,
    ...outputOption,
  },
  async run(p) {
    const owner = parseOwner(p.values.owner as string | undefined);
    const mode = parseMode(p.values.mode as string | undefined, 0o750, '--mode', false);
    const ctx = await ctxFor(p, `bpfd bpffs create ${p.positionals[0]}`);
    const r = await (await core()).createAppBpffs(ctx, { path: p.positionals[0], ...owner, mode, application: (p.values.application as string | undefined) ?? null });
    if (p.values.output === 'json') printJson(r);
    else writeOut((r.created ? `created ${r.mount.path}\n` : `already created: ${r.mount.path} (nothing changed)\n`) + mountText(r.mount));
  },
});

const shareCommand = bpfdCommand({
  name: 'bpffs share',
  description:
    "Pin maps into an application's bpffs, owned by its owner with --mode: those of one program (--program), or of every program of an application (--application), " +
    'now and whenever another is loaded later. Unloading a program unpins its maps. The policy decides (action share, with the path, owner and mode)',
  positionals: [{ name: 'path', description: 'a bpffs made with bpfd bpffs create' }],
  options: {
    program: { type: 'string', description: 'share the maps of this program', valueHint: 'ID' },
    application: { type: 'string', description: 'share the maps of every program loaded with --application NAME, now and later', valueHint: 'NAME' },
    maps: { type: 'string', description: 'only these maps, by name (default all of them)', valueHint: 'a,b' },
    mode: { type: 'string', description: 'permission bits of each pin: 0660 to read and update (default), 0440 to read only', valueHint: '0660|0440' },
    ...lockOption,
    ...outputOption,
  },
  async run(p) {
    const v = p.values;
    if ((v.program === undefined) === (v.application === undefined)) throw invalidInput('give one of --program ID or --application NAME: whose maps to share');
    if (v.application !== undefined && !String(v.application)) throw invalidInput('--application: give the application name');
    const ctx = await ctxFor(p, `bpfd bpffs share ${p.positionals[0]}`);
    const view = await (await core()).shareIntoAppBpffs(ctx, {
      path: p.positionals[0],
      program: v.program !== undefined ? parseId(v.program as string, '--program') : undefined,
      application: v.application as string | undefined,
      maps: parseMaps(v.maps),
      mode: parseMode(v.mode as string | undefined, 0o660, '--mode', true),
    });
    print(p, view);
  },
});

const unshareCommand = bpfdCommand({
  name: 'bpffs unshare',
  description: 'Unpin maps from an application\'s bpffs: the named ones (--maps), or everything shared there',
  positionals: [{ name: 'path', description: 'a bpffs made with bpfd bpffs create' }],
  options: { maps: { type: 'string', description: 'only these maps, by name', valueHint: 'a,b' }, ...lockOption, ...outputOption },
  async run(p) {
    const ctx = await ctxFor(p, `bpfd bpffs unshare ${p.positionals[0]}`);
    print(p, await (await core()).unshareFromAppBpffs(ctx, { path: p.positionals[0], maps: parseMaps(p.values.maps) }));
  },
});

const listCommand = bpfdCommand({
  name: 'bpffs list',
  description: "Applications' bpffs mounts: owner, mode, what is shared there and the pins it makes",
  options: { ...outputOption },
  async run(p) {
    const ctx = await ctxFor(p, 'bpfd bpffs list');
    const all = await (await core()).listAppBpffs(ctx);
    if (p.values.output === 'json') printJson(all);
    else writeOut(all.length ? all.map(mountText).join('\n') : 'no application bpffs (create one with: bpfd bpffs create PATH --owner UID)\n');
  },
});

const removeCommand = bpfdCommand({
  name: 'bpffs remove',
  description: "Unpin everything in an application's bpffs, unmount it and forget it (the programs stay loaded)",
  positionals: [{ name: 'path', description: 'a bpffs made with bpfd bpffs create' }],
  options: { ...lockOption },
  async run(p) {
    const ctx = await ctxFor(p, `bpfd bpffs remove ${p.positionals[0]}`);
    await (await core()).removeAppBpffs(ctx, p.positionals[0]);
    writeOut(`removed ${p.positionals[0]}\n`);
  },
});

export const bpffsCommand = defineCommand({
  meta: { name: 'bpffs', description: "Applications' own bpffs: share maps of loaded programs with unprivileged applications through file permissions" },
  subCommands: { create: createCommand, share: shareCommand, unshare: unshareCommand, list: listCommand, remove: removeCommand },
});
