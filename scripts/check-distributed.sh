#!/usr/bin/env bash
# The `distributed` feature's own build: it cannot share `scripts/test.sh`'s feature set,
# because under Burn's `distributed` feature `Autodiff<Flex>` and `Autodiff<NdArray>` are
# no longer autodiff backends (they do not implement `DistributedBackend`). A second,
# separate build of Burn (Wgpu only), so kept out of the default test command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p burn-mixed --no-default-features --features wgpu,distributed --test distributed "$@"
