//! A prepared model's precision belongs to that model: it reaches the model's work on any
//! thread, and nothing else, and it is gone when the model and optimizer are dropped.
//!
//! Each scenario trains a small MLP for a few SGD steps and keeps a [`Trace`] of it: every
//! loss and every final parameter, as bits, and the loss scale after each step. "Unaffected"
//! means bit-identical traces.

use std::sync::Barrier;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, Relu};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Tensor};
use burn_mixed::autocast::{AutocastState, autocast_state};
use burn_mixed::{Mixed, MixedPrecision, Precision, RegionError};

use crate::support::uniform;

type Train<B> = Mixed<Autodiff<B>>;

const STEPS: usize = 3;
const LR: f64 = 0.05;

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    first: Linear<B>,
    second: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// The same weights on every backend and thread (no use of the backend's generator,
    /// which is process-wide).
    fn new(device: &B::Device) -> Self {
        let linear = |inputs: usize, outputs: usize, seed: u64| {
            let bound = 1.0 / (inputs as f32).sqrt();
            Linear {
                weight: Param::from_tensor(Tensor::from_data(uniform([inputs, outputs], seed, -bound, bound), device)),
                bias: Some(Param::from_tensor(Tensor::from_data(uniform([outputs], seed + 1, -bound, bound), device))),
            }
        };
        Self { first: linear(16, 32, 10), second: linear(32, 4, 20) }
    }

    fn loss(&self, step: usize, device: &B::Device) -> Tensor<B, 1> {
        let x = Tensor::<B, 2>::from_data(uniform([8, 16], 100 + step as u64, -1.0, 1.0), device);
        let y = Tensor::<B, 2>::from_data(uniform([8, 4], 200 + step as u64, -1.0, 1.0), device);
        let out = self.second.forward(Relu::new().forward(self.first.forward(x)));
        (out - y).powi_scalar(2).mean()
    }
}

/// What a run produced, bit for bit.
#[derive(Debug, PartialEq)]
pub struct Trace {
    losses: Vec<u32>,
    params: Vec<Vec<u8>>,
    scales: Vec<f32>,
    /// The dtype of the first layer's output at the first step (what autocast did).
    first_output: DType,
}

struct ParamBytes(Vec<Vec<u8>>);

impl<B: Backend> ModuleVisitor<B> for ParamBytes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().into_data().as_bytes().to_vec());
    }
}

fn param_bytes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<u8>> {
    let mut bytes = ParamBytes(Vec::new());
    module.visit(&mut bytes);
    bytes.0
}

fn loss_bits<B: Backend>(loss: &Tensor<B, 1>) -> u32 {
    loss.clone().cast(FloatDType::F32).into_data().to_vec::<f32>().expect("f32 loss")[0].to_bits()
}

fn first_output_dtype<B: Backend>(model: &Mlp<B>, device: &B::Device) -> DType {
    model.first.forward(Tensor::<B, 2>::zeros([1, 16], device)).dtype()
}

/// A model nobody prepared, on any autodiff backend (bare `Autodiff<B>` or `Mixed<..>`),
/// trained with plain SGD. `pause` runs twice a step: between forward and backward, and
/// before the optimizer step.
pub fn train_plain<A: AutodiffBackend>(device: &A::Device, pause: &(dyn Fn() + Sync)) -> Trace {
    let mut model = Mlp::<A>::new(device);
    let mut optim = SgdConfig::new().init::<A, Mlp<A>>();
    let first_output = first_output_dtype(&model, device);
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let loss = model.loss(step, device);
        losses.push(loss_bits(&loss));
        pause();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        pause();
        model = optim.step(LR, model, grads);
    }
    Trace { losses, params: param_bytes(&model), scales: vec![1.0; STEPS], first_output }
}

/// The same training, prepared for `precision`, as a hand-written loop: forward and
/// backward inside the model's region.
pub fn train_prepared<B: Backend>(device: &B::Device, precision: Precision, pause: &(dyn Fn() + Sync)) -> Trace {
    let prepared = MixedPrecision::new(precision)
        .setup::<Train<B>, _, _>(device, Mlp::new(device), SgdConfig::new().init())
        .expect("the caller picked a supported precision");
    let (mut model, mut optim, scaler) = (prepared.model, prepared.optimizer, prepared.scaler);
    let first_output = model.run(|m| first_output_dtype(m, device)).expect("no other region");
    let (mut losses, mut scales) = (Vec::new(), Vec::new());
    for step in 0..STEPS {
        let grads = model
            .run(|m| {
                let loss = m.loss(step, device);
                losses.push(loss_bits(&loss));
                pause();
                GradientsParams::from_grads(loss.backward(), m)
            })
            .expect("no other region");
        pause();
        model = optim.step(LR, model, grads);
        scales.push(scaler.as_ref().map_or(1.0, |s| s.scale()));
    }
    Trace { losses, params: param_bytes(&model), scales, first_output }
}

/// The mixed precisions `B` can run on `device`.
fn mixed_precisions<B: Backend>(device: &B::Device) -> Vec<Precision> {
    [Precision::MixedBf16, Precision::Mixed16].into_iter().filter(|p| MixedPrecision::new(*p).resolve::<Train<B>>(device).is_ok()).collect()
}

/// Runs `a` and `b` at the same time on two threads, in lock step: both are inside their
/// regions between forward and backward together, so shared state would show.
fn side_by_side(a: impl FnOnce(&(dyn Fn() + Sync)) -> Trace + Send, b: impl FnOnce(&(dyn Fn() + Sync)) -> Trace + Send) -> (Trace, Trace) {
    let barrier = Barrier::new(2);
    let pause = || {
        barrier.wait();
    };
    std::thread::scope(|s| {
        let other = s.spawn(|| b(&pause));
        let first = a(&pause);
        (first, other.join().expect("the second thread trained"))
    })
}

fn no_pause() {}

/// After a 16-mixed or bf16-mixed model, its optimizer and its scaler are dropped, a new,
/// unprepared model on the same device trains bit-identically to the bare backend.
pub fn dropped_setup_leaves_no_trace<B: Backend>(device: &B::Device) {
    let bare = train_plain::<Autodiff<B>>(device, &no_pause);
    assert_eq!(bare.first_output, DType::F32);
    for precision in mixed_precisions::<B>(device) {
        let mixed = train_prepared::<B>(device, precision, &no_pause);
        assert_eq!(mixed.first_output, DType::from(precision.compute_dtype()), "{precision} autocasts its model");
        assert_ne!(mixed.losses, bare.losses, "{precision} changed the arithmetic of its own model");
        if precision == Precision::Mixed16 {
            assert_eq!(mixed.scales, vec![65536.0; STEPS], "16-mixed scaled its own backward passes");
        }
        // Everything of that setup is dropped by now.
        assert_eq!(autocast_state(), AutocastState::Outside);
        let after = train_plain::<Train<B>>(device, &no_pause);
        assert_eq!(after, bare, "a new model after a dropped {precision} setup");
    }
}

/// A plain model in one thread while a mixed one trains in another; then two models of
/// different precisions side by side: each bit-identical to its solo run, scales included.
pub fn threads_are_isolated<B: Backend>(device: &B::Device) {
    let plain_solo = train_plain::<Train<B>>(device, &no_pause);
    let precisions = mixed_precisions::<B>(device);
    let Some(&first) = precisions.first() else {
        // No half type (NdArray): a 32-true model next to a plain one.
        let prepared_solo = train_prepared::<B>(device, Precision::True32, &no_pause);
        let (prepared, plain) = side_by_side(|p| train_prepared::<B>(device, Precision::True32, p), |p| train_plain::<Train<B>>(device, p));
        assert_eq!(prepared, prepared_solo);
        assert_eq!(plain, plain_solo);
        return;
    };
    let first_solo = train_prepared::<B>(device, first, &no_pause);
    let (mixed, plain) = side_by_side(|p| train_prepared::<B>(device, first, p), |p| train_plain::<Train<B>>(device, p));
    assert_eq!(plain, plain_solo, "a plain model next to a {first} one");
    assert_eq!(mixed, first_solo, "the {first} model next to a plain one");

    // Two precisions side by side (bf16-mixed and 16-mixed where both run; otherwise the
    // one half precision next to 32-true).
    let second = precisions.get(1).copied().unwrap_or(Precision::True32);
    let second_solo = train_prepared::<B>(device, second, &no_pause);
    let (a, b) = side_by_side(|p| train_prepared::<B>(device, first, p), |p| train_prepared::<B>(device, second, p));
    assert_eq!(a, first_solo, "{first} next to {second}");
    assert_eq!(b, second_solo, "{second} next to {first}");
}

/// The gradient of `sum(x)` for a fresh leaf `x` of two ones: the loss scale the current
/// thread's backward applied.
fn backward_scale<B: Backend>(device: &B::Device) -> f32 {
    let x = Tensor::<Train<B>, 1>::ones([2], device).require_grad();
    let grads = x.clone().sum().backward();
    x.grad(&grads).expect("leaf gradient").into_data().to_vec::<f32>().expect("f32")[0]
}

/// Nested regions: a second scaler inside a region that has one is an error; a shared
/// scaler, or a region without one, nests and keeps the enclosing scaler for backward.
pub fn conflicting_scalers_are_an_error<B: Backend>(device: &B::Device) {
    if !mixed_precisions::<B>(device).contains(&Precision::Mixed16) {
        return;
    }
    let setup = |mp: &MixedPrecision| mp.setup::<Train<B>, _, _>(device, Mlp::new(device), SgdConfig::new().init()).expect("f16 runs here");
    let mp = MixedPrecision::new(Precision::Mixed16);
    let (a, b) = (setup(&mp), setup(&mp));
    let scaler = a.scaler.clone().expect("16-mixed scales");
    let shared = setup(&mp.clone().with_shared_scaler(&scaler));
    let plain = setup(&MixedPrecision::new(Precision::True32));

    assert_eq!(backward_scale::<B>(device), 1.0, "no region: the loss is not scaled");
    let region = a.model.enter().expect("no other region");
    assert_eq!(backward_scale::<B>(device), 65536.0, "inside a 16-mixed region");
    let err = b.model.enter().err().expect("a second scaler inside the first one's region");
    assert_eq!(err, RegionError::ConflictingScaler { entering: Precision::Mixed16 });
    let message = err.to_string();
    assert!(message.contains("16-mixed") && message.contains("with_shared_scaler"), "{message}");
    assert_eq!(autocast_state(), AutocastState::Enabled(FloatDType::F16), "a refused region changes nothing");
    {
        let _shared = shared.model.enter().expect("the same scaler nests");
        assert_eq!(backward_scale::<B>(device), 65536.0);
    }
    {
        let _full = plain.model.enter().expect("a region without a scaler nests");
        assert_eq!(autocast_state(), AutocastState::Disabled, "32-true runs in full precision");
        assert_eq!(backward_scale::<B>(device), 65536.0, "the enclosing scaler still scales");
    }
    drop(region);
    assert_eq!(backward_scale::<B>(device), 1.0, "the region ended");
    assert_eq!(autocast_state(), AutocastState::Outside);
    let _b = b.model.enter().expect("alone, the second model's region opens");
    assert_eq!(backward_scale::<B>(device), 65536.0);
}

#[macro_export]
macro_rules! precision_tests {
    () => {
        #[test]
        fn precision_dropped_setup_leaves_no_trace() {
            $crate::precision::dropped_setup_leaves_no_trace::<B>(&device());
        }
        #[test]
        fn precision_threads_are_isolated() {
            $crate::precision::threads_are_isolated::<B>(&device());
        }
        #[test]
        fn precision_conflicting_scalers_are_an_error() {
            $crate::precision::conflicting_scalers_are_an_error::<B>(&device());
        }
    };
}
