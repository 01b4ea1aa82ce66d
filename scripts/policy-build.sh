#!/usr/bin/env bash
# Compiles the shipped Rego policy into wasm/bpfd.wasm (committed, so installing bpfd needs no OPA),
# with bpfd's evaluation budget already added, through the builder `bpfd policy build` runs
# (src/policy/build.ts): opa build -t wasm against policies/capabilities.json, then the budget.
# Also keeps opa's own output as test/fixtures/policies/bpfd-opa.wasm, for the tests that check
# the budget changes no decision and that wasm/bpfd.wasm is exactly that module plus the budget.
# Usage: scripts/policy-build.sh [OUT.wasm] [ENTRYPOINT] [REGO_DIR]
# Regenerate the capabilities file after an OPA upgrade with `node scripts/gen-wasm-capabilities.mjs`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/wasm/bpfd.wasm}
entrypoint=${2:-bpfd/authz/decision}
src=${3:-$root/policies}
opa_output=
[[ $(realpath -m "$out") == "$root/wasm/bpfd.wasm" ]] && opa_output=$root/test/fixtures/policies/bpfd-opa.wasm
[[ -f $root/build/src/policy/build.js ]] || node "$root/scripts/build.mjs"
node --input-type=module -e '
  const [root, out, entrypoint, src, opaOutput] = process.argv.slice(1);
  const { buildPolicy } = await import(root + "/build/src/policy/build.js");
  const { capabilitiesText } = await import(root + "/build/src/policy/capabilities.js");
  try {
    const r = buildPolicy({ sources: [src], out, entrypoint, capabilities: capabilitiesText(), ...(opaOutput ? { opaOutput } : {}) });
    console.log(`built ${r.out} (${r.bytes} bytes, entrypoint ${r.entrypoint}, sha256 ${r.sha256}; ${r.fuel.loops} loops, ${r.fuel.charged} of ${r.fuel.functions} functions charged)`);
  } catch (e) {
    console.error(`policy-build: ${e.message}${e.details?.length ? "\n  " + e.details.join("\n  ") : ""}`);
    process.exit(1);
  }
' "$root" "$out" "$entrypoint" "$src" "$opa_output"
