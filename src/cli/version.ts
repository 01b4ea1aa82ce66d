import { bpfdCommand, outputOption } from './command.js';
import { printJson, writeOut } from './output.js';
import { policyLabel, resolvePaths } from '../base/paths.js';

declare const __BPFD_VERSION__: string | undefined;
declare const __BPFD_COMMIT__: string | undefined;

export const versionCommand = bpfdCommand({
  name: 'version',
  description: 'Print the version of bpfd, the policy it enforces and the libbpf it loads',
  options: { ...outputOption },
  async run(p) {
    const { policyInfo } = await import('../policy/engine.js');
    const policy = policyInfo(resolvePaths());
    // the libbpf the loader will dlopen, asked through its own functions (libbpf_major_version…)
    const { describeLibbpf } = await import('../loader/libbpf-version.js');
    const lib = describeLibbpf();
    const libbpf = 'error' in lib ? { version: null, supported: false, error: lib.error } : { version: `${lib.major}.${lib.minor}`, supported: lib.supported };
    const sha256 = policy.sha256;
    const info = {
      version: typeof __BPFD_VERSION__ === 'string' ? __BPFD_VERSION__ : '0.0.0-dev',
      commit: typeof __BPFD_COMMIT__ === 'string' ? __BPFD_COMMIT__ : 'unknown',
      // the shipped policy is a file inside the executable: say so rather than print its inner path
      policy: { sha256, path: policyLabel(policy.path) },
      libbpf,
    };
    if (p.values.output === 'json') return printJson(info);
    writeOut(
      `bpfd ${info.version} (commit ${info.commit})\n` +
        `policy: ${info.policy.path}\n` +
        `policy sha256: ${sha256 ?? 'missing (every change is denied until a valid policy is installed)'}\n` +
        `libbpf: ${libbpf.version ?? `not loadable (${'error' in libbpf ? libbpf.error : ''})`}${libbpf.version && !libbpf.supported ? ' (unsupported: bpfd needs 1.4 or newer)' : ''}\n`,
    );
  },
});
