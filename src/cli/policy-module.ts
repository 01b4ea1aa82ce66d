import { resolvePaths } from '../base/paths.js';
import { ExitCode } from './exit-codes.js';
import { bpfdCommand, outputOption } from './command.js';
import { printJson, writeErr, writeOut } from './output.js';
import type { CheckReport } from '../policy/check.js';

/** `bpfd policy check`, `build` and `capabilities`: making and vetting a policy module of your own. */

export const policyCheckCommand = bpfdCommand({
  name: 'policy check',
  description: 'Whether bpfd will accept a policy module: run it before installing one to /etc/bpfd/policy.wasm (exit 0 yes, 1 no, with the reason)',
  more: `
The module is used as bpfd uses it: it must load, have the entrypoint bpfd evaluates
(bpfd/authz/decision, or its only one), need no builtin bpfd does not provide, get the evaluation
budget, take the data document, and answer built-in requests (a load by root, a load by an
unprivileged user) with {allow: bool, reasons: [string]}.

Examples:
  bpfd policy check                          # the active module (see bpfd version)
  bpfd policy check my.wasm --data /etc/bpfd/policy-data.json`,
  positionals: [{ name: 'module', description: 'the module (default: the active one, see bpfd version)', required: false }],
  options: {
    data: { type: 'string', description: 'data document to give it (default BPFD_POLICY_DATA, /etc/bpfd/policy-data.json)', valueHint: 'FILE' },
    ...outputOption,
  },
  async run({ values, positionals }) {
    const paths = resolvePaths();
    const { checkModule } = await import('../policy/check.js');
    const report = await checkModule(positionals[0] ?? paths.policy, (values.data as string | undefined) ?? paths.policyData);
    if (values.output === 'json') printJson(report);
    else if (report.ok) writeOut(checkText(report));
    else writeErr(`bpfd: policy check: ${report.path}: not usable: ${report.problem}\n`);
    process.exitCode = report.ok ? ExitCode.ok : ExitCode.failed;
  },
});

function checkText(r: CheckReport): string {
  return [
    `Module:     ${r.path} (${r.bytes} bytes, sha256 ${r.sha256})`,
    `Entrypoint: ${r.entrypoint}${r.entrypoints.length > 1 ? ` (of ${r.entrypoints.join(', ')})` : ''}`,
    `Builtins:   ${r.builtins.length ? r.builtins.join(', ') : 'none needed from bpfd'}`,
    `Budget:     ${r.budget === 'built in' ? 'built in' : 'added by bpfd at every cold start (bpfd policy build adds it ahead of time)'}`,
    `Data:       ${r.data}`,
    ...r.smoke.map((s, i) => `${i ? '           ' : 'Smoke:     '} ${s.input}: ${s.allow ? 'allow' : 'deny'} (${s.reasons.length} reason${s.reasons.length === 1 ? '' : 's'})`),
    'ok: bpfd will accept this module',
  ].join('\n') + '\n';
}

export const policyBuildCommand = bpfdCommand({
  name: 'policy build',
  description: 'Build your own Rego into a module bpfd accepts, the way bpfd builds its own (needs opa on PATH)',
  more: `
Runs opa build -t wasm with the wasm-only capabilities (bpfd policy capabilities) and the entrypoint
bpfd evaluates, then adds bpfd's evaluation budget to the module. A directory contributes its *.rego
(tests, *_test.rego, left out). The entrypoint defaults to PACKAGE/decision when the sources declare
one package; the rule must produce {allow: bool, reasons: [string]}. opa is found as $OPA, on PATH,
or in ~/go/bin (go install github.com/open-policy-agent/opa@v1.22.0).

Examples:
  bpfd policy build policies/ -o my.wasm
  bpfd policy build mycorp.rego -e mycorp/bpf/decision -o my.wasm
  bpfd policy check my.wasm && sudo install -m 0644 my.wasm /etc/bpfd/policy.wasm`,
  positionals: [{ name: 'sources', description: 'a directory of .rego files, or .rego files' }],
  options: {
    output: { type: 'string', short: 'o', description: 'the module to write (required)', valueHint: 'FILE.wasm' },
    entrypoint: { type: 'string', short: 'e', description: 'the rule bpfd evaluates, as a path (e.g. mycorp/bpf/decision)', valueHint: 'PATH' },
    json: { type: 'boolean', description: 'print what was built as JSON' },
  },
  // -o names the module here; --json asks for JSON
  outputs: null,
  variadic: true,
  async run({ values, positionals }) {
    const out = values.output as string | undefined;
    if (!out) throw (await import('../base/errors.js')).invalidInput('give the module to write: -o FILE.wasm (see: bpfd policy build --help)');
    const { buildPolicy } = await import('../policy/build.js');
    const { capabilitiesText } = await import('../policy/capabilities.js');
    const r = buildPolicy({ sources: positionals, out, entrypoint: values.entrypoint as string | undefined, capabilities: capabilitiesText() });
    if (values.json) printJson(r);
    else writeOut(`built ${r.out} (${r.bytes} bytes, entrypoint ${r.entrypoint}, sha256 ${r.sha256}) from ${r.sources.join(', ')}\n`);
  },
});

export const policyCapabilitiesCommand = bpfdCommand({
  name: 'policy capabilities',
  description: 'Print the capabilities file bpfd builds policies with: the builtins a module may use',
  more: `
These are the builtins OPA's wasm target implements inside the module, so bpfd provides none and
refuses a module that asks for one (sprintf, for example). To run opa yourself:
  bpfd policy capabilities > caps.json
  opa build -t wasm -e mycorp/bpf/decision --capabilities caps.json mycorp.rego`,
  async run() {
    const { capabilitiesText } = await import('../policy/capabilities.js');
    writeOut(capabilitiesText());
  },
});
