#!/usr/bin/env bash
# Side by side, on this machine: the MLP training step of benches/step.rs in PyTorch (CPU
# autocast) and in burn-mixed (Mixed<Autodiff<Flex>>, host kernels on and off), each as
# ratios to its own 32-true measured in the same run.
#
# Not part of CI: it installs PyTorch from PyPI into a virtual environment (PyPI's Linux
# wheel brings the CUDA libraries along: 5.3 GB installed, measured 2026-11-29; VENV=path
# reuses one). Usage: scripts/compare-pytorch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-target/pytorch-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/pip" install --quiet torch numpy
echo "== PyTorch"
"$venv/bin/python" scripts/pytorch_step.py
echo
echo "== burn-mixed (the summary table at the end)"
cargo bench --bench step -- "flex mlp" 2>/dev/null | sed -n '/^table/,$p' | grep -E "^table|flex mlp"
