import { defineCommand, runCommand, type CommandDef } from 'citty';
import { attachCommand, detachCommand, getCommand, listCommand, loadCommand, unloadCommand } from './programs.js';
import { policyCommand } from './policy.js';
import { systemCommand } from './system.js';
import { doctorCommand } from './doctor.js';
import { bpffsCommand } from './bpffs.js';
import { versionCommand } from './version.js';
import { imageCommand, imagesCommand, pullCommand } from './images.js';
import { BpfdError } from '../base/errors.js';
import { ExitCode, exitCodeOf } from './exit-codes.js';
import { writeErr, writeOut } from './output.js';
import { renderHelp } from './help.js';
import { moreHelp } from './command.js';

const main = defineCommand({
  meta: {
    name: 'bpfd',
    description: 'Daemonless eBPF program manager: every command does its work and exits; state lives in LMDB and bpffs pins.',
  },
  subCommands: {
    load: loadCommand,
    unload: unloadCommand,
    attach: attachCommand,
    detach: detachCommand,
    list: listCommand,
    get: getCommand,
    policy: policyCommand,
    system: systemCommand,
    doctor: doctorCommand,
    bpffs: bpffsCommand,
    version: versionCommand,
    pull: pullCommand,
    images: imagesCommand,
    image: defineCommand(imageCommand),
  },
});

/** The command that `args` names, and the words that name it (`bpfd load file`). */
async function resolve(cmd: CommandDef, args: string[]): Promise<[CommandDef, string[]]> {
  const path = ['bpfd'];
  for (const a of args) {
    if (a.startsWith('-')) break;
    const subs = (typeof cmd.subCommands === 'function' ? await cmd.subCommands() : await cmd.subCommands) as Record<string, CommandDef> | undefined;
    const next = subs?.[a];
    if (!next) break;
    path.push(a);
    cmd = typeof next === 'function' ? await (next as () => Promise<CommandDef>)() : await next;
  }
  return [cmd, path];
}

/** Runs one command line and returns its exit code; the executable's entry (entry.ts) calls it. */
export async function cli(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
    const [cmd, path] = await resolve(main, argv);
    writeOut(await renderHelp(cmd, path));
    const more = moreHelp(cmd);
    if (more) writeOut(`\n${more.trim()}\n`);
    return argv.length === 0 ? ExitCode.usage : ExitCode.ok;
  }
  if (argv[0] === '--version') argv = ['version'];
  try {
    await runCommand(main, { rawArgs: argv });
    return Number(process.exitCode ?? 0);
  } catch (e) {
    return report(e);
  }
}

function report(e: unknown): number {
  if (e instanceof BpfdError) {
    writeErr(`bpfd: ${e.message}\n`);
    for (const d of e.details) writeErr(`  ${d}\n`);
    return exitCodeOf(e);
  }
  const err = e as Error & { code?: string };
  // citty's own usage errors (unknown command, missing subcommand)
  if (err?.name === 'CLIError' || err?.code === 'E_UNKNOWN_COMMAND' || err?.code === 'E_NO_COMMAND') {
    // citty colours the command name even when stderr is a pipe
    writeErr(`bpfd: ${err.message.replace(/\x1b\[[0-9;]*m/g, '')} (see: bpfd --help)\n`);
    return ExitCode.usage;
  }
  writeErr(`bpfd: internal error: ${err?.message ?? String(e)}\n`);
  if (process.env.BPFD_DEBUG) writeErr(`${err?.stack ?? ''}\n`);
  else writeErr('  set BPFD_DEBUG=1 for a stack trace, and please report it\n');
  return ExitCode.failed;
}

