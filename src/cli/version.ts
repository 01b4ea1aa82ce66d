import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { bpfdCommand, outputOption } from './command.js';
import { printJson } from './output.js';
import { resolvePaths } from '../core/config.js';

declare const __BPFD_VERSION__: string | undefined;
declare const __BPFD_COMMIT__: string | undefined;

export const versionCommand = bpfdCommand({
  name: 'version',
  description: 'Print the version of bpfd and the policy it enforces',
  options: { ...outputOption },
  async run(p) {
    const paths = resolvePaths();
    let sha256: string | null = null;
    try {
      sha256 = createHash('sha256').update(readFileSync(paths.policy)).digest('hex');
    } catch {
      /* reported as missing: every mutating request is then denied */
    }
    const info = {
      version: typeof __BPFD_VERSION__ === 'string' ? __BPFD_VERSION__ : '0.0.0-dev',
      commit: typeof __BPFD_COMMIT__ === 'string' ? __BPFD_COMMIT__ : 'unknown',
      policy: { sha256, path: paths.policy },
    };
    if (p.values.output === 'json') return printJson(info);
    process.stdout.write(
      `bpfd ${info.version} (commit ${info.commit})\n` +
        `policy: ${info.policy.path}\n` +
        `policy sha256: ${sha256 ?? 'missing (every change is denied until a valid policy is installed)'}\n`,
    );
  },
});
