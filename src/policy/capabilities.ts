/**
 * The capabilities file bpfd's own policy is compiled with (policies/capabilities.json, made by
 * scripts/gen-wasm-capabilities.mjs): only builtins OPA's wasm target implements inside the
 * module, so a module built with it never asks bpfd for a builtin. Bundled into the executable,
 * so `bpfd policy build` and `bpfd policy capabilities` work wherever bpfd is copied.
 */
export async function capabilitiesText(): Promise<string> {
  const { default: caps } = await import('../../policies/capabilities.json', { with: { type: 'json' } });
  return JSON.stringify(caps, null, 2) + '\n';
}
