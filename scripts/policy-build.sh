#!/usr/bin/env bash
# Compiles the shipped Rego policy into wasm/bpfd.wasm (committed, so installing bpfd needs no OPA),
# with bpfd's evaluation budget already added (scripts/add-fuel.mjs).
# Usage: scripts/policy-build.sh [OUT.wasm] [ENTRYPOINT] [REGO_DIR]
# The capabilities file limits the policy to builtins the wasm target implements itself, so the
# module never needs a JavaScript builtin; regenerate it after an OPA upgrade with
# `node scripts/gen-wasm-capabilities.mjs`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
OPA=${OPA:-$(command -v opa || echo "$HOME/go/bin/opa")}
out=${1:-$root/wasm/bpfd.wasm}
entrypoint=${2:-bpfd/authz/decision}
src=${3:-$root/policies}

if [[ ! -x $OPA ]]; then
  echo "policy-build: opa not found; install it with: go install github.com/open-policy-agent/opa@v1.22.0" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Only the policy modules go in: tests and example data are not part of the bundle.
mkdir -p "$tmp/src"
find "$src" -maxdepth 1 -name '*.rego' ! -name '*_test.rego' -exec cp {} "$tmp/src/" \;
# No -O: optimisation partially evaluates against the bundle's (empty) data and folds the grants
# away, so the module would ignore the data document given at runtime (test/unit/policy-rules).
"$OPA" build -t wasm -e "$entrypoint" --capabilities "$root/policies/capabilities.json" \
  -o "$tmp/bundle.tar.gz" "$tmp/src"
tar -xzf "$tmp/bundle.tar.gz" -C "$tmp" /policy.wasm 2>/dev/null
mkdir -p "$(dirname "$out")"
# The evaluation budget goes in now rather than at every cold start (bpfd adds it at load to a
# module without it); the rewrite is bpfd's own code, so build that first when it is missing.
[[ -f $root/build/src/policy/wasm-fuel.js ]] || node "$root/scripts/build.mjs"
node "$root/scripts/add-fuel.mjs" "$tmp/policy.wasm" "$out"
# The module as opa built it, for the tests that check the budget changes no decision and that
# $out is exactly that module plus the budget.
if [[ $out == "$root/wasm/bpfd.wasm" ]]; then
  cp "$tmp/policy.wasm" "$root/test/fixtures/policies/bpfd-opa.wasm"
fi
echo "built $out ($(wc -c <"$out") bytes, entrypoint $entrypoint, sha256 $(sha256sum "$out" | cut -d' ' -f1))"
