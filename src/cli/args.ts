import { invalidInput } from '../base/errors.js';

/**
 * Reads a command's options strictly: an unknown option, or a value missing or given to a flag,
 * is an error, never silently ignored (a tool that
 * changes the kernel must not guess). Written here rather than taken from node:util's parseArgs,
 * whose module costs ~2.5 ms of every command's start under Bun; the accepted syntax is the same:
 * `--name value`, `--name=value`, `-o value`, `-ovalue`, and `--` before arguments that start
 * with a dash.
 */
export interface OptionRule {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  default?: string;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parseOptions(args: readonly string[], rules: Record<string, OptionRule>): ParsedArgs {
  const byShort = new Map(Object.entries(rules).filter(([, r]) => r.short).map(([name, r]) => [r.short!, name]));
  const values: ParsedArgs['values'] = {};
  const positionals: string[] = [];
  const set = (name: string, value: string | boolean) => {
    const rule = rules[name];
    if (rule.multiple) {
      values[name] = [...((values[name] as string[] | undefined) ?? []), value as string];
    } else values[name] = value; // as node's parseArgs: the last one given wins
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.length < 2 || !arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    const long = arg.startsWith('--');
    const eq = long ? arg.indexOf('=') : -1;
    const key = long ? arg.slice(2, eq === -1 ? undefined : eq) : arg[1];
    const name = long ? key : byShort.get(key);
    const shown = long ? `--${key}` : `-${key}`;
    if (name === undefined || !(name in rules)) {
      throw invalidInput(`Unknown option '${shown}'. To give an argument that starts with a dash, put it after '--', as in '-- "${arg}"'`);
    }
    const rule = rules[name];
    // -o json and -ojson; a boolean short option takes nothing after its letter
    const attached = long ? (eq === -1 ? undefined : arg.slice(eq + 1)) : arg.length > 2 ? arg.slice(2) : undefined;
    if (rule.type === 'boolean') {
      if (attached !== undefined) throw invalidInput(`Option '${shown}' does not take an argument`);
      set(name, true);
      continue;
    }
    if (attached !== undefined) {
      set(name, attached);
      continue;
    }
    const next = args[i + 1];
    if (next === undefined) throw invalidInput(`Option '${shown} <value>' argument missing`);
    if (next.startsWith('-') && next.length > 1) {
      throw invalidInput(`Option '${shown}' argument is ambiguous: '${next}' looks like an option. To give a value that starts with a dash, write '${long ? `${shown}=` : shown}${next}'`);
    }
    set(name, next);
    i++;
  }
  for (const [name, rule] of Object.entries(rules)) {
    if (values[name] === undefined && rule.default !== undefined) values[name] = rule.default;
  }
  return { values, positionals };
}
