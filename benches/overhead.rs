//! The cost of `Mixed`'s own machinery, each against its baseline in the same run:
//!
//! - decorator overhead: the same step on `Autodiff<Flex>` and on `Mixed<Autodiff<Flex>>`
//!   in 32-true, for a small MLP and for a chain of cheap element-wise ops, where per-op
//!   dispatch cost shows most (goal: ratio <= 1.01);
//! - the autocast cast cache: a weight reused sixteen times in one bf16 step, cast once per
//!   step with the cache and once per use without.

mod workloads;

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::autocast::{AutocastGuard, set_cast_cache};
use criterion::{Criterion, criterion_group};

use workloads::models::{Mlp, Workload};
use workloads::{bench, print_summary};

/// Forward, loss and backward of a 4-layer 256-wide MLP on a batch of 32.
fn mlp_step<B: AutodiffBackend>(mlp: &Mlp<B>) {
    drop(mlp.loss().backward());
}

/// Sixteen rounds of four element-wise ops on a 64x64 tensor, and their backward.
fn elementwise<B: AutodiffBackend>(x: &Tensor<B, 2>) {
    let mut h = x.clone().require_grad();
    for _ in 0..16 {
        h = (h.clone() * 1.01 + 0.5).tanh() - h * 0.25;
    }
    drop(h.sum().backward());
}

fn decorator_overhead(c: &mut Criterion) {
    type Bare = Autodiff<Flex>;
    type Wrapped = Mixed<Autodiff<Flex>>;
    let device = Default::default();
    let mut group = c.benchmark_group("overhead mlp 32-true");
    Bare::seed(&device, 7);
    let bare = Mlp::<Bare>::new(4, 256, 32, FloatDType::F32, &device);
    Wrapped::seed(&device, 7);
    let wrapped = Mlp::<Wrapped>::new(4, 256, 32, FloatDType::F32, &device);
    bench(&mut group, "overhead mlp 32-true", "autodiff<flex>", || mlp_step(&bare));
    bench(&mut group, "overhead mlp 32-true", "mixed<autodiff<flex>>", || mlp_step(&wrapped));
    group.finish();

    let mut group = c.benchmark_group("overhead elementwise 32-true");
    let xb = Tensor::<Bare, 2>::ones([64, 64], &device);
    let xw = Tensor::<Wrapped, 2>::ones([64, 64], &device);
    bench(&mut group, "overhead elementwise 32-true", "autodiff<flex>", || elementwise(&xb));
    bench(&mut group, "overhead elementwise 32-true", "mixed<autodiff<flex>>", || elementwise(&xw));
    group.finish();
}

fn cast_cache(c: &mut Criterion) {
    type A = Mixed<Autodiff<Flex>>;
    let device = Default::default();
    let w = Tensor::<A, 2>::random([256, 256], Distribution::Default, &device).require_grad();
    let x = Tensor::<A, 2>::random([64, 256], Distribution::Default, &device);
    let reuse = || {
        let _region = AutocastGuard::enable::<A>(&device, FloatDType::BF16).expect("flex computes in bf16");
        let mut h = x.clone();
        for _ in 0..16 {
            h = (h.matmul(w.clone()) * 0.05).tanh();
        }
        drop(h.sum().backward());
    };
    let table = "weight reused 16x bf16";
    let mut group = c.benchmark_group(table);
    group.sample_size(20);
    set_cast_cache(false);
    bench(&mut group, table, "no cast cache", reuse);
    set_cast_cache(true);
    bench(&mut group, table, "cast cache", reuse);
    group.finish();
}

fn benches(c: &mut Criterion) {
    decorator_overhead(c);
    cast_cache(c);
    print_summary();
}

criterion_group! {
    name = overhead_benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
// criterion_main!, with the calling thread joined to rayon's pool first (see
// `workloads::join_host_pool`).
fn main() {
    workloads::join_host_pool();
    overhead_benches();
    Criterion::default().configure_from_args().final_summary();
}
