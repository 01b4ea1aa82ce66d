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
import { defineCommand, moreHelp, resolveCommand, runCommandLine } from './command.js';

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

/** Runs one command line and returns its exit code; the executable's entry (entry.ts) calls it. */
export async function cli(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
    const [cmd, path] = resolveCommand(main, argv);
    writeOut(await renderHelp(cmd, path));
    const more = moreHelp(cmd);
    if (more) writeOut(`\n${more.trim()}\n`);
    return argv.length === 0 ? ExitCode.usage : ExitCode.ok;
  }
  if (argv[0] === '--version') argv = ['version'];
  try {
    await runCommandLine(main, argv);
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
  const err = e as Error;
  writeErr(`bpfd: internal error: ${err?.message ?? String(e)}\n`);
  if (process.env.BPFD_DEBUG) writeErr(`${err?.stack ?? ''}\n`);
  else writeErr('  set BPFD_DEBUG=1 for a stack trace, and please report it\n');
  return ExitCode.failed;
}

