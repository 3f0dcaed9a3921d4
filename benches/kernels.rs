//! The ops of a half-precision training step, one at a time, on `Mixed<Flex>` with the
//! host fast path off (Flex's own kernels) and on, next to f32: time per call and
//! GFLOP/s (products) or GB/s (element-wise ops: bytes read and written), measured in one
//! run. Shapes are the MLP step's: activations x = 2048 x 256, weight w = 256 x 256.

mod workloads;

use std::time::Duration;

use burn::backend::Flex;
use burn::tensor::activation::relu;
use burn::tensor::module::{attention, linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::kernels::with_host_kernels;
use criterion::{Criterion, criterion_group};

use workloads::{bench, medians};

type M = Mixed<Flex>;

const ROWS: usize = 2048;
const WIDTH: usize = 256;

/// How much work one call does, for the throughput column.
#[derive(Clone, Copy)]
enum Work {
    Flops(f64),
    Bytes(f64),
}

fn size(dtype: FloatDType) -> f64 {
    match dtype {
        FloatDType::F32 => 4.0,
        _ => 2.0,
    }
}

fn random(shape: [usize; 2], dtype: FloatDType) -> Tensor<M, 2> {
    Tensor::<M, 2>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default()).cast(dtype)
}

/// The configurations each op is measured in: dtype, and whether the fast path is on.
const CONFIGS: [(FloatDType, bool, &str); 5] = [
    (FloatDType::F32, true, "f32"),
    (FloatDType::BF16, false, "bf16 flex"),
    (FloatDType::BF16, true, "bf16 fast"),
    (FloatDType::F16, false, "f16 flex"),
    (FloatDType::F16, true, "f16 fast"),
];

fn benches(c: &mut Criterion) {
    let (n, k) = (ROWS as f64, WIDTH as f64);
    let mut works = Vec::new();
    let mut op = |name: &str, work: &dyn Fn(FloatDType) -> Work, run: &dyn Fn(FloatDType) -> Box<dyn Fn()>| {
        let mut group = c.benchmark_group(name);
        group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
        for (dtype, fast, column) in CONFIGS {
            let call = run(dtype);
            bench(&mut group, name, column, || with_host_kernels(fast, &call));
            works.push((name.to_string(), column.to_string(), work(dtype)));
        }
        group.finish();
    };
    op("matmul x @ w", &|_| Work::Flops(2.0 * n * k * k), &|d| {
        let (x, w) = (random([ROWS, WIDTH], d), random([WIDTH, WIDTH], d));
        Box::new(move || drop(x.clone().matmul(w.clone())))
    });
    op("x^T @ g (weight grad)", &|_| Work::Flops(2.0 * n * k * k), &|d| {
        let (x, g) = (random([ROWS, WIDTH], d), random([ROWS, WIDTH], d));
        Box::new(move || drop(x.clone().transpose().matmul(g.clone())))
    });
    op("linear x @ w + b", &|_| Work::Flops(2.0 * n * k * k), &|d| {
        let (x, w) = (random([ROWS, WIDTH], d), random([WIDTH, WIDTH], d));
        let b = random([1, WIDTH], d).reshape([WIDTH]);
        Box::new(move || drop(linear(x.clone(), w.clone(), Some(b.clone()))))
    });
    op("relu", &|d| Work::Bytes(2.0 * n * k * size(d)), &|d| {
        let x = random([ROWS, WIDTH], d);
        Box::new(move || drop(relu(x.clone())))
    });
    op("add a broadcast bias x + b", &|d| Work::Bytes(2.0 * n * k * size(d)), &|d| {
        let (x, b) = (random([ROWS, WIDTH], d), random([1, WIDTH], d));
        Box::new(move || drop(x.clone() + b.clone()))
    });
    op("mul x * y", &|d| Work::Bytes(3.0 * n * k * size(d)), &|d| {
        let (x, y) = (random([ROWS, WIDTH], d), random([ROWS, WIDTH], d));
        Box::new(move || drop(x.clone() * y.clone()))
    });
    // From f32 to the column's dtype (f32: a copy, the baseline).
    op("cast from f32", &|d| Work::Bytes(n * k * (4.0 + size(d))), &|d| {
        let x = random([ROWS, WIDTH], FloatDType::F32);
        match d {
            FloatDType::F32 => Box::new(move || drop(x.clone() * 1.0)),
            _ => Box::new(move || drop(x.clone().cast(d))),
        }
    });
    op("cast to f32", &|d| Work::Bytes(n * k * (4.0 + size(d))), &|d| {
        let x = random([ROWS, WIDTH], d);
        match d {
            FloatDType::F32 => Box::new(move || drop(x.clone() * 1.0)),
            _ => Box::new(move || drop(x.clone().cast(FloatDType::F32))),
        }
    });
    op("linear bias grad (sum over rows)", &|d| Work::Bytes(n * k * size(d)), &|d| {
        let g = random([ROWS, WIDTH], d);
        Box::new(move || drop(<M as burn::tensor::ops::ModuleOps<M>>::linear_bias_backward(g.clone().into_primitive().tensor())))
    });

    // The transformer step's attention: [batch 4, heads 4, seq 128, head dim 32].
    op("attention 4x4x128x32", &|_| Work::Flops(4.0 * 16.0 * 128.0 * 128.0 * 32.0), &|d| {
        let qkv = || random([4 * 4 * 128, 32], d).reshape([4, 4, 128, 32]);
        let (q, k, v) = (qkv(), qkv(), qkv());
        Box::new(move || drop(attention(q.clone(), k.clone(), v.clone(), None, None, AttentionModuleOptions::default())))
    });

    println!("\n{:<34} {:>10} {:>10} {:>9} {:>12}", "op (x 2048x256, w 256x256)", "config", "time", "vs f32", "throughput");
    let measured = medians();
    for (table, column, work) in &works {
        let Some((_, _, nanos)) = measured.iter().find(|(t, c, _)| t == table && c == column) else { continue };
        let base = measured.iter().find(|(t, c, _)| t == table && c == "f32").map(|m| m.2).unwrap_or(*nanos);
        let throughput = match work {
            Work::Flops(f) => format!("{:.1} GFLOP/s", f / nanos),
            Work::Bytes(b) => format!("{:.1} GB/s", b / nanos),
        };
        let time = format!("{:.3} ms", nanos / 1e6);
        println!("{table:<34} {column:>10} {time:>10} {:>9.2} {throughput:>12}", nanos / base);
    }
}

criterion_group!(kernel_benches, benches);
// criterion_main!, with the calling thread joined to rayon's pool first (see
// `workloads::join_host_pool`).
fn main() {
    workloads::join_host_pool();
    kernel_benches();
    Criterion::default().configure_from_args().final_summary();
}
