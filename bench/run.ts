import { benchCli } from './cli.js';
import { benchDispatcher } from './dispatcher.js';
import { benchPolicy } from './policy.js';
import { benchRecovery } from './recovery.js';
import { benchOci } from './oci.js';

/** `npm run bench`: every benchmark in one run, each printed beside its reference. Needs root. */
if (process.getuid?.() !== 0) {
  console.error('bench: run as root (sudo npm run bench): it loads programs and creates network namespaces');
  process.exit(1);
}
const sections: Array<[string, () => Promise<string[]>]> = [
  ['CLI', () => benchCli()],
  ['XDP dispatcher', () => benchDispatcher()],
  ['Policy', () => benchPolicy()],
  ['Lock and recovery check', () => benchRecovery()],
  ['Images', () => benchOci()],
];
for (const [name, run] of sections) {
  console.log(`\n### ${name}`);
  for (const line of await run()) console.log(line);
}
