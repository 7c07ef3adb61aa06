#!/usr/bin/env bash
# Removes the simulated machines made by cluster/netns/up.sh (every namespace of the prefix; deleting a
# namespace deletes its veth ends and the bridge with it).
#
#   sudo cluster/netns/down.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
netns_require_root
removed=0
while read -r ns; do
    [[ -z $ns ]] && continue
    # Processes still running inside would keep nothing alive, but say so.
    if [[ -n $(ip netns pids "$ns" 2>/dev/null) ]]; then netns_log "$ns still has processes; deleting it anyway"; fi
    ip netns del "$ns"
    removed=$((removed + 1))
done < <(netns_list)
netns_log "removed $removed namespace(s) with prefix $VLSEG_NETNS_PREFIX"
