import type { ArgsDef, CommandDef } from './command.js';

/**
 * `--help`: descriptions wrap at the terminal's width, or at 80 columns when the output is not a terminal.
 */

const MIN_WIDTH = 40;
/** An option column wider than this puts the description on the lines below the option. */
const MAX_LABEL = 32;

export function helpWidth(): number {
  const cols = process.stdout.isTTY ? process.stdout.columns : undefined;
  return Math.max(MIN_WIDTH, cols && cols > 0 ? cols : 80);
}

/** Words of `text` in lines of at most `width` columns (a longer word gets a line of its own). */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** Rows of a two-column list: each label, then its description wrapped in the column beside it. */
function rows(entries: Array<[string, string]>, width: number): string[] {
  const indent = 2;
  const labelWidth = Math.min(MAX_LABEL, Math.max(...entries.map(([label]) => label.length)));
  const descColumn = indent + labelWidth + 2;
  const out: string[] = [];
  for (const [label, description] of entries) {
    const text = wrap(description, Math.max(20, width - descColumn));
    if (label.length > labelWidth) {
      out.push(' '.repeat(indent) + label);
      for (const l of text) out.push(' '.repeat(descColumn) + l);
    } else {
      const [first = '', ...rest] = text;
      out.push((' '.repeat(indent) + label.padEnd(labelWidth) + '  ' + first).trimEnd());
      for (const l of rest) out.push(' '.repeat(descColumn) + l);
    }
  }
  return out;
}

async function resolved<T>(v: T | Promise<T> | (() => T | Promise<T>) | undefined): Promise<T | undefined> {
  return typeof v === 'function' ? await (v as () => T | Promise<T>)() : await v;
}

/** The help text of `cmd`, reached as `path` (e.g. ['bpfd', 'load', 'file']). */
export async function renderHelp(cmd: CommandDef, path: string[], width = helpWidth()): Promise<string> {
  const meta = (await resolved(cmd.meta)) ?? {};
  const args = ((await resolved(cmd.args)) ?? {}) as ArgsDef;
  const subs = (await resolved(cmd.subCommands)) as Record<string, CommandDef | (() => Promise<CommandDef>)> | undefined;
  const out: string[] = [];
  if (meta.description) out.push(...wrap(meta.description, width), '');

  const positionals = Object.entries(args).filter(([, a]) => a.type === 'positional');
  const options = Object.entries(args).filter(([, a]) => a.type !== 'positional');
  const usage = [...path];
  for (const [name, a] of positionals) usage.push((a as { required?: boolean }).required === false ? `[${name.toUpperCase()}]` : name.toUpperCase());
  if (options.length) usage.push('[OPTIONS]');
  if (subs) usage.push('<command>');
  out.push(...wrap(`Usage: ${usage.join(' ')}`, width), '');

  if (positionals.length) {
    out.push('Arguments:', ...rows(positionals.map(([name, a]) => [name.toUpperCase(), a.description ?? '']), width), '');
  }
  if (options.length) {
    const entries = options.map(([name, a]): [string, string] => {
      const o = a as { alias?: string | string[]; valueHint?: string; default?: unknown; type?: string };
      const alias = [o.alias ?? []].flat().map((s) => `-${s}, `).join('');
      const value = o.type === 'boolean' ? '' : ` ${o.valueHint ? `<${o.valueHint}>` : 'VALUE'}`;
      const dflt = o.default !== undefined && o.type !== 'boolean' && !/\(default/.test(a.description ?? '') ? ` (default: ${String(o.default)})` : '';
      return [`${alias}--${name}${value}`, `${a.description ?? ''}${dflt}`];
    });
    out.push('Options:', ...rows([...entries, ['-h, --help', 'show this help']], width), '');
  }
  if (subs) {
    const entries: Array<[string, string]> = [];
    for (const [name, sub] of Object.entries(subs)) {
      const subMeta = (await resolved((await resolved(sub))?.meta)) ?? {};
      entries.push([name, subMeta.description ?? '']);
    }
    out.push('Commands:', ...rows(entries, width), '');
    out.push(...wrap(`Use '${path.join(' ')} <command> --help' for what a command does and its options.`, width), '');
  }
  return out.join('\n');
}
