# Shared by the launch scripts: set-up, build and environment. Source it; do not run it.
# shellcheck shell=bash

VLSEG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VLSEG_DEBIAN_PACKAGES=(pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libpng-dev libturbojpeg0-dev)

log() { printf '[vlseg] %s\n' "$*" >&2; }

# Installs the Debian packages VLSeg needs. Idempotent: apt-get runs only when one is missing,
# and then `apt-get update` runs once.
vlseg_setup() {
    local missing=()
    for p in "${VLSEG_DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        local sudo=()
        [[ $(id -u) -ne 0 ]] && sudo=(sudo)
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v swift >/dev/null || { log "swift not found on PATH (Swift 6.x toolchain required)"; return 1; }
}

# The OpenBLAS kernel core that suits this CPU. Debian's OpenBLAS 0.3.21 misdetects some recent
# CPUs (as "Prescott") and runs sgemm several times slower; vlseg corrects itself too, but
# exporting it here covers every process a script starts (mpirun ranks included).
vlseg_blas_coretype() {
    local flags
    flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    has() { [[ $flags == *" $1 "* ]]; }
    if has avx512f && has avx512bw && has avx512vl && has avx512dq && has avx512cd; then
        if has avx512_bf16; then echo Cooperlake; else echo SkylakeX; fi
    elif has avx2 && has fma; then
        echo Haswell
    elif has avx; then
        echo Sandybridge
    fi
}

vlseg_export_env() {
    if [[ -z ${OPENBLAS_CORETYPE:-} ]]; then
        local core
        core=$(vlseg_blas_coretype)
        [[ -n $core ]] && export OPENBLAS_CORETYPE=$core
    fi
    return 0
}

# Builds the release binary; prints its path.
vlseg_build_release() {
    (cd "$VLSEG_ROOT" && swift build -c release --product vlseg >&2)
    echo "$VLSEG_ROOT/.build/release/vlseg"
}

# mpirun flags every launch needs: root permission when root, no core binding (ranks run
# several threads), yielding when ranks outnumber cores.
vlseg_mpirun_flags() {
    local np=$1 flags=(--bind-to none -x OPENBLAS_CORETYPE)
    [[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
    if ((np > $(nproc))); then flags+=(--oversubscribe --mca mpi_yield_when_idle 1); fi
    printf '%s\n' "${flags[@]}"
}
