#!/usr/bin/env bash
# Training across processes (the multiprocess/ workspace): prepares the patched
# burn-collective, then builds and runs its tests, which start 2 and 3 processes on
# loopback (ports 4100-4832). Its own workspace, so that Burn's `collective` feature stays
# out of the main build; it shares the main target folder, so the dependencies both builds
# compile alike are compiled once. One test at a time: each starts several processes, and
# on 2 cores tests side by side would slow each other's collectives towards their limits.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/patch-collective.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cd multiprocess
cargo test --release "$@" -- --test-threads=1
