#!/usr/bin/env bash
# Runs launch/train across simulated machines (network namespaces on this host) over TCP: the
# multi-machine path of a real cluster, on one box. Creates the machines, writes a hostfile with their
# addresses, starts mpirun inside machine 1, and removes the machines afterwards.
#
#   sudo cluster/netns/run.sh [-m MACHINES] [--keep] -n RANKS [launch/train options] [-- OVERRIDES...]
#
#   cluster/netns/run.sh -n 2 -- experiment=demo trainer.max_steps=20
#   VLSEG_COMMAND=env cluster/netns/run.sh -n 2          # each rank reports "local 0 of 1": one per machine
#
# mpirun reaches the other machines through rsh-agent.sh (ip netns exec instead of ssh) and is told to
# use TCP between ranks and for its own control traffic, on the machines' subnet only:
#   --mca plm_rsh_agent cluster/netns/rsh-agent.sh
#   --mca btl tcp,self --mca btl_tcp_if_include 10.231.0.0/24 --mca oob_tcp_if_include 10.231.0.0/24
# Ranks are spread evenly (ceil(RANKS / MACHINES) slots each). The filesystem is shared, as on a
# cluster with a shared run directory. --keep leaves the machines up (remove with down.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/common.sh"
source "$here/../../launch/common.sh"

machines=2
keep=0
np=""
train_args=()
while (($#)); do
    case $1 in
        -m | --machines) machines=${2:?"$1 needs a number"}; shift 2 ;;
        --keep) keep=1; shift ;;
        -n | --np) np=${2:?"$1 needs a number"}; train_args+=(-n "$np"); shift 2 ;;
        --) break ;;
        *) train_args+=("$1"); shift ;;
    esac
done
[[ $np =~ ^[1-9][0-9]*$ ]] || { netns_log "give the number of ranks: run.sh -n RANKS [-- OVERRIDES]"; exit 2; }
netns_require_root

# Build (or find) vlseg in the host namespace, before any network goes away.
vlseg_export_env
VLSEG_BIN=$(vlseg_release_binary)
export VLSEG_BIN

"$here/up.sh" "$machines"
work=$(mktemp -d)
# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
    rm -rf "$work"
    if ((keep)); then netns_log "machines kept; remove them with cluster/netns/down.sh"; else "$here/down.sh"; fi
}
trap finish EXIT

slots=$(((np + machines - 1) / machines))
for ((i = 1; i <= machines; i++)); do
    echo "$(netns_address "$i") slots=$slots"
done >"$work/hostfile"

cidr=$(netns_cidr)
mpi=(--mca plm_rsh_agent "$here/rsh-agent.sh" --mca btl "tcp,self"
    --mca btl_tcp_if_include "$cidr" --mca oob_tcp_if_include "$cidr")
mpirun_args=()
for a in "${mpi[@]}"; do mpirun_args+=(--mpirun-arg "$a"); done

netns_log "running on $machines machine(s) ($cidr), $slots slot(s) each"
status=0
ip netns exec "$(netns_machine 1)" "$here/../../launch/train" "${train_args[@]}" --hosts "$work/hostfile" \
    "${mpirun_args[@]}" "$@" || status=$?
exit "$status"
