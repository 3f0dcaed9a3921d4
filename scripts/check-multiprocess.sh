#!/usr/bin/env bash
# Two processes on this machine joined by burn-collective's global all-reduce (a separate
# workspace: Burn's `collective` feature stays out of the main build). Uses ports 3777,
# 3800 and 3801, on all interfaces (burn-collective binds 0.0.0.0).
set -euo pipefail
cd "$(dirname "$0")/../multiprocess"
cargo run --release "$@"
