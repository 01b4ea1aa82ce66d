import { invalidInput } from '../base/errors.js';
import { DEFAULT_PRIORITY, parseProceedOn, validatePriority } from '../dispatcher/planner.js';
import type { XdpAction } from '../state/records.js';
import { checkIfaceName } from './request-checks.js';

export { parseProceedOn, proceedOnMask } from '../dispatcher/planner.js';
export { DEFAULT_PRIORITY };

export interface XdpAttachOptions {
  iface: string;
  priority: number;
  proceedOn: XdpAction[];
  mode: 'skb' | 'drv' | undefined;
  netns: string | null;
}

/** Validates attach options before anything touches the kernel, so bad input costs nothing. */
export function parseXdpAttach(o: { iface?: string; priority?: string | number; proceedOn?: string | string[]; mode?: string; netns?: string }): XdpAttachOptions {
  if (!o.iface) throw invalidInput('--iface is required to attach an XDP program');
  checkIfaceName(o.iface);
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
  return validatePriority(n, p);
}

function parseMode(m: string | undefined): 'skb' | 'drv' | undefined {
  if (m === undefined) return undefined;
  if (m === 'skb' || m === 'drv') return m;
  throw invalidInput(`--mode ${m}: give skb (generic XDP) or drv (native, in the driver)`);
}
