import { bpfdCommand, outputOption } from './command.js';
import { printJson, writeOut } from './output.js';
import { isEmbeddedPolicy, resolvePaths } from '../base/paths.js';

declare const __BPFD_VERSION__: string | undefined;
declare const __BPFD_COMMIT__: string | undefined;

export const versionCommand = bpfdCommand({
  name: 'version',
  description: 'Print the version of bpfd and the policy it enforces',
  options: { ...outputOption },
  async run(p) {
    const { policyInfo } = await import('../policy/engine.js');
    const policy = policyInfo(resolvePaths());
    const sha256 = policy.sha256;
    const info = {
      version: typeof __BPFD_VERSION__ === 'string' ? __BPFD_VERSION__ : '0.0.0-dev',
      commit: typeof __BPFD_COMMIT__ === 'string' ? __BPFD_COMMIT__ : 'unknown',
      // the shipped policy is a file inside the executable: say so rather than print its inner path
      policy: { sha256, path: isEmbeddedPolicy(policy.path) ? `built into ${process.execPath}` : policy.path },
    };
    if (p.values.output === 'json') return printJson(info);
    writeOut(
      `bpfd ${info.version} (commit ${info.commit})\n` +
        `policy: ${info.policy.path}\n` +
        `policy sha256: ${sha256 ?? 'missing (every change is denied until a valid policy is installed)'}\n`,
    );
  },
});
