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
# strace: npm run bench splits a load into the kernel's syscalls and bpfd's own time with it
APT_PACKAGES=(clang llvm xdp-tools libxdp-dev iproute2 iputils-ping util-linux linux-libc-dev systemd sudo docker-registry skopeo apache2-utils strace)

# libbpf 1.1.2 (bookworm) segfaults in bpf_object__open_mem on some malformed objects and lacks
# the TCX API; bookworm-backports has libbpf 1.4.6 and bpftool 7.5 on the same Debian mirror.
BACKPORTS=(libbpf1 libbpf-dev bpftool)
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  echo "setup: adding bookworm-backports ($uri)"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
    >/etc/apt/sources.list.d/bookworm-backports.sources
  apt-get update -qq
fi
if ! dpkg-query -W -f='${Version}' libbpf1 2>/dev/null | grep -q '1:1\.[4-9]'; then
  echo "setup: installing ${BACKPORTS[*]} from bookworm-backports"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports "${BACKPORTS[@]}" >/dev/null
fi

# The refusal of an older libbpf is tested against the real one: bookworm's libbpf 1.1.2, unpacked
# (not installed) where only the test's LD_LIBRARY_PATH finds it.
OLD_LIBBPF_DIR=/opt/bpfd-test/libbpf-1.1
if [ ! -e "$OLD_LIBBPF_DIR/usr/lib/x86_64-linux-gnu/libbpf.so.1" ]; then
  echo "setup: unpacking bookworm's libbpf 1.1.2 into $OLD_LIBBPF_DIR (for the libbpf version test)"
  old=$(apt-cache madison libbpf1 | awk '$3 ~ /^1:1\.1\./ {print $3; exit}')
  tmp=$(mktemp -d)
  (cd "$tmp" && chmod 777 . && apt-get download -qq "libbpf1=$old" && mkdir -p "$OLD_LIBBPF_DIR" && dpkg-deb -x libbpf1_*.deb "$OLD_LIBBPF_DIR")
  rm -rf "$tmp"
fi

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
# Regal moved from styrainc to open-policy-agent. `go install …@version` fails where the module
# proxy refuses version lists (it looks up deprecations), so build it through a throwaway module.
REGAL_VERSION=v0.38.1
if ! regal version >/dev/null 2>&1; then
  echo "setup: installing regal ${REGAL_VERSION} (policy linter; optional)"
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && go mod init regal-build >/dev/null 2>&1 && go get "github.com/open-policy-agent/regal@${REGAL_VERSION}" &&
    go build -o "$HOME/go/bin/regal" github.com/open-policy-agent/regal); then
    echo "setup: regal did not install; policy:test will say so"
  fi
  rm -rf "$tmp"
fi

# cosign signs images in the signature tests (bpfd itself verifies offline, without cosign).
COSIGN_VERSION=v2.4.1
if ! cosign version 2>/dev/null | grep -q "GitVersion: *${COSIGN_VERSION}"; then
  echo "setup: installing cosign ${COSIGN_VERSION} with go install (a large build; several minutes)"
  go install "github.com/sigstore/cosign/v2/cmd/cosign@${COSIGN_VERSION}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: building"
npm run --silent build
echo "setup: done"
