# Shared by the launch scripts: set-up, build and environment. Source it; do not run it.
# shellcheck shell=bash

VLSEG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The last four serve the tests: linting the scripts, network namespaces for the multi-machine test,
# headless Chromium for the HTML report's test, and the PostgreSQL server the shared-study sweep test starts.
VLSEG_DEBIAN_PACKAGES=(pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libpng-dev libturbojpeg0-dev shellcheck iproute2
    chromium postgresql)

log() { printf '[vlseg] %s\n' "$*" >&2; }

# A number from JSON on stdin (one line, or pretty-printed): the first "KEY": NUMBER. For `vlseg ... --json`
# without needing jq.
json_field() { sed -n "s/.*\"$1\" *: *\([-0-9.eE+]*\).*/\1/p" | head -n 1; }

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

# Python packages the tests use as independent references (Pillow's resize, transformers' image
# processor and model directories, scikit-image's sample photos, numpy's computation of Dice and IoU),
# pinned. Installed only for the tests: training and the demo need none of them. torch is its CPU
# build, which these machines keep as a local wheel that pip's find-links (/etc/pip.conf) serves.
VLSEG_TEST_PYTHON_PACKAGES=(pillow==11.0.0 numpy==1.26.4 transformers==4.46.3 scikit-image==0.24.0 "torch==2.13.0+cpu" tensorboard==2.18.0)
# OpenCV's resize (the reference of data.resize=cv2_cubic), installed without its dependencies: its wheel's
# metadata asks for numpy>=2, which would replace the numpy the other references are pinned to, and its
# resize runs with numpy 1.26 as well.
VLSEG_TEST_PYTHON_NODEPS=(opencv-python-headless==4.14.0.94)

# Installs the test references; idempotent (pip finds pinned versions already there without a download).
# The sweep tests drive Optuna too, against SQLite and a PostgreSQL server they start (Debian's postgresql).
vlseg_test_setup() {
    command -v python3 >/dev/null || { log "python3 not found (the tests use it for reference values)"; return 1; }
    log "Python test references: ${VLSEG_TEST_PYTHON_PACKAGES[*]}"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${VLSEG_TEST_PYTHON_PACKAGES[@]}"
    log "Python test references without dependencies: ${VLSEG_TEST_PYTHON_NODEPS[*]}"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps "${VLSEG_TEST_PYTHON_NODEPS[@]}"
    vlseg_sweep_setup
}

# `vlseg sweep` drives Optuna, pinned to the release its driver script is tested with. SQLAlchemy 2.0
# reads postgresql:// URLs with psycopg2 (2.1 moved to psycopg 3), which lets several launches on several
# machines share a study in PostgreSQL; SQLite needs nothing more.
VLSEG_SWEEP_PYTHON_PACKAGES=(optuna==4.5.0 sqlalchemy==2.0.59 psycopg2-binary==2.9.10)

# Installs Optuna for `vlseg sweep` (launch/sweep calls it); idempotent. VLSEG_PYTHON picks the interpreter.
vlseg_sweep_setup() {
    local python=${VLSEG_PYTHON:-python3}
    command -v "$python" >/dev/null || { log "$python not found (vlseg sweep drives Optuna through it)"; return 1; }
    log "Optuna for vlseg sweep: ${VLSEG_SWEEP_PYTHON_PACKAGES[*]}"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${VLSEG_SWEEP_PYTHON_PACKAGES[@]}"
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
    # Idle OpenBLAS threads sleep at once instead of spinning against the engine's own threads
    # (vlseg sets this itself when it is missing, by re-executing; exporting it saves that).
    export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
    return 0
}

# Builds the release binary; prints its path.
vlseg_build_release() {
    (cd "$VLSEG_ROOT" && swift build -c release --product vlseg >&2)
    echo "$VLSEG_ROOT/.build/release/vlseg"
}

# The release binary, built only when it is missing or older than a source file (or VLSEG_BIN when set).
vlseg_release_binary() {
    if [[ -n ${VLSEG_BIN:-} ]]; then
        [[ -x $VLSEG_BIN ]] || { log "VLSEG_BIN=$VLSEG_BIN is not an executable"; return 1; }
        echo "$VLSEG_BIN"
        return 0
    fi
    local bin="$VLSEG_ROOT/.build/release/vlseg"
    if [[ ! -x $bin ]] || [[ -n $(find "$VLSEG_ROOT/Sources" "$VLSEG_ROOT/Package.swift" -newer "$bin" -print -quit 2>/dev/null) ]]; then
        log "building vlseg (release)"
        vlseg_build_release >/dev/null
    fi
    echo "$bin"
}

# mpirun flags every launch needs: root permission when root, no core binding (ranks run
# several threads), oversubscription when ranks outnumber cores, and yielding when ranks fill them.
vlseg_mpirun_flags() {
    local np=$1 cores flags=(--bind-to none)
    cores=$(nproc)
    [[ -n ${OPENBLAS_CORETYPE:-} ]] && flags+=(-x OPENBLAS_CORETYPE)
    [[ -n ${OPENBLAS_THREAD_TIMEOUT:-} ]] && flags+=(-x OPENBLAS_THREAD_TIMEOUT)
    [[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
    if ((np > cores)); then flags+=(--oversubscribe); fi
    if ((np >= cores)); then flags+=(--mca mpi_yield_when_idle 1); fi
    printf '%s\n' "${flags[@]}"
}
