#!/usr/bin/env bash
# Builds burn-mixed the way a user's crate does, which the workspace's own builds cannot
# show: Burn with its default features on (ours turns them off), and a lock file resolved
# afresh from crates.io rather than our Cargo.lock. A throwaway crate depending on
# burn-mixed (by path) and on `burn = "=0.21.0"` with `train`, `wgpu` and `fusion` type-checks
# the user path: `Mixed<Autodiff<Wgpu>>`, `MixedPrecision::setup` on a `Linear` model and
# Adam, one step of a hand-written loop.
#
# Burn's defaults include burn-train's `sys-metrics`, which pulls `systemstat`; its 0.2.8
# release no longer compiles with burn-train 0.21.0 (`RefCell<Option<File>>` is not `Sync`
# in burn-train's cpu_temp.rs), so the lock is pinned to 0.2.7, as a user has to.
#
# Needs crates.io (a fresh resolution). Shares the target folder with the workspace
# (CARGO_TARGET_DIR, default ./target): the first run builds Burn with these features
# (minutes); later runs only check the small crate. Exits non-zero, naming the failed step.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

crate="$(mktemp -d "${TMPDIR:-/tmp}/burn-mixed-user-build.XXXXXX")"
trap 'rm -rf "$crate"' EXIT

# Runs "$@" as the step named $1; on failure, says which and stops the script.
step() {
    local name="$1"
    shift
    echo "check-user-build: $name: $*" >&2
    if ! "$@"; then
        echo "check-user-build: FAILED at step '$name' (command: $*)" >&2
        exit 1
    fi
}

mkdir -p "$crate/src"
# `[workspace]`: the crate stands alone even if the temp folder lies inside another workspace.
cat >"$crate/Cargo.toml" <<EOF
[package]
name = "burn-mixed-user-build"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dependencies]
burn = { version = "=0.21.0", features = ["train", "wgpu", "fusion"] }
burn-mixed = { path = "$repo" }
EOF

cat >"$crate/src/main.rs" <<'EOF'
use burn::backend::{Autodiff, Wgpu};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn_mixed::{Mixed, MixedPrecision, Precision, Prepared};

type Train = Mixed<Autodiff<Wgpu>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let model: Linear<Train> = LinearConfig::new(4, 2).init(&device);
    let precision = Precision::resolve(None)?;
    let Prepared { mut model, mut optimizer, .. } =
        MixedPrecision::new(precision).setup::<Train, _, _>(&device, model, AdamConfig::new().init())?;
    let x = Tensor::<Train, 2>::ones([3, 4], &device);
    let grads = model.run(|net| GradientsParams::from_grads(net.forward(x).powi_scalar(2).mean().backward(), net))?;
    model = optimizer.step(1e-3, model, grads);
    println!("{:?}", model.module().weight.dims());
    Ok(())
}
EOF

cd "$crate"
step "resolve a fresh lock file" cargo generate-lockfile
if grep -q '^name = "systemstat"$' Cargo.lock; then
    step "pin systemstat to 0.2.7" cargo update -p systemstat --precise 0.2.7
fi
step "cargo check (Burn's default features, Mixed<Autodiff<Wgpu>>)" cargo check
echo "check-user-build: ok" >&2
