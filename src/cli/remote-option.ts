import { existsSync } from 'node:fs';
import type { OptionSpec, Parsed } from './command.js';

// When a command goes to the bpfd service instead of acting in-process (src/cli/remote.ts does
// the calls). Kept apart and light: every command reads it, few load the client.

/** The address a client uses: BPFD_SOCKET, else bpfd's default socket. */
export const serviceAddress = (env: NodeJS.ProcessEnv = process.env) => env.BPFD_SOCKET ?? 'unix:///var/run/bpfd.sock';

export const remoteOption: Record<string, OptionSpec> = {
  remote: {
    type: 'boolean',
    description: 'ask the bpfd service (BPFD_SOCKET, default unix:///var/run/bpfd.sock) instead of acting in-process; the default when not root',
  },
};

/** Changes go to the service unless root runs them; reads too when a service socket is there. */
export function goesRemote(p: Parsed, mutating: boolean): boolean {
  if (p.values.remote === true) return true;
  if (process.getuid?.() === 0) return false;
  if (mutating) return true;
  const unix = /^unix:(?:\/\/)?(\/.+)$/.exec(serviceAddress());
  return unix ? existsSync(unix[1]) : true;
}
