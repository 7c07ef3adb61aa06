#!/usr/bin/env bash
# Creates MACHINES simulated machines on this host: one Linux network namespace each, joined over veth
# pairs to a bridge that lives in its own "switch" namespace, so they talk over real TCP/IP while the
# host's network is left alone.
#
#   sudo cluster/netns/up.sh [MACHINES]       (default 2; names and subnet from common.sh)
#
#   machine 1: namespace vlseg-m1, eth0 10.231.0.1/24        ip netns exec vlseg-m1 ip addr
#   machine 2: namespace vlseg-m2, eth0 10.231.0.2/24
#   switch:    namespace vlseg-sw, bridge br0 with ports m1, m2, ...
#
# Set VLSEG_NETNS_PREFIX / VLSEG_NETNS_SUBNET to run several independent sets side by side. Remove them
# with cluster/netns/down.sh. Exits non-zero (and removes what it made) when namespaces are not allowed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

machines=${1:-2}
if ! [[ $machines =~ ^[1-9][0-9]*$ ]] || ((machines > 250)); then netns_log "MACHINES must be 1..250"; exit 2; fi
netns_require_root

sw=$(netns_switch)
if [[ -n $(netns_list) ]]; then
    netns_log "namespaces with prefix $VLSEG_NETNS_PREFIX exist already; run cluster/netns/down.sh first"
    exit 1
fi

cleanup_on_error() {
    netns_log "set-up failed; removing what was created"
    "$(dirname "${BASH_SOURCE[0]}")/down.sh" >/dev/null 2>&1 || true
}
trap cleanup_on_error ERR

ip netns add "$sw"
ip -n "$sw" link set lo up
bridged=1
if ! ip -n "$sw" link add br0 type bridge 2>/dev/null; then
    bridged=0
    ((machines == 2)) || { netns_log "cannot create a bridge here (and more than two machines need one)"; false; }
    netns_log "no bridge support: joining the two machines with one veth pair"
fi
((bridged)) && ip -n "$sw" link set br0 up

for ((i = 1; i <= machines; i++)); do
    m=$(netns_machine "$i")
    ip netns add "$m"
    ip -n "$m" link set lo up
done

if ((bridged)); then
    for ((i = 1; i <= machines; i++)); do
        m=$(netns_machine "$i")
        # Both ends are created inside the namespaces: the switch port m<i> and the machine's eth0.
        ip -n "$sw" link add "m$i" type veth peer name eth0 netns "$m"
        ip -n "$sw" link set "m$i" master br0
        ip -n "$sw" link set "m$i" up
    done
else
    ip -n "$(netns_machine 1)" link add eth0 type veth peer name eth0 netns "$(netns_machine 2)"
fi

for ((i = 1; i <= machines; i++)); do
    m=$(netns_machine "$i")
    ip -n "$m" addr add "$(netns_address "$i")/24" dev eth0
    ip -n "$m" link set eth0 up
done
trap - ERR
netns_log "$machines machine(s) up: $(for ((i = 1; i <= machines; i++)); do printf '%s=%s ' "$(netns_machine "$i")" "$(netns_address "$i")"; done)"
