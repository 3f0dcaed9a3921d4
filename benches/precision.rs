//! Training-step time and peak memory per precision on `Mixed<Autodiff<Flex>>`, and the
//! saving of autocast's cast cache, each measured against its baseline in one run.
//!
//! Peak memory comes from a counting global allocator (Flex keeps tensors in host memory),
//! measured over one forward + backward of an activation-heavy MLP, and printed as bytes
//! and as a ratio to 32-true before the timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::{Autodiff, Flex};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, FloatDType, Tensor};
use burn_mixed::Mixed;
use burn_mixed::autocast::{AutocastGuard, set_cast_cache};
use criterion::{Criterion, criterion_group, criterion_main};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

type A = Mixed<Autodiff<Flex>>;

/// Deep and narrow with a large batch, so activations dominate, and a small head, as a
/// classifier has (the loss, in f32 under every precision, is over batch x 16 logits).
struct Mlp {
    layers: Vec<Linear<A>>,
    head: Linear<A>,
    x: Tensor<A, 2>,
}

impl Mlp {
    fn new(param_dtype: FloatDType) -> Self {
        let device = Default::default();
        A::seed(&device, 1);
        let layers = (0..6)
            .map(|_| {
                let l = LinearConfig::new(256, 256).init::<A>(&device);
                burn_mixed::convert::convert_module(l, param_dtype)
            })
            .collect();
        let head = burn_mixed::convert::convert_module(LinearConfig::new(256, 16).init::<A>(&device), param_dtype);
        let x = Tensor::<A, 2>::random([4096, 256], Distribution::Default, &device).cast(param_dtype);
        Self { layers, head, x }
    }

    fn step(&self) {
        let mut h = self.x.clone();
        for layer in &self.layers {
            h = Relu::new().forward(layer.forward(h));
        }
        let grads = self.head.forward(h).powi_scalar(2).mean().backward();
        drop(grads);
    }
}

/// (name, parameter dtype, autocast dtype)
const PRECISIONS: [(&str, FloatDType, Option<FloatDType>); 4] = [
    ("32-true", FloatDType::F32, None),
    ("bf16-mixed", FloatDType::F32, Some(FloatDType::BF16)),
    ("16-mixed", FloatDType::F32, Some(FloatDType::F16)),
    ("16-true", FloatDType::F16, None),
];

fn run(mlp: &Mlp, autocast: Option<FloatDType>) {
    let device = Default::default();
    let _region = autocast.map(|d| AutocastGuard::enable::<A>(&device, d).expect("flex has both halves"));
    mlp.step();
}

fn peak_bytes(mlp: &Mlp, autocast: Option<FloatDType>) -> usize {
    run(mlp, autocast); // warm-up: lazy initialisation and allocator pools
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    run(mlp, autocast);
    PEAK.load(Ordering::Relaxed) - base
}

fn bench(c: &mut Criterion) {
    let models: Vec<_> = PRECISIONS.iter().map(|(_, p, _)| Mlp::new(*p)).collect();
    let peaks: Vec<_> = models.iter().zip(PRECISIONS).map(|(m, (_, _, a))| peak_bytes(m, a)).collect();
    println!("peak bytes of one training step (6x256 MLP + 16-wide head, batch 4096), Mixed<Autodiff<Flex>>:");
    for ((name, _, _), peak) in PRECISIONS.iter().zip(&peaks) {
        println!("  {name:>10}: {peak:>11} bytes  ratio to 32-true {:.3}", *peak as f64 / peaks[0] as f64);
    }

    let mut group = c.benchmark_group("mlp_step_by_precision_flex");
    group.sample_size(10);
    for ((name, _, autocast), mlp) in PRECISIONS.iter().zip(&models) {
        group.bench_function(*name, |b| b.iter(|| run(mlp, *autocast)));
    }
    group.finish();

    // A weight reused in a loop: one cast per forward pass with the cache, one per use
    // without.
    let device = Default::default();
    let w = Tensor::<A, 2>::random([256, 256], Distribution::Default, &device).require_grad();
    let x = Tensor::<A, 2>::random([64, 256], Distribution::Default, &device);
    let reuse = || {
        let _region = AutocastGuard::enable::<A>(&device, FloatDType::BF16).expect("bf16");
        let mut h = x.clone();
        for _ in 0..16 {
            h = (h.matmul(w.clone()) * 0.05).tanh();
        }
        drop(h.sum().backward());
    };
    let mut group = c.benchmark_group("weight_reused_16x_bf16");
    group.sample_size(20);
    set_cast_cache(false);
    group.bench_function("no cast cache", |b| b.iter(reuse));
    set_cast_cache(true);
    group.bench_function("cast cache", |b| b.iter(reuse));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
