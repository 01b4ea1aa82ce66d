import { usageError } from './errors.js';
import type { XdpAction } from '../state/records.js';

export const XDP_ACTIONS: Record<XdpAction, number> = {
  aborted: 0,
  drop: 1,
  pass: 2,
  tx: 3,
  redirect: 4,
  dispatcher_return: 31,
};
export const DEFAULT_PROCEED_ON: XdpAction[] = ['pass', 'dispatcher_return'];
export const DEFAULT_PRIORITY = 50;

export interface XdpAttachOptions {
  iface: string;
  priority: number;
  proceedOn: XdpAction[];
  mode: 'skb' | 'drv' | undefined;
  netns: string | null;
}

/** Validates attach options before anything touches the kernel, so bad input costs nothing. */
export function parseXdpAttach(o: { iface?: string; priority?: string | number; proceedOn?: string | string[]; mode?: string; netns?: string }): XdpAttachOptions {
  if (!o.iface) throw usageError('--iface is required to attach an XDP program');
  return {
    iface: o.iface,
    priority: parsePriority(o.priority),
    proceedOn: parseProceedOn(o.proceedOn),
    mode: parseMode(o.mode),
    netns: o.netns ?? null,
  };
}

export function parsePriority(p: string | number | undefined): number {
  if (p === undefined || p === '') return DEFAULT_PRIORITY;
  const n = typeof p === 'number' ? p : /^-?\d+$/.test(p.trim()) ? Number(p) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 1000) {
    throw usageError(`--priority ${p} is out of range: give a whole number from 0 to 1000 (lower runs first, default ${DEFAULT_PRIORITY})`);
  }
  return n;
}

export function parseProceedOn(v: string | string[] | undefined): XdpAction[] {
  if (v === undefined) return [...DEFAULT_PROCEED_ON];
  const names = (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim().toLowerCase()).filter(Boolean);
  const out: XdpAction[] = [];
  for (const n of names) {
    if (!(n in XDP_ACTIONS)) {
      throw usageError(`--proceed-on: unknown XDP action '${n}'`, [`valid actions: ${Object.keys(XDP_ACTIONS).join(', ')}`]);
    }
    if (!out.includes(n as XdpAction)) out.push(n as XdpAction);
  }
  return out;
}

function parseMode(m: string | undefined): 'skb' | 'drv' | undefined {
  if (m === undefined) return undefined;
  if (m === 'skb' || m === 'drv') return m;
  throw usageError(`--mode ${m}: give skb (generic XDP) or drv (native, in the driver)`);
}

export function proceedOnMask(actions: XdpAction[]): number {
  return actions.reduce((m, a) => (m | (1 << XDP_ACTIONS[a])) >>> 0, 0);
}
