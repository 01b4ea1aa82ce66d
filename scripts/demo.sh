#!/usr/bin/env bash
# The bpfd demo: a veth pair between two network namespaces, a counting XDP program that
# sees every ping, then a drop program put in front of it on the same interface (bpfd's
# composed dispatcher runs both, in priority order), then everything taken away again.
# Every step is a separate, short-lived bpfd process: nothing stays running in between.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (sudo npm run demo): it loads programs into the kernel" >&2; exit 1; }
# Under sudo, bpfd judges the user who ran sudo and refuses BPFD_* paths; the demo acts as root
# in a scratch store of its own, so it says so (root dropping sudo's variables is root's choice).
unset SUDO_UID SUDO_GID SUDO_USER SUDO_COMMAND

tag=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
NS_CLIENT=bpfd-demo-$tag-c
NS_SERVER=bpfd-demo-$tag-s
IF_CLIENT=dc$tag
IF_SERVER=ds$tag
work=$(mktemp -d /tmp/bpfd-demo.XXXXXX)
export BPFD_RUNTIME_DIR=$work/run BPFD_STATE_DIR=$work/state
bpfd() { dist/bpfd "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  for id in $(bpfd list -o json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{for(const p of JSON.parse(s))console.log(p.id)}catch{}})'); do
    bpfd unload "$id" || true
  done
  ip netns del "$NS_CLIENT" 2>/dev/null || true
  ip netns del "$NS_SERVER" 2>/dev/null || true
  umount "$BPFD_RUNTIME_DIR/fs" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step "network: $NS_CLIENT ($IF_CLIENT 10.250.0.1) <-veth-> $NS_SERVER ($IF_SERVER 10.250.0.2)"
ip netns add "$NS_CLIENT"
ip netns add "$NS_SERVER"
ip link add "$IF_CLIENT" netns "$NS_CLIENT" type veth peer name "$IF_SERVER" netns "$NS_SERVER"
ip -n "$NS_CLIENT" addr add 10.250.0.1/30 dev "$IF_CLIENT"
ip -n "$NS_SERVER" addr add 10.250.0.2/30 dev "$IF_SERVER"
ip -n "$NS_CLIENT" link set "$IF_CLIENT" up
ip -n "$NS_SERVER" link set "$IF_SERVER" up
ping_server() { ip netns exec "$NS_CLIENT" ping -n -q -c "$1" -i 0.05 -W 1 10.250.0.2; }

step "bpfd version"
bpfd version

step "load a counting XDP program on $IF_SERVER (inside $NS_SERVER)"
bpfd load file --path fixtures/bytecode/xdp_count.o --name xdp_count \
  --iface "$IF_SERVER" --netns "/var/run/netns/$NS_SERVER" --priority 50 --metadata demo=true
COUNT_ID=$(bpfd list -o json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].id))')

step "ping 5 times: the counter sees every packet"
ping_server 5
bpftool map dump pinned "$BPFD_RUNTIME_DIR/fs/maps/$COUNT_ID/xdp_stats"

step "bpfd list"
bpfd list

step "put a drop program in front of it (priority 10 runs before 50): one atomic swap of the dispatcher"
bpfd load file --path fixtures/bytecode/xdp_drop.o --name xdp_drop \
  --iface "$IF_SERVER" --netns "/var/run/netns/$NS_SERVER" --priority 10 -o json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const p=JSON.parse(s);console.log(`loaded ${p.name} id ${p.id} on ${p.links[0].iface}, position ${p.links[0].position}`)})'
bpfd list

step "ping again: every packet is dropped before the counter sees it"
if ping_server 3; then echo "demo: ping should have failed" >&2; exit 1; fi
echo "(ping failed, as it should)"
bpftool map dump pinned "$BPFD_RUNTIME_DIR/fs/maps/$COUNT_ID/xdp_stats"

step "bpfd get $COUNT_ID: the dispatcher's per-program counters"
bpfd get "$COUNT_ID"

step "unload everything: traffic flows again"
for id in $(bpfd list -o json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const p of JSON.parse(s))console.log(p.id)})'); do
  bpfd unload "$id"; echo "unloaded $id"
done
ping_server 2
step "done: nothing is left in the kernel"
bpfd list
