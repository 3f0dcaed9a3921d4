//! Training-step time and peak memory per precision, on `Mixed<Autodiff<Flex>>` and (with
//! the `wgpu` feature) `Mixed<Autodiff<Wgpu>>`, for an activation-heavy MLP, a small CNN
//! and one transformer block. Every precision of a table runs in the same process, and the
//! summary at the end gives each one's ratio to 32-true.
//!
//! Memory: Flex counts host allocations (the counting allocator below); Wgpu reports the
//! bytes its memory pools reserved (see `workloads::memory`).

mod workloads;

use burn::backend::{Autodiff, Flex};
use burn::tensor::FloatDType;
use burn::tensor::backend::AutodiffBackend;
use burn_mixed::Mixed;
use burn_mixed::kernels::with_host_kernels;
use criterion::{Criterion, criterion_group};
use std::time::Duration;

use workloads::memory::{CountingAlloc, host_peak};
use workloads::models::{Cnn, Mlp, TransformerBlock, Workload};
use workloads::{PRECISIONS, bench, print_summary, record_peak, runnable, step};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Measures one model under every precision the backend runs: peak memory of one step
/// (after a warm-up step), then step time. With `host_kernels`, each half precision is
/// measured twice in the same run: with `Mixed`'s host fast path and without it (the inner
/// backend's own kernels, the "kernels off" column).
fn bench_model<B: AutodiffBackend, W: Workload<B>>(
    c: &mut Criterion,
    table: &str,
    device: &B::Device,
    peak: &dyn Fn(&dyn Fn()) -> u64,
    host_kernels: bool,
    build: impl Fn(FloatDType) -> W,
) {
    let mut group = c.benchmark_group(table);
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for precision in runnable::<B>(&PRECISIONS, device) {
        B::seed(device, 1);
        let model = build(precision.param_dtype());
        let half = precision.compute_dtype() != FloatDType::F32 && precision.compute_dtype() != FloatDType::F64;
        let switches: &[bool] = if host_kernels && half { &[false, true] } else { &[true] };
        for &kernels in switches {
            let run = || with_host_kernels(kernels, || step(&model, precision, device));
            run(); // lazy initialisation, kernel compilation, allocator pools
            let column = match kernels {
                true => precision.to_string(),
                false => format!("{precision} (kernels off)"),
            };
            record_peak(table, &column, peak(&run));
            bench(&mut group, table, &column, run);
        }
    }
    group.finish();
}

/// The three models, at sizes a 2-core CPU steps through in about a second at most.
/// `host_kernels`: the backend has `Mixed`'s host fast path, so compare it on and off.
fn bench_backend<B: AutodiffBackend>(
    c: &mut Criterion,
    backend: &str,
    device: &B::Device,
    peak: &dyn Fn(&dyn Fn()) -> u64,
    host_kernels: bool,
) {
    let k = host_kernels;
    bench_model::<B, _>(c, &format!("{backend} mlp 16x256 b2048"), device, peak, k, |d| Mlp::new(16, 256, 2048, d, device));
    bench_model::<B, _>(c, &format!("{backend} cnn 16ch 32px b16"), device, peak, k, |d| Cnn::new(16, 32, 16, d, device));
    bench_model::<B, _>(c, &format!("{backend} transformer w128 4x128"), device, peak, k, |d| {
        TransformerBlock::new(128, 4, 4, 128, d, device)
    });
}

fn benches(c: &mut Criterion) {
    bench_backend::<Mixed<Autodiff<Flex>>>(c, "flex", &Default::default(), &|f| host_peak(f), true);
    #[cfg(feature = "wgpu")]
    {
        use burn::backend::Wgpu;
        use burn::backend::wgpu::graphics::AutoGraphicsApi;
        use burn::backend::wgpu::{MemoryConfiguration, RuntimeOptions, WgpuDevice, WgpuRuntime, init_setup};
        type W = Mixed<Autodiff<Wgpu>>;
        let device = WgpuDevice::default();
        // One page per allocation, freed by a cleanup: the default sub-slicing pools keep
        // their small pages, which hides small models' allocations from the report.
        let options = RuntimeOptions { memory_config: MemoryConfiguration::ExclusivePages, ..Default::default() };
        init_setup::<AutoGraphicsApi>(&device, options);
        let sync = || <W as burn::tensor::backend::Backend>::sync(&device).expect("sync");
        let peak = |f: &dyn Fn()| workloads::memory::device_peak::<WgpuRuntime>(&device, sync, f);
        bench_backend::<W>(c, "wgpu", &device, &peak, false);
    }
    #[cfg(not(feature = "wgpu"))]
    println!(
        "WARNING: built without the wgpu feature, so the Wgpu step benches did not run (`cargo bench --workspace` enables it, as backend-tests does; or `cargo bench --features wgpu`)"
    );
    print_summary();
}

criterion_group!(step_benches, benches);
// criterion_main!, with the calling thread joined to rayon's pool first (see
// `workloads::join_host_pool`).
fn main() {
    workloads::join_host_pool();
    step_benches();
    Criterion::default().configure_from_args().final_summary();
}
