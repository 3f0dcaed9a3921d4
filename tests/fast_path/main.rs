//! Property-based differential tests of the host fast path (`burn_mixed::kernels`): every
//! op it takes, on shapes and layouts drawn by proptest, against Flex's own kernels (the
//! fast path switched off) and an f64 reference, in both autodiff layerings
//! (`Mixed<Autodiff<Flex>>`, `Autodiff<Mixed<Flex>>`) and both half dtypes. See `oracle`
//! for what a case must satisfy.
//!
//! CI runs each property with a fixed seed and the case count given here, at every level
//! of the host kernels (native, with AMX's tiles where the CPU has them, then
//! `MIXED_HOST_LANES=avx512bf16` for the products and `=avx512` and `=0` for everything,
//! in child processes). A long run: `scripts/fast-path-props.sh` (`PROPTEST_CASES`, a fresh seed).
//! Minimal cases the properties found are kept as named tests in `regressions`.

#![cfg(feature = "flex")]

#[path = "../kernels_support/mod.rs"]
mod kernels_support;

mod conv;
mod elementwise;
mod layout;
mod oracle;
mod pool;
mod products;
mod regressions;
mod rows;

use oracle::property;

#[test]
fn matmul_agrees_with_flex() {
    property("matmul", 800, products::matmul(), |c| c.matmul + c.linear);
}

#[test]
fn linear_agrees_with_flex() {
    property("linear", 800, products::linear_layer(), |c| c.linear);
}

/// Whether this CPU has AMX tiles for the host kernels; says so when it has not.
fn tiles_here() -> bool {
    use burn_mixed::kernels::{HostIsa, host_isa};
    let here = host_isa() >= HostIsa::Amx;
    if !here {
        println!("skipped: the host kernels run at {} here, without AMX tiles", host_isa());
    }
    here
}

/// bf16 and f16 products on AMX tiles (where this CPU has them: the properties above take
/// them for every half case the tiles accept, and this one fails if none did).
#[test]
fn tile_products_agree_with_flex() {
    if !tiles_here() {
        return;
    }
    property("tile products", 200, products::matmul(), |c| c.tile_products);
}

/// bf16 and f16 convolutions (forward and both gradients) on AMX tiles, where this CPU has them:
/// fails if no case took them.
#[test]
fn tile_convs_agree_with_flex() {
    if !tiles_here() {
        return;
    }
    property("tile convs", 150, conv::conv2d_case(), |c| c.tile_convs);
}

#[test]
fn add_and_mul_agree_with_flex() {
    property("add/mul", 800, elementwise::binary(), |c| c.binary);
}

#[test]
fn relu_and_gelu_agree_with_flex() {
    property("relu/gelu", 500, elementwise::unary(), |c| c.relu + c.gelu);
}

#[test]
fn casts_agree_with_flex() {
    property("casts", 500, elementwise::cast(), |c| c.cast);
}

#[test]
fn attention_agrees_with_flex() {
    property("attention", 800, rows::attention_case(), |c| c.softmax);
}

#[test]
fn layer_norm_agrees_with_flex() {
    property("layer norm", 500, rows::layer_norm(), |c| c.layer_norm);
}

#[test]
fn avg_pool2d_agrees_with_flex() {
    property("avg pool2d", 300, pool::avg_pool2d_case(), |c| c.avg_pool2d);
}

#[test]
fn conv2d_agrees_with_flex() {
    property("conv2d", 300, conv::conv2d_case(), |c| c.conv2d);
}

/// The products and convolutions again where bf16 has AVX512-BF16 but no AMX tiles
/// (gemmkit's `vdpbf16ps` kernel, its f32 one for f16, and convolutions on Flex's f32
/// kernels; below that level bf16 products run on f32 copies, which the next test covers).
#[test]
fn products_without_tiles_agree_with_flex() {
    kernels_support::rerun_at_level("avx512bf16", &["matmul_agrees_with_flex", "linear_agrees_with_flex", "conv2d_agrees_with_flex"]);
}

/// Every property again on the loops a CPU without AVX-512 runs, and on AVX-512 without
/// its bf16 conversion (the loop level is read once per process).
#[test]
fn every_property_at_every_loop_level() {
    kernels_support::rerun_without_lanes(&[
        "matmul_agrees_with_flex",
        "linear_agrees_with_flex",
        "add_and_mul_agree_with_flex",
        "relu_and_gelu_agree_with_flex",
        "casts_agree_with_flex",
        "attention_agrees_with_flex",
        "layer_norm_agrees_with_flex",
        "conv2d_agrees_with_flex",
        "avg_pool2d_agrees_with_flex",
        "regressions::signalling_nans_widen_to_quiet_nans",
        "regressions::softmax_backward_rows_sum_to_zero",
        "regressions::casts_round_near_ties_correctly_on_every_layout",
    ]);
}
