#!/usr/bin/env bash
# Side by side, on this machine: the MLP, CNN and transformer steps of benches/step.rs in
# PyTorch (CPU autocast) and in burn-mixed (Mixed<Autodiff<Flex>>, host kernels on), in
# absolute milliseconds and as burn-mixed / PyTorch, with each side's product GFLOP/s
# (linear, convolution and attention products of the step, counted in
# scripts/pytorch_step.py) and their fraction of a bf16 peak (PEAK_GFLOPS, default 6900:
# AMX's tdpbf16ps on this project's 2-core CPU, 3.45 TFLOP/s per core; see
# docs/host-fast-path.md for how it was measured).
#
# ROUNDS=n (default 3) alternates the two sides n times and reports medians: absolute times
# on a shared machine move by up to 30% from one minute to the next.
#
# The environment reaches both sides (the header prints GLIBC_TUNABLES, malloc's
# settings).
#
# Not part of CI: it installs PyTorch from PyPI into a virtual environment (PyPI's Linux
# wheel brings the CUDA libraries along: 5.4 GB installed; VENV=path reuses one).
# Usage: scripts/compare-pytorch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-target/pytorch-venv}
rounds=${ROUNDS:-3}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/pip" install --quiet torch numpy
cargo bench --bench step --no-run 2>/dev/null
out=$(mktemp -d)
echo "raw results (the bench's tables with peak memory, PyTorch's JSON): $out" >&2
for round in $(seq "$rounds"); do
    echo "== round $round of $rounds" >&2
    "$venv/bin/python" scripts/pytorch_step.py > "$out/torch-$round.json"
    cargo bench --bench step -- flex 2>/dev/null | sed -n '/^table/,$p' > "$out/burn-$round.txt"
done
PEAK_GFLOPS=${PEAK_GFLOPS:-6900} python3 - "$out" "$rounds" <<'PY'
import json, os, re, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])
peak = float(os.environ["PEAK_GFLOPS"])
tables = {"flex mlp 16x256 b2048": "mlp", "flex cnn 16ch 32px b16": "cnn", "flex transformer w128 4x128": "transformer"}
torch_runs = [json.load(open(f"{out}/torch-{r}.json")) for r in range(1, rounds + 1)]
burn = {}
for r in range(1, rounds + 1):
    for line in open(f"{out}/burn-{r}.txt"):
        for table, model in tables.items():
            m = re.match(re.escape(table) + r"\s+(\S+)\s+([0-9.]+)ms", line)
            if m:
                burn.setdefault((model, m.group(1)), []).append(float(m.group(2)) / 1e3)
print(f"PyTorch {torch_runs[0]['torch']} ({torch_runs[0]['threads']} threads) and burn-mixed, medians of {rounds} "
      f"alternations; GFLOP/s of the step's products, % of a {peak:.0f} GFLOP/s bf16 peak")
print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r} (both sides)")
print(f"{'model':<12} {'precision':<11} {'burn-mixed':>11} {'PyTorch':>10} {'burn/torch':>10} "
      f"{'burn GFLOP/s':>13} {'%peak':>6} {'torch GFLOP/s':>14} {'%peak':>6}")
for model in ["mlp", "cnn", "transformer"]:
    flops = torch_runs[0]["models"][model]["product_flops"]
    for precision in torch_runs[0]["models"][model]["seconds"]:
        t = statistics.median(run["models"][model]["seconds"][precision] for run in torch_runs)
        b = statistics.median(burn.get((model, precision), [float("nan")]))
        half = precision != "32-true"
        pct = lambda s: f"{100 * flops / s / 1e9 / peak:5.1f}%" if half else "     -"
        print(f"{model:<12} {precision:<11} {b * 1e3:9.2f}ms {t * 1e3:8.2f}ms {b / t:10.3f} "
              f"{flops / b / 1e9:13.1f} {pct(b)} {flops / t / 1e9:14.1f} {pct(t)}")
PY
