#!/usr/bin/env bash
# Installs everything bpfd needs on a fresh Debian bookworm machine, as root, idempotently:
# kernel tooling (clang, libbpf, bpftool, xdp-tools), the OPA compiler for policies, the npm
# dependencies, then builds bpfd. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo bash scripts/setup.sh): it installs packages and bpfd needs root to load programs" >&2
  exit 1
fi

OPA_VERSION=v1.22.0
APT_PACKAGES=(clang llvm libbpf-dev libbpf1 bpftool xdp-tools libxdp-dev iproute2 iputils-ping util-linux linux-libc-dev systemd)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="$HOME/go/bin:/usr/local/go/bin:$PATH"
if ! opa version 2>/dev/null | grep -q "Version: ${OPA_VERSION#v}"; then
  echo "setup: installing opa ${OPA_VERSION} with go install"
  go install "github.com/open-policy-agent/opa@${OPA_VERSION}"
fi
REGAL_VERSION=v0.29.2
if ! regal version >/dev/null 2>&1; then
  echo "setup: installing regal ${REGAL_VERSION} (policy linter; optional)"
  go install "github.com/styrainc/regal@${REGAL_VERSION}" || echo "setup: regal did not install; policy:test will say so"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: building"
npm run --silent build
echo "setup: done"
