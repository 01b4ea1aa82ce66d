import { failed, type BpfdError } from '../base/errors.js';
import type { LinkRecord, ProgramRecord } from './records.js';

/**
 * A record as bpfd wrote it, or what is wrong with it: the store is a file root can edit (or a
 * disk can damage), and everything that reads records would otherwise trip over a missing field
 * deep inside a command ("internal error"). Checked once where records are read for reconcile.
 */
type Check = [path: string, ok: (v: unknown) => boolean, want: string];

const isStr = (v: unknown) => typeof v === 'string';
const isInt = (v: unknown) => Number.isSafeInteger(v);
const isBool = (v: unknown) => typeof v === 'boolean';
const isObj = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isStrMap = (v: unknown) => isObj(v) && Object.values(v as object).every(isStr);
const isStrList = (v: unknown) => Array.isArray(v) && v.every(isStr);
const orNull = (f: (v: unknown) => boolean) => (v: unknown) => v === null || f(v);

const PROGRAM: Check[] = [
  ['id', isInt, 'a whole number'],
  ['name', isStr, 'a string'],
  ['type', (v) => ['xdp', 'tc', 'tcx', 'tracepoint', 'uprobe', 'kprobe', 'unspec'].includes(v as string), 'a program type'],
  ['section', isStr, 'a string'],
  ['bytecode', (v) => isObj(v) && ((isStr((v as any).path) && isStr((v as any).sha256)) || (isStr((v as any).image) && isStr((v as any).digest))), 'a file (path, sha256) or an image (image, digest)'],
  ['owner', (v) => isObj(v) && isInt((v as any).uid) && isStr((v as any).username), 'an owner (uid, username)'],
  ['metadata', isStrMap, 'an object of strings'],
  ['maps', (v) => isObj(v) && isStr((v as any).pin_path) && orNull(isInt)((v as any).owner_id), 'maps (pin_path, owner_id)'],
  ['map_names', isStrList, 'a list of strings'],
  ['globals', isStrMap, 'an object of strings'],
  ['application', orNull(isStr), 'a string or null'],
  ['license', isStr, 'a string'],
  ['tag', isStr, 'a string'],
  ['loaded_at', isStr, 'a string'],
  ['persist', isBool, 'true or false'],
  ['boot_id', isStr, 'a string'],
];

const LINK: Check[] = [
  ['id', isInt, 'a whole number'],
  ['prog_id', isInt, 'a whole number'],
  ['kind', (v) => v === 'xdp', '"xdp"'],
  ['iface', isStr, 'a string'],
  ['ifindex', isInt, 'a whole number'],
  ['netns', orNull(isStr), 'a string or null'],
  ['netns_ino', isInt, 'a whole number'],
  ['priority', isInt, 'a whole number'],
  ['proceed_on', isStrList, 'a list of actions'],
  ['mode', (v) => v === 'skb' || v === 'drv', '"skb" or "drv"'],
  ['seq', isInt, 'a whole number'],
];

function problem(rec: unknown, checks: Check[]): string | null {
  if (!isObj(rec)) return `it is ${rec === null ? 'null' : typeof rec}, not a record`;
  const r = rec as Record<string, unknown>;
  for (const [field, ok, want] of checks) if (!ok(r[field])) return `${field} is ${JSON.stringify(r[field]) ?? 'missing'}, not ${want}`;
  return null;
}

export const programRecordProblem = (rec: unknown) => problem(rec, PROGRAM);
export const linkRecordProblem = (rec: unknown) => problem(rec, LINK);

export function damagedRecord(stateDir: string, what: string, id: unknown, why: string): BpfdError {
  return failed(`the store's record of ${what} ${typeof id === 'number' ? id : '(no id)'} in ${stateDir} is damaged or was edited by hand: ${why}`, [
    'bpfd does not guess at records: put back the record from a backup of the store,',
    `or move the store aside (mv ${stateDir} ${stateDir}.damaged): the next bpfd command starts an empty store and removes the programs it finds pinned`,
  ]);
}

export type { LinkRecord, ProgramRecord };
