import type { Context } from './context.js';
import { deniedError } from './errors.js';
import type { BpfElf } from '../loader/elf.js';
import type { LinkRecord, ProgramRecord } from '../state/records.js';

export type Action = 'load' | 'attach' | 'detach' | 'unload' | 'pull';

export interface GateRequest {
  action: Action;
  program?: { record?: ProgramRecord; elf?: BpfElf; name: string; type: string; section: string };
  attach?: { iface: string; netns: string | null; priority: number; proceed_on: string[] };
  existing?: Array<{ link: LinkRecord; program: ProgramRecord | undefined }>;
  application?: string | null;
  metadata?: Record<string, string>;
}

/**
 * Asks the policy before any mutating step. Placeholder until the Rego engine is wired in:
 * root is allowed, everyone else is denied.
 */
export async function gate(ctx: Context, req: GateRequest): Promise<void> {
  if (ctx.subject.uid !== 0) {
    throw deniedError(`denied by policy: ${req.action}`, [`uid ${ctx.subject.uid} has no grant`]);
  }
}
