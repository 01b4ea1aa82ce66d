import { readFileSync } from 'node:fs';
import path from 'node:path';
import { invalidInput } from '../base/errors.js';
import { parsePriority, parseProceedOn } from '../core/attach-options.js';
import type { DescribedRequest, FieldLabel } from '../core/policy-request.js';
import type { PolicyAction, PolicyExisting } from '../policy/input.js';
import type { ProgramType } from '../state/records.js';

/**
 * The request fields of `bpfd policy eval` and of a `bpfd policy test` case's `request`: one
 * list, one reader, so a case is exactly a command line written down. Flags arrive as strings
 * (repeatable ones as lists); a case may also use numbers, lists and objects, and its paths are
 * relative to the cases file.
 */

export const REQUEST_FIELDS = [
  'input', 'object', 'name', 'type', 'image', 'digest', 'action', 'as', 'groups', 'via', 'owner',
  'iface', 'netns', 'priority', 'proceed-on', 'mode', 'application', 'metadata', 'existing', 'data', 'policy',
] as const;
export type RequestField = (typeof REQUEST_FIELDS)[number];

/** What one command line or case asks: an input given whole, or a request to build it from. */
export interface RequestSpec {
  /** `--input`: the input document, used as it is */
  input?: unknown;
  request?: DescribedRequest;
  data?: string;
  policy?: string;
}

export interface FieldSource {
  /** how to name a field in an error: `--iface` for a flag, `case "x": request.iface` for a case */
  label(field: RequestField): string;
  /** where relative paths start */
  baseDir: string;
}

const POLICY_ACTIONS: readonly PolicyAction[] = ['load', 'attach', 'detach', 'unload', 'pull'];
const PROGRAM_TYPES: readonly ProgramType[] = ['xdp', 'tc', 'tcx', 'tracepoint', 'uprobe', 'kprobe'];

export function readRequest(fields: Record<string, unknown>, src: FieldSource): RequestSpec {
  for (const k of Object.keys(fields)) {
    if (!(REQUEST_FIELDS as readonly string[]).includes(k)) {
      throw invalidInput(`${src.label(k as RequestField)}: unknown field`, [`request fields: ${REQUEST_FIELDS.join(', ')}`]);
    }
  }
  const str = (f: RequestField): string | undefined => {
    const v = fields[f];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    if (typeof v !== 'string' || v === '') throw invalidInput(`${src.label(f)}: give a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  };
  const file = (f: RequestField) => {
    const v = str(f);
    return v === undefined ? undefined : path.resolve(src.baseDir, v);
  };
  const spec: RequestSpec = { data: file('data'), policy: file('policy') };

  if (fields.input !== undefined) {
    const others = Object.keys(fields).filter((k) => fields[k] !== undefined && !['input', 'data', 'policy'].includes(k));
    if (others.length) throw invalidInput(`${src.label('input')} is the whole input: leave out ${others.map((o) => src.label(o as RequestField)).join(', ')}`);
    const v = fields.input;
    spec.input = typeof v === 'object' && v !== null && !Array.isArray(v) ? v : readJson(file('input')!, src.label('input'));
    return spec;
  }

  const action = (str('action') ?? 'load') as PolicyAction;
  if (!POLICY_ACTIONS.includes(action)) {
    // a share's request (mount, owner, mode) has no flags here yet: its input is given whole
    const share = (action as string) === 'share' ? ' (a share: give its whole input with --input; policies/cases/share.json is one)' : '';
    throw invalidInput(`${src.label('action')} ${action}: give one of ${POLICY_ACTIONS.join(', ')}${share}`);
  }
  const type = str('type') as ProgramType | undefined;
  if (type !== undefined && !PROGRAM_TYPES.includes(type)) throw invalidInput(`${src.label('type')} ${type}: give one of ${PROGRAM_TYPES.join(', ')}`);
  const via = str('via');
  if (via !== undefined && !['cli', 'sudo', 'socket', 'tcp'].includes(via)) throw invalidInput(`${src.label('via')} ${via}: give cli, sudo, socket or tcp`);
  const mode = str('mode');
  if (mode !== undefined && mode !== 'skb' && mode !== 'drv') throw invalidInput(`${src.label('mode')} ${mode}: give skb or drv`);

  const iface = str('iface');
  const attachGiven = (['netns', 'priority', 'proceed-on', 'mode'] as const).filter((f) => fields[f] !== undefined);
  if (!iface && attachGiven.length) throw invalidInput(`${src.label('iface')} is required with ${attachGiven.map((f) => src.label(f)).join(', ')}`);
  const attach = iface
    ? {
        iface,
        netns: str('netns') ?? null,
        priority: relabel(src.label('priority'), '--priority', () => parsePriority(priorityValue(fields.priority, src))),
        proceed_on: relabel(src.label('proceed-on'), '--proceed-on', () => parseProceedOn(stringList(fields['proceed-on'], src.label('proceed-on')))),
      }
    : undefined;

  const object = file('object');
  spec.request = {
    action,
    ...(object ? { object } : {}),
    ...(str('name') ? { name: str('name') } : {}),
    ...(type ? { type } : {}),
    ...(str('image') ? { image: str('image') } : {}),
    ...(str('digest') ? { digest: str('digest') } : {}),
    ...(str('as') ? { as: str('as') } : {}),
    ...(fields.groups !== undefined ? { groups: stringList(fields.groups, src.label('groups')) } : {}),
    ...(via ? { via: via as 'cli' | 'sudo' | 'socket' | 'tcp' } : {}),
    ...(str('owner') ? { owner: str('owner') } : {}),
    ...(attach ? { attach } : {}),
    application: str('application') ?? null,
    metadata: metadataOf(fields.metadata, src.label('metadata')),
    ...(fields.existing !== undefined ? { existing: existingOf(fields.existing, src, attach?.iface) } : {}),
  };
  return spec;
}

/** How describedInput names a field in its errors, for this source. */
export const labelFor = (src: FieldSource): FieldLabel => (f) => src.label(f);

function priorityValue(v: unknown, src: FieldSource): string | number | undefined {
  if (v === undefined || typeof v === 'string' || typeof v === 'number') return v;
  throw invalidInput(`${src.label('priority')}: give a whole number from 0 to 1000, got ${JSON.stringify(v)}`);
}

/** The attach-option parsers name their flag; a case names its field instead. */
function relabel<T>(label: string, flag: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (label === flag || !(e instanceof Error)) throw e;
    throw invalidInput(e.message.split(flag).join(label));
  }
}

function stringList(v: unknown, label: string): string[] | undefined {
  if (v === undefined) return undefined;
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => (typeof x === 'string' && x !== '') || typeof x === 'number')) {
    throw invalidInput(`${label}: give a list of names, got ${JSON.stringify(v)}`);
  }
  return list.map(String);
}

function metadataOf(v: unknown, label: string): Record<string, string> {
  if (v === undefined) return {};
  const out: Record<string, string> = {};
  if (Array.isArray(v) || typeof v === 'string') {
    for (const item of Array.isArray(v) ? v : [v]) {
      const eq = typeof item === 'string' ? item.indexOf('=') : -1;
      if (eq <= 0) throw invalidInput(`${label} ${JSON.stringify(item)}: expected KEY=VALUE`);
      out[(item as string).slice(0, eq)] = (item as string).slice(eq + 1);
    }
    return out;
  }
  if (typeof v !== 'object' || v === null) throw invalidInput(`${label}: give KEY=VALUE pairs or an object of strings, got ${JSON.stringify(v)}`);
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw invalidInput(`${label}.${k}: give a string, got ${JSON.stringify(val)}`);
    out[k] = val;
  }
  return out;
}

function readJson(file: string, label: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw invalidInput(`${label} ${file}: cannot read it: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidInput(`${label} ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * The programs already on the interface: a list of `{name, priority, application?, owner?,
 * metadata?}` (owner defaults to root, who loads most programs), or what `bpfd list -o json`
 * printed on a host, of which the programs with a link on the request's interface count, in
 * their order there.
 */
function existingOf(v: unknown, src: FieldSource, iface: string | undefined): PolicyExisting[] {
  const label = src.label('existing');
  const doc = typeof v === 'string' ? readJson(path.resolve(src.baseDir, v), label) : v;
  if (!Array.isArray(doc)) throw invalidInput(`${label}: give a list of programs ({name, priority, application, owner, metadata}), got ${JSON.stringify(doc)?.slice(0, 80)}`);
  const out: Array<PolicyExisting & { position: number }> = [];
  doc.forEach((e, i) => {
    const at = `${label}[${i}]`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw invalidInput(`${at}: give an object {name, priority, …}`);
    const r = e as Record<string, unknown>;
    let priority = r.priority;
    let position = i;
    if (Array.isArray(r.links)) {
      // a `bpfd list -o json` record: its link on this interface, if it has one
      const link = (r.links as Array<Record<string, unknown>>).find((l) => l && l.iface === iface);
      if (!link) return;
      priority = link.priority;
      position = typeof link.position === 'number' ? link.position : i;
    }
    if (typeof r.name !== 'string' || r.name === '') throw invalidInput(`${at}.name: give the program's name`);
    if (typeof priority !== 'number' || !Number.isInteger(priority)) throw invalidInput(`${at}.priority: give a whole number from 0 to 1000`);
    if (r.application !== undefined && r.application !== null && typeof r.application !== 'string') throw invalidInput(`${at}.application: give a string or null`);
    out.push({
      name: r.name,
      priority,
      owner: ownerOf(r.owner, `${at}.owner`),
      application: (r.application as string | null | undefined) ?? null,
      metadata: metadataOf(r.metadata, `${at}.metadata`),
      position,
    });
  });
  return out.sort((a, b) => a.position - b.position).map(({ position: _p, ...e }) => e);
}

function ownerOf(v: unknown, label: string): { uid: number; username: string } {
  if (v === undefined) return { uid: 0, username: 'root' };
  const o = v as { uid?: unknown; username?: unknown };
  if (typeof o !== 'object' || o === null || typeof o.uid !== 'number' || (o.username !== undefined && typeof o.username !== 'string')) {
    throw invalidInput(`${label}: give {uid, username}, got ${JSON.stringify(v)}`);
  }
  return { uid: o.uid, username: (o.username as string | undefined) ?? String(o.uid) };
}
