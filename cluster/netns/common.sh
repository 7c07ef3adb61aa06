# Shared by the cluster/netns scripts: names and addresses of the simulated machines. Source it.
# shellcheck shell=bash
#
# Machine i (1-based) is the network namespace ${VLSEG_NETNS_PREFIX}-m<i> with address
# ${VLSEG_NETNS_SUBNET}.<i>/24 on its eth0; all machines hang off a bridge in the namespace
# ${VLSEG_NETNS_PREFIX}-sw (the "switch"). Nothing is added to the host's own network namespace, and
# the addresses exist only inside these namespaces.

VLSEG_NETNS_PREFIX=${VLSEG_NETNS_PREFIX:-vlseg}
VLSEG_NETNS_SUBNET=${VLSEG_NETNS_SUBNET:-10.231.0}
export VLSEG_NETNS_PREFIX VLSEG_NETNS_SUBNET

netns_log() { printf '[vlseg netns] %s\n' "$*" >&2; }
netns_switch() { echo "${VLSEG_NETNS_PREFIX}-sw"; }
netns_machine() { echo "${VLSEG_NETNS_PREFIX}-m$1"; }
netns_address() { echo "${VLSEG_NETNS_SUBNET}.$1"; }
netns_cidr() { echo "${VLSEG_NETNS_SUBNET}.0/24"; }

# Namespaces of the current prefix, one per line.
netns_list() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${VLSEG_NETNS_PREFIX}-(sw|m[0-9]+)$" || true
}

netns_require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        netns_log "network namespaces need root (run with sudo)"
        return 1
    fi
    command -v ip >/dev/null || { netns_log "the ip command (Debian package iproute2) is missing"; return 1; }
}
