//! Autodiff: `Mixed<Autodiff<B>>` against `Autodiff<B>`.
//!
//! Gradients of every parameter of a small MLP and a small CNN, an optimizer step (which
//! runs on the inner backend, `Mixed<B>` on one side), `backward` through softmax /
//! log_softmax / cat / matmul on plain tensors, `detach`, `require_grad`, and the backend
//! metadata (`name`, `ad_enabled`, dtype support) that `Mixed` forwards.

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::tensor::activation::{gelu, log_softmax, relu, sigmoid, softmax};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, BoolStore, DType, Int, Tensor, TensorData};
use burn_mixed::Mixed;

use crate::support::{Outputs, bool_tensor, equivalent, float_tensor, int_tensor, uniform};

/// Three linear layers with relu between them.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    input: Linear<B>,
    hidden: Linear<B>,
    output: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// Zero-initialised (no RNG draw); [`fill_params`] gives it its values.
    pub fn new(device: &B::Device) -> Self {
        let layer = |d_in, d_out| LinearConfig::new(d_in, d_out).with_initializer(Initializer::Zeros).init(device);
        Self { input: layer(6, 16), hidden: layer(16, 16), output: layer(16, 3) }
    }

    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = relu(self.input.forward(x));
        let x = relu(self.hidden.forward(x));
        self.output.forward(x)
    }
}

/// conv -> relu -> max pool -> conv -> gelu -> adaptive avg pool -> linear.
#[derive(Module, Debug)]
pub struct Cnn<B: Backend> {
    conv1: Conv2d<B>,
    pool: MaxPool2d,
    conv2: Conv2d<B>,
    squeeze: AdaptiveAvgPool2d,
    head: Linear<B>,
}

impl<B: Backend> Cnn<B> {
    /// Zero-initialised (no RNG draw); [`fill_params`] gives it its values.
    pub fn new(device: &B::Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        Self {
            conv1: conv(2, 4),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            conv2: conv(4, 4),
            squeeze: AdaptiveAvgPool2dConfig::new([2, 2]).init(),
            head: LinearConfig::new(16, 3).with_initializer(Initializer::Zeros).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.squeeze.forward(gelu(self.conv2.forward(x)));
        self.head.forward(x.flatten(1, 3))
    }
}

/// Gives every float parameter deterministic values in `[-0.5, 0.5)`, seeded by `seed` and
/// the parameter's position, keeping its id and `require_grad`.
struct FillParams {
    seed: u64,
}

impl<B: Backend> ModuleMapper<B> for FillParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        self.seed += 1;
        let seed = self.seed;
        param.map(|tensor| {
            let data = uniform(tensor.dims(), seed, -0.5, 0.5);
            Tensor::from_data(data, &tensor.device()).set_require_grad(tensor.is_require_grad())
        })
    }
}

/// `module` with its parameters replaced as [`FillParams`] describes.
pub fn fill_params<B: Backend, M: Module<B>>(module: M, seed: u64) -> M {
    module.map(&mut FillParams { seed })
}

/// Records every float parameter's value, in visiting order.
struct RecordParams<'a> {
    label: &'a str,
    out: &'a mut Outputs,
    index: usize,
}

impl<B: Backend> ModuleVisitor<B> for RecordParams<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push(format!("{} parameter {}", self.label, self.index), param.val());
        self.index += 1;
    }
}

/// Records the gradient of every float parameter; a parameter without one fails the test.
struct RecordGrads<'a, A: AutodiffBackend> {
    grads: &'a A::Gradients,
    out: &'a mut Outputs,
    index: usize,
}

impl<A: AutodiffBackend> ModuleVisitor<A> for RecordGrads<'_, A> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        let grad = param.val().grad(self.grads).unwrap_or_else(|| panic!("parameter {} has no gradient", self.index));
        self.out.push(format!("gradient of parameter {}", self.index), grad);
        self.index += 1;
    }
}

fn record_params<B: Backend, M: Module<B>>(label: &str, module: &M, out: &mut Outputs) {
    module.visit(&mut RecordParams { label, out, index: 0 });
}

/// MLP: forward, MSE loss, every parameter's gradient, the input's gradient, then one SGD
/// step and the updated parameters.
pub fn autodiff_mlp<B: Backend>(device: &B::Device) {
    equivalent!("autodiff_mlp", device, mlp_scenario::<Autodiff<B>>());
}

/// The MLP scenario on any autodiff backend; see [`autodiff_mlp`].
pub fn mlp_scenario<A: AutodiffBackend>(device: &A::Device, out: &mut Outputs) {
    let model = fill_params(Mlp::<A>::new(device), 300);
    record_params("initial", &model, out);
    let x = float_tensor::<A, 2>(device, [8, 6], 301, -1.0, 1.0).require_grad();
    let target = float_tensor::<A, 2>(device, [8, 3], 302, -1.0, 1.0);
    let prediction = model.forward(x.clone());
    let loss = MseLoss::new().forward(prediction.clone(), target, Reduction::Mean);
    out.push("prediction", prediction);
    out.push("loss", loss.clone());

    let grads = loss.backward();
    model.visit(&mut RecordGrads::<A> { grads: &grads, out, index: 0 });
    out.push("input gradient", x.grad(&grads).expect("the input requires grad"));

    let grads = GradientsParams::from_grads(grads, &model);
    let mut optimizer = SgdConfig::new().init::<A, Mlp<A>>();
    let model = optimizer.step(0.1, model, grads);
    record_params("after SGD step", &model, out);
    // Validation runs on the inner backend (`Mixed<B>` when `Mixed` is outside).
    out.push("valid() forward", model.valid().forward(x.inner()));
}

/// CNN: forward, MSE loss, every parameter's gradient, then two Adam steps (the second
/// uses the moment estimates kept by the first) and the updated parameters.
pub fn autodiff_cnn<B: Backend>(device: &B::Device) {
    equivalent!("autodiff_cnn", device, cnn_scenario::<Autodiff<B>>());
}

/// The CNN scenario on any autodiff backend; see [`autodiff_cnn`].
pub fn cnn_scenario<A: AutodiffBackend>(device: &A::Device, out: &mut Outputs) {
    let mut model = fill_params(Cnn::<A>::new(device), 400);
    record_params("initial", &model, out);
    let x = float_tensor::<A, 4>(device, [2, 2, 8, 8], 401, -1.0, 1.0);
    let target = float_tensor::<A, 2>(device, [2, 3], 402, -1.0, 1.0);
    let mut optimizer = AdamConfig::new().init::<A, Cnn<A>>();
    for step in 0..2 {
        let prediction = model.forward(x.clone());
        let loss = MseLoss::new().forward(prediction.clone(), target.clone(), Reduction::Mean);
        out.push(format!("step {step} prediction"), prediction);
        out.push(format!("step {step} loss"), loss.clone());
        let grads = loss.backward();
        model.visit(&mut RecordGrads::<A> { grads: &grads, out, index: 0 });
        let grads = GradientsParams::from_grads(grads, &model);
        model = optimizer.step(1e-2, model, grads);
        record_params(&format!("after Adam step {step}"), &model, out);
    }
}

/// `backward` through softmax / log_softmax / cat / matmul and other ops on plain tensors;
/// `detach` and `require_grad`.
pub fn autodiff_tensor_ops<B: Backend>(device: &B::Device) {
    equivalent!("autodiff_tensor_ops", device, tensor_ops_scenario::<Autodiff<B>>());
}

/// The tensor-level scenario on any autodiff backend; see [`autodiff_tensor_ops`].
pub fn tensor_ops_scenario<A: AutodiffBackend>(device: &A::Device, out: &mut Outputs) {
    let x = float_tensor::<A, 2>(device, [4, 5], 501, -1.0, 1.0).require_grad();
    let w = float_tensor::<A, 2>(device, [5, 3], 502, -1.0, 1.0).require_grad();
    let b = float_tensor::<A, 2>(device, [4, 3], 503, -1.0, 1.0).require_grad();
    let weights = float_tensor::<A, 2>(device, [12, 3], 504, -1.0, 1.0);
    assert!(x.is_require_grad() && w.is_require_grad(), "require_grad() must be reported");
    assert!(!weights.is_require_grad(), "a plain tensor does not require grad");

    let logits = x.clone().matmul(w.clone());
    let joined = Tensor::cat(vec![softmax(logits.clone(), 1), log_softmax(logits, 1), b.clone()], 0);
    let loss = (joined * weights).sum();
    let mut grads = loss.backward();
    out.push("softmax/log_softmax/cat/matmul: x gradient", x.grad(&grads).expect("x requires grad"));
    out.push("softmax/log_softmax/cat/matmul: w gradient", w.grad(&grads).expect("w requires grad"));
    out.push("softmax/log_softmax/cat/matmul: b gradient", b.grad(&grads).expect("b requires grad"));
    let doubled = x.grad(&grads).expect("x requires grad").mul_scalar(2.0);
    x.grad_replace(&mut grads, doubled);
    out.push("gradient after grad_replace", x.grad(&grads).expect("replaced, not removed"));
    out.push("grad_remove", w.grad_remove(&mut grads).expect("w has a gradient"));
    assert!(w.grad(&grads).is_none(), "grad_remove must take the gradient out");

    // Moving between the autodiff backend and its inner backend, for every kind.
    let inner = x.clone().inner();
    out.push("inner float", inner.clone());
    out.push("from_inner float", Tensor::<A, 2>::from_inner(inner));
    let n = int_tensor::<A, 2>(device, [3, 4], 506, -9, 9);
    out.push("inner int", n.clone().inner());
    out.push("from_inner int", Tensor::<A, 2, Int>::from_inner(n.inner()));
    let p = bool_tensor::<A, 2>(device, [3, 4], 507);
    out.push("inner bool", p.clone().inner());
    out.push("from_inner bool", Tensor::<A, 2, Bool>::from_inner(p.inner()));

    // A chain of element-wise and reducing ops, each with its own backward rule.
    let pos = float_tensor::<A, 2>(device, [4, 5], 505, 0.5, 2.0).require_grad();
    let chain = pos.clone().log().exp().sqrt().tanh() * sigmoid(x.clone())
        + pos.clone().powf_scalar(1.5).mean_dim(1)
        + x.clone().max_dim(1)
        + x.clone().transpose().reshape([4, 5]).abs().cumsum(1);
    let grads = chain.sum().backward();
    out.push("element-wise chain: x gradient", x.grad(&grads).expect("x requires grad"));
    out.push("element-wise chain: pos gradient", pos.grad(&grads).expect("pos requires grad"));

    // Burn's `detach` starts a new leaf that keeps `require_grad`: the gradient reaches the
    // leaf, never the tensor it was detached from.
    let detached = x.clone().detach();
    let grads = (detached.clone() * w.clone().transpose().slice([0..1, 0..5])).sum().backward();
    assert!(x.grad(&grads).is_none(), "detach() must stop the gradient");
    out.push("through detach: other operand's gradient", w.grad(&grads).expect("w requires grad"));
    if let Some(leaf) = detached.grad(&grads) {
        out.push("through detach: the detached leaf's gradient", leaf);
    }
    out.push_value("detached requires grad", detached.is_require_grad() as i64);
    let plain = x.set_require_grad(false);
    assert!(!plain.is_require_grad(), "set_require_grad(false) must be reported");
}

/// `name`, `ad_enabled`, dtype support and `sync`: what `Mixed` reports about itself.
pub fn backend_metadata<B: Backend>(device: &B::Device) {
    assert_eq!(Mixed::<B>::name(device), format!("mixed<{}>", B::name(device)));
    assert_eq!(Mixed::<Autodiff<B>>::name(device), format!("mixed<{}>", Autodiff::<B>::name(device)));
    assert!(!B::ad_enabled(device) && !Mixed::<B>::ad_enabled(device), "no autodiff without Autodiff");
    assert!(Mixed::<Autodiff<B>>::ad_enabled(device), "Mixed<Autodiff<B>> has autodiff");
    let dtypes = [
        DType::F64,
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U64,
        DType::U32,
        DType::U16,
        DType::U8,
        DType::Bool(BoolStore::Native),
        DType::Bool(BoolStore::U8),
        DType::Bool(BoolStore::U32),
    ];
    for dtype in dtypes {
        assert_eq!(Mixed::<B>::supports_dtype(device, dtype), B::supports_dtype(device, dtype), "{dtype:?}");
        assert_eq!(Mixed::<B>::dtype_usage(device, dtype), B::dtype_usage(device, dtype), "{dtype:?}");
    }
    Mixed::<B>::sync(device).expect("sync through Mixed");
    Mixed::<B>::memory_cleanup(device);
    let doubled = Mixed::<B>::memory_persistent_allocations(device, 21, |n: i32| n * 2);
    assert_eq!(doubled, 42, "memory_persistent_allocations must run the closure");
    let original = TensorData::new(vec![0.5f32, -1.0], [2]);
    let mut staged = [original.clone()];
    Mixed::<B>::staging(staged.iter_mut(), device);
    crate::support::assert_bitwise_eq("staged data", staged[0].clone(), original);
    let data = TensorData::new(vec![1.0f32, 2.0, 3.0], [3]);
    let t = Tensor::<Mixed<B>, 1>::from_data(data.clone(), device);
    assert_eq!(t.device(), *device, "Mixed tensors live on B's device");
    crate::support::assert_bitwise_eq("round trip through Mixed", t.into_data(), data);
}
