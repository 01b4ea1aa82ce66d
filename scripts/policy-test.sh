#!/usr/bin/env bash
# What CI runs for the Rego side of the policy: unit tests with coverage (fails under 90%),
# strict compile checks, formatting, and regal lint when it is installed.
# The node tests (npm test) then exercise the compiled wasm/bpfd.wasm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/policies"
OPA=${OPA:-$(command -v opa || echo "$HOME/go/bin/opa")}
REGAL=${REGAL:-$(command -v regal || echo "$HOME/go/bin/regal")}
MIN_COVERAGE=${MIN_COVERAGE:-90}
if [[ ! -x $OPA ]]; then
  echo "policy-test: opa not found; install it with: go install github.com/open-policy-agent/opa@v1.22.0" >&2
  exit 1
fi
mapfile -t rego < <(find . -maxdepth 1 -name '*.rego' | sort)
mapfile -t policy < <(find . -maxdepth 1 -name '*.rego' ! -name '*_test.rego' | sort)

"$OPA" test "${rego[@]}"
coverage=$("$OPA" test --coverage "${rego[@]}" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).coverage));')
echo "coverage: ${coverage}%"
if ! node -e "process.exit(Number(process.argv[1]) >= Number(process.argv[2]) ? 0 : 1)" "$coverage" "$MIN_COVERAGE"; then
  echo "policy-test: coverage ${coverage}% is under ${MIN_COVERAGE}%" >&2
  exit 1
fi

"$OPA" check --strict "${rego[@]}"
# The shipped policy must compile against the wasm-native builtins only.
"$OPA" check --strict --capabilities capabilities.json "${policy[@]}"
echo "opa check --strict: ok"

unformatted=$("$OPA" fmt -l "${rego[@]}")
if [[ -n $unformatted ]]; then
  echo "policy-test: not formatted (run: opa fmt -w policies/*.rego):" >&2
  echo "$unformatted" >&2
  exit 1
fi
echo "opa fmt: ok"

if [[ -x $REGAL ]]; then
  "$REGAL" lint "${rego[@]}"
  echo "regal lint: ok"
elif [[ -n ${CI:-} ]]; then
  # scripts/setup.sh builds regal; CI must lint, not skip
  echo "policy-test: regal not found at $REGAL in CI (scripts/setup.sh installs it)" >&2
  exit 1
else
  echo "policy-test: regal not installed, skipping lint (see policies/README.md for how to install it)"
fi
