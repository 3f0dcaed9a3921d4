//! The GPU check's bench (`scripts/gpu-check.sh`): one transformer block large enough to be
//! compute-bound (width 2048, 16 heads, 8 sequences of 1024 tokens) on
//! `Mixed<Autodiff<Cuda>>` under 32-true, bf16-mixed and 16-mixed, with the peak of the
//! CUDA memory pools per step, and their ratios to 32-true.
//!
//! `BURN_MIXED_GPU_SEQ` shortens the sequences (e.g. for a smaller card).

mod workloads;

use std::time::Duration;

use burn::backend::cuda::CudaDevice;
use burn::backend::{Autodiff, Cuda};
use burn::cubecl::cuda::CudaRuntime;
use burn::tensor::backend::Backend;
use burn_mixed::{Mixed, Precision};
use criterion::{Criterion, criterion_group, criterion_main};

use workloads::memory::{CountingAlloc, device_peak};
use workloads::models::TransformerBlock;
use workloads::{bench, print_summary, record_peak, runnable, step};

// The host allocator is counted too (unused here): `workloads` is shared with the Flex benches.
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

type G = Mixed<Autodiff<Cuda>>;

fn benches(c: &mut Criterion) {
    let device = CudaDevice::default();
    let seq = std::env::var("BURN_MIXED_GPU_SEQ").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let table = format!("cuda transformer w2048 8x{seq}");
    let sync = || <G as Backend>::sync(&device).expect("sync");
    let precisions = [Precision::True32, Precision::MixedBf16, Precision::Mixed16];
    let mut group = c.benchmark_group(&table);
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for precision in runnable::<G>(&precisions, &device) {
        G::seed(&device, 1);
        let model = TransformerBlock::<G>::new(2048, 16, 8, seq, precision.param_dtype(), &device);
        let run = || step(&model, precision, &device);
        run(); // kernel compilation and autotuning
        let column = precision.to_string();
        record_peak(&table, &column, device_peak::<CudaRuntime>(&device, sync, run));
        bench(&mut group, &table, &column, run);
    }
    group.finish();
    print_summary();
}

criterion_group!(gpu_benches, benches);
criterion_main!(gpu_benches);
