#!/usr/bin/env bash
# Open MPI's remote-start agent for the simulated machines (used as --mca plm_rsh_agent): where mpirun
# would `ssh HOST COMMAND`, this runs COMMAND inside the machine's network namespace on this host.
#
#   rsh-agent.sh [ssh options] HOST COMMAND...      HOST is a machine's address (10.231.0.2) or index
#
# The namespace prefix and subnet come from the environment (VLSEG_NETNS_PREFIX, VLSEG_NETNS_SUBNET),
# which mpirun passes on to its agent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Skip ssh-style options Open MPI may add (-x, -o Option=value, ...).
while (($#)) && [[ $1 == -* ]]; do
    case $1 in
        -o | -p | -l | -i) shift 2 ;;
        *) shift ;;
    esac
done
(($# >= 2)) || { netns_log "usage: rsh-agent.sh HOST COMMAND..."; exit 2; }
host=$1
shift

case $host in
    "$VLSEG_NETNS_SUBNET".*) index=${host##*.} ;;
    [0-9] | [0-9][0-9] | [0-9][0-9][0-9]) index=$host ;;
    *) netns_log "unknown host '$host': expected an address in $(netns_cidr)"; exit 255 ;;
esac
ns=$(netns_machine "$index")
# Like ssh, the remote command is one shell command line.
exec ip netns exec "$ns" /bin/sh -c "$*"
