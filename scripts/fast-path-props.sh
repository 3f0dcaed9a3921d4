#!/usr/bin/env bash
# A long run of the host fast path's property-based differential tests
# (tests/fast_path/): many more cases than CI's, from a fresh seed unless one is given.
#
#   scripts/fast-path-props.sh                 # 2000 cases per property, a random seed
#   PROPTEST_CASES=10000 scripts/fast-path-props.sh
#   PROPTEST_RNG_SEED=42 scripts/fast-path-props.sh   # replay a seed
#
# Builds the same release test binary as the test command (scripts/test.sh), so it reuses
# that build. The seed is printed first: a failure names its minimal case, and the seed
# replays the run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
echo "== fast-path properties: PROPTEST_CASES=$PROPTEST_CASES PROPTEST_RNG_SEED=$PROPTEST_RNG_SEED"
start=$(date +%s)
cargo test --release --workspace --test fast_path -- --nocapture --test-threads=1 "$@"
echo "== done in $(( $(date +%s) - start )) s"
