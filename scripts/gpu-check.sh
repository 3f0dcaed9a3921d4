#!/usr/bin/env bash
# The prepared GPU check: the Cuda cross-backend tests and the compute-bound transformer
# bench (benches/gpu.rs) on Mixed<Autodiff<Cuda>>, ending with a table of step times, peak
# pool memory and ratios to 32-true.
#
#   scripts/gpu-check.sh build   build here (needs cargo and the registry, not a GPU), put
#                                the stripped binaries in gpu-check/bin and pack them into
#                                gpu-check/bundle.tgz (~26 MB: the one file to carry)
#   scripts/gpu-check.sh run     run those binaries, unpacking the bundle if needed (needs
#                                an NVIDIA driver, not cargo); the output also goes to
#                                gpu-check/report.txt
#   scripts/gpu-check.sh         both, on a machine that has cargo and a GPU
#
# The GPU machine has neither internet nor a cargo registry, so the usual path is `build`
# on the development machine, then `run` there with gpu-check/ carried along. Budget: the
# run takes about 5 minutes on one H200 (tests ~1, bench ~4 with kernel autotuning); it
# stops itself after GPU_CHECK_TIMEOUT seconds (default 450).
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-check

build() {
    # One build of one feature set: the workspace's default backends plus Cuda. CUDA's
    # libraries are loaded at run time, so this compiles and links without a CUDA toolkit.
    local features=burn-mixed/cuda,backend-tests/cuda
    cargo build --release --workspace --features "$features" --benches --tests
    mkdir -p "$out/bin"
    cargo build --release --workspace --features "$features" --benches --tests --message-format=json-render-diagnostics \
        | python3 -c '
import json, shutil, subprocess, sys
wanted = {"backends", "gpu"}
for line in sys.stdin:
    msg = json.loads(line)
    exe = msg.get("executable")
    name = msg.get("target", {}).get("name")
    if exe and name in wanted:
        dest = sys.argv[1] + "/" + name
        shutil.copy(exe, dest)
        subprocess.run(["strip", dest], check=True)
        wanted.discard(name)
        print("gpu-check: " + dest)
if wanted:
    sys.exit("gpu-check: missing binaries: " + ", ".join(sorted(wanted)))
' "$out/bin"
    tar czf "$out/bundle.tgz" -C "$out" bin
    du -h "$out/bin"/* "$out/bundle.tgz"
}

run() {
    local limit=${GPU_CHECK_TIMEOUT:-450}
    [ -x "$out/bin/gpu" ] || [ ! -f "$out/bundle.tgz" ] || tar xzf "$out/bundle.tgz" -C "$out"
    [ -x "$out/bin/backends" ] && [ -x "$out/bin/gpu" ] || { echo "gpu-check: run '$0 build' first" >&2; exit 1; }
    command -v nvidia-smi >/dev/null || { echo "gpu-check: no NVIDIA driver here (nvidia-smi not found)" >&2; exit 1; }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    # CubeCL compiles kernels at run time with NVRTC; images that ship CUDA as Python wheels
    # keep libnvrtc outside the loader's path.
    if ! ldconfig -p | grep -q libnvrtc; then
        local dir
        for dir in $(find / -xdev -name 'libnvrtc.so*' -printf '%h\n' 2>/dev/null | sort -u); do
            LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        done
        export LD_LIBRARY_PATH
    fi
    local tests=0 bench=0
    {
        echo "== Cuda cross-backend tests (backend-tests, cuda:: only)"
        timeout 150 "$out/bin/backends" cuda:: --test-threads 1 || tests=$?
        echo "== transformer block w2048, 8x1024 tokens, Mixed<Autodiff<Cuda>>"
        # criterion writes its reports under CRITERION_HOME; keep them with the report.
        CRITERION_HOME="$out/criterion" timeout $((limit - 150)) "$out/bin/gpu" --bench || bench=$?
        echo "== gpu-check: tests exit $tests, bench exit $bench"
    } 2>&1 | tee "$out/report.txt"
    grep -q "tests exit 0, bench exit 0" "$out/report.txt"
}

case "${1:-all}" in
    build) build ;;
    run) run ;;
    all) build && run ;;
    *) echo "usage: $0 [build|run]" >&2; exit 2 ;;
esac
