import { invalidInput } from '../base/errors.js';
import { parseOptions } from './args.js';

/**
 * The command tree: groups (`subCommands`) and commands (`run`), each with what --help shows
 * (help.ts renders it, main.ts dispatches). Plain data, so a command's module is the only code a
 * command line needs.
 */
export interface ArgDef {
  type: 'positional' | 'string' | 'boolean';
  description?: string;
  required?: boolean;
  alias?: string;
  valueHint?: string;
  default?: string;
}
export type ArgsDef = Record<string, ArgDef>;
export interface CommandDef {
  meta: { name?: string; description?: string };
  args?: ArgsDef;
  subCommands?: Record<string, CommandDef>;
  /** the arguments after the words that name the command */
  run?: (ctx: { rawArgs: string[] }) => Promise<void>;
}
export const defineCommand = (def: CommandDef): CommandDef => def;

/** The command that `args` names, and the words that name it (`bpfd load file`). */
export function resolveCommand(cmd: CommandDef, args: string[], words = ['bpfd']): [CommandDef, string[]] {
  const path = [...words];
  for (const a of args) {
    const next = a.startsWith('-') ? undefined : cmd.subCommands?.[a];
    if (!next) break;
    path.push(a);
    cmd = next;
  }
  return [cmd, path];
}

/** Runs the command the words name with the arguments after them; a group's words must name one of its commands. */
export async function runCommandLine(root: CommandDef, argv: string[], words = ['bpfd']): Promise<void> {
  const [cmd, path] = resolveCommand(root, argv, words);
  const rest = argv.slice(path.length - words.length);
  if (cmd.run) return cmd.run({ rawArgs: rest });
  const names = Object.keys(cmd.subCommands ?? {});
  const see = `(see: ${path.join(' ')} --help)`;
  if (rest.length === 0 || rest[0].startsWith('-')) throw invalidInput(`give a command after '${path.join(' ')}': ${names.join(', ')} ${see}`);
  throw invalidInput(`Unknown command ${rest[0]} ${see}`);
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  short?: string;
  multiple?: boolean;
  valueHint?: string;
  default?: string;
}

export interface PositionalSpec {
  name: string;
  description: string;
  required?: boolean;
}

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export const outputOption: Record<string, OptionSpec> = {
  output: { type: 'string', short: 'o', description: 'output format: table or json', valueHint: 'table|json', default: 'table' },
};

/** A command: its options for --help, read strictly (args.ts) before `run` sees them. */
export function bpfdCommand(def: {
  name: string;
  description: string;
  options?: Record<string, OptionSpec>;
  positionals?: PositionalSpec[];
  /** the -o formats it prints (default table, json); null when -o means something else */
  outputs?: string[] | null;
  /** the last positional takes every argument left */
  variadic?: boolean;
  /** printed after the options by --help: worked examples, what to read next */
  more?: string;
  run: (p: Parsed) => Promise<void>;
}): CommandDef {
  const args: ArgsDef = {};
  for (const pos of def.positionals ?? []) {
    args[pos.name] = { type: 'positional', description: pos.description, required: pos.required ?? true };
  }
  for (const [name, o] of Object.entries(def.options ?? {})) {
    args[name] = {
      type: o.type,
      description: o.description + (o.multiple ? ' (repeatable)' : ''),
      ...(o.short ? { alias: o.short } : {}),
      ...(o.valueHint ? { valueHint: o.valueHint } : {}),
      ...(o.default !== undefined ? { default: o.default } : {}),
    };
  }
  const cmd = defineCommand({
    meta: { name: def.name.split(' ').pop(), description: def.description },
    args,
    async run({ rawArgs }) {
      let parsed;
      try {
        parsed = parseOptions(rawArgs, def.options ?? {});
      } catch (e) {
        throw invalidInput(`${(e as Error).message} (see: bpfd ${def.name} --help)`);
      }
      const want = def.positionals ?? [];
      const required = want.filter((p) => p.required ?? true).length;
      if (parsed.positionals.length < required) {
        throw invalidInput(`missing ${want[parsed.positionals.length].name.toUpperCase()} (see: bpfd ${def.name} --help)`);
      }
      if (parsed.positionals.length > want.length && !def.variadic) {
        throw invalidInput(`unexpected argument '${parsed.positionals[want.length]}' (see: bpfd ${def.name} --help)`);
      }
      const out = parsed.values.output;
      const outputs = def.outputs === undefined ? ['table', 'json'] : def.outputs;
      if (out !== undefined && outputs && !outputs.includes(out as string)) throw invalidInput(`-o ${String(out)}: give ${outputs.join(' or ')}`);
      await def.run({ values: parsed.values as Parsed['values'], positionals: parsed.positionals });
    },
  });
  if (def.more) helpMore.set(cmd, def.more);
  return cmd;
}

const helpMore = new WeakMap<CommandDef, string>();

/** The text --help prints after a command's options (bpfdCommand's `more`). */
export const moreHelp = (cmd: CommandDef): string | undefined => helpMore.get(cmd);

export function parseId(s: string, what = 'ID'): number {
  if (!/^\d+$/.test(s) || Number(s) <= 0 || Number(s) > 0xffffffff) throw invalidInput(`${what} '${s}' is not a valid id: give the number shown by 'bpfd list'`);
  return Number(s);
}

/** k=v pairs from repeatable options. */
export function parsePairs(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw invalidInput(`${flag} ${item}: expected KEY=VALUE`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}
