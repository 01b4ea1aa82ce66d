#!/usr/bin/env bash
# Builds the bpf-map example (a user-space program linked against libbpf) into OUT_DIR, by
# default beside this script. fixtures/bytecode/build.sh calls it; the tests build their own copy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
# clang: scripts/setup.sh installs it for the BPF fixtures already
CC=${CC:-clang}
mkdir -p "$out"
"$CC" -O2 -Wall -Werror -o "$out/bpf-map" "$here/bpf-map.c" -lbpf
echo "built $out/bpf-map"
