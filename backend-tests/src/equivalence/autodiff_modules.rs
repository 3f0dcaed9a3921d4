//! Backward passes of the module and activation ops, in both arrangements:
//!
//! - `Mixed<Autodiff<B>>` (the recommended one): Autodiff's backward rules call `B`'s
//!   backward kernels directly, so this checks that `Mixed` hands the tape over intact;
//! - `Autodiff<Mixed<B>>`: the backward kernels (`conv2d_x_backward`, `relu_backward`,
//!   `max_pool2d_with_indices_backward`, ...) are called on `Mixed<B>`, so this is the only
//!   place their forwarding is exercised.
//!
//! Both are compared with `Autodiff<B>`. Also here: the MLP, the CNN and the tensor-level
//! autodiff scenario run on `Autodiff<Mixed<B>>`.

use burn::backend::Autodiff;
use burn::tensor::activation as act;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::module::{
    adaptive_avg_pool1d, adaptive_avg_pool2d, attention, avg_pool1d, avg_pool2d, conv_transpose1d, conv_transpose2d, conv_transpose3d,
    conv1d, conv2d, conv3d, ctc_loss, deform_conv2d, embedding, interpolate, linear, max_pool1d, max_pool2d,
};
use burn::tensor::ops::{
    AttentionModuleOptions, ConvOptions, ConvTransposeOptions, DeformConvOptions, InterpolateMode, InterpolateOptions, ModuleOps,
};
use burn::tensor::{Int, Tensor, TensorData};
use burn_mixed::Mixed;

use crate::support::{Outputs, assert_equivalent, bare_supports, equivalent, float_tensor, int_tensor};

/// A leaf tensor that requires grad, with deterministic values in `[-1, 1)`.
fn leaf<A: AutodiffBackend, const D: usize>(device: &A::Device, shape: [usize; D], seed: u64) -> Tensor<A, D> {
    float_tensor::<A, D>(device, shape, seed, -1.0, 1.0).require_grad()
}

/// Back-propagates `sum(sin(output))` (a non-uniform upstream gradient) and records the
/// gradient of each input under `label`.
fn backward_of<A: AutodiffBackend, const D: usize, const I: usize>(
    out: &mut Outputs,
    label: &str,
    output: Tensor<A, D>,
    inputs: [&dyn RecordGrad<A>; I],
) {
    let grads = output.sin().sum().backward();
    for (i, input) in inputs.iter().enumerate() {
        input.record(out, &format!("{label}: gradient of input {i}"), &grads);
    }
}

/// A leaf of any rank whose gradient can be recorded.
trait RecordGrad<A: AutodiffBackend> {
    fn record(&self, out: &mut Outputs, label: &str, grads: &A::Gradients);
}

impl<A: AutodiffBackend, const D: usize> RecordGrad<A> for Tensor<A, D> {
    fn record(&self, out: &mut Outputs, label: &str, grads: &A::Gradients) {
        let grad = self.grad(grads).unwrap_or_else(|| panic!("{label}: no gradient"));
        out.push(label, grad);
    }
}

fn module_backward<A: AutodiffBackend>(device: &A::Device, out: &mut Outputs, interpolate_modes: &[InterpolateMode]) {
    let (x, w, b) = (leaf::<A, 3>(device, [2, 4, 9], 601), leaf(device, [6, 2, 3], 602), leaf(device, [6], 603));
    let y = conv1d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new([2], [1], [1], 2));
    backward_of(out, "conv1d", y, [&x, &w, &b]);
    let (x, w, b) = (leaf::<A, 4>(device, [2, 3, 6, 6], 604), leaf(device, [4, 3, 3, 3], 605), leaf(device, [4], 606));
    let y = conv2d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
    backward_of(out, "conv2d", y, [&x, &w, &b]);
    let (x, w, b) = (leaf::<A, 5>(device, [1, 2, 4, 4, 4], 607), leaf(device, [3, 2, 2, 2, 2], 608), leaf(device, [3], 609));
    let y = conv3d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new([1, 1, 1], [0, 0, 0], [1, 1, 1], 1));
    backward_of(out, "conv3d", y, [&x, &w, &b]);

    let (x, w, b) = (leaf::<A, 3>(device, [2, 3, 5], 610), leaf(device, [3, 2, 3], 611), leaf(device, [2], 612));
    let y = conv_transpose1d(x.clone(), w.clone(), Some(b.clone()), ConvTransposeOptions::new([2], [1], [1], [1], 1));
    backward_of(out, "conv_transpose1d", y, [&x, &w, &b]);
    let (x, w, b) = (leaf::<A, 4>(device, [1, 3, 4, 4], 613), leaf(device, [3, 2, 3, 3], 614), leaf(device, [2], 615));
    let y = conv_transpose2d(x.clone(), w.clone(), Some(b.clone()), ConvTransposeOptions::new([1, 1], [0, 0], [0, 0], [1, 1], 1));
    backward_of(out, "conv_transpose2d", y, [&x, &w, &b]);
    let (x, w) = (leaf::<A, 5>(device, [1, 2, 2, 3, 3], 616), leaf(device, [2, 2, 2, 2, 2], 617));
    let y = conv_transpose3d(x.clone(), w.clone(), None, ConvTransposeOptions::new([1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1));
    backward_of(out, "conv_transpose3d", y, [&x, &w]);

    let (x, offset) = (leaf::<A, 4>(device, [1, 2, 5, 5], 618), leaf(device, [1, 18, 3, 3], 619));
    let (w, mask, b) = (leaf(device, [3, 2, 3, 3], 620), leaf(device, [1, 9, 3, 3], 621), leaf(device, [3], 622));
    let options = DeformConvOptions::new([1, 1], [0, 0], [1, 1], 1, 1);
    let y = deform_conv2d(x.clone(), offset.clone(), w.clone(), Some(mask.clone()), Some(b.clone()), options);
    backward_of(out, "deform_conv2d", y, [&x, &offset, &w, &mask, &b]);

    let x = leaf::<A, 3>(device, [2, 3, 9], 623);
    backward_of(out, "avg_pool1d", avg_pool1d(x.clone(), 3, 2, 1, false, false), [&x]);
    backward_of(out, "max_pool1d", max_pool1d(x.clone(), 3, 2, 1, 1, false), [&x]);
    backward_of(out, "adaptive_avg_pool1d", adaptive_avg_pool1d(x.clone(), 4), [&x]);
    let x = leaf::<A, 4>(device, [2, 3, 8, 8], 624);
    backward_of(out, "avg_pool2d", avg_pool2d(x.clone(), [3, 3], [2, 2], [1, 1], true, false), [&x]);
    backward_of(out, "max_pool2d", max_pool2d(x.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false), [&x]);
    backward_of(out, "adaptive_avg_pool2d", adaptive_avg_pool2d(x.clone(), [3, 3]), [&x]);
    for mode in interpolate_modes {
        let label = format!("interpolate {mode:?}");
        backward_of(out, &label, interpolate_for_backward(x.clone(), mode.clone()), [&x]);
    }

    let table = leaf::<A, 2>(device, [10, 4], 625);
    let tokens = int_tensor::<A, 2>(device, [2, 3], 626, 0, 10);
    backward_of(out, "embedding", embedding(table.clone(), tokens), [&table]);
    let (x, w, b) = (leaf::<A, 3>(device, [2, 3, 5], 627), leaf(device, [5, 4], 628), leaf(device, [4], 629));
    backward_of(out, "linear", linear(x.clone(), w.clone(), Some(b.clone())), [&x, &w, &b]);
    let (q, k, v) = (leaf::<A, 4>(device, [1, 2, 3, 4], 630), leaf(device, [1, 2, 5, 4], 631), leaf(device, [1, 2, 5, 4], 632));
    let y = attention(q.clone(), k.clone(), v.clone(), None, None, AttentionModuleOptions::default());
    backward_of(out, "attention", y, [&q, &k, &v]);
    let (h, gamma, beta) = (leaf::<A, 2>(device, [3, 8], 633), leaf(device, [8], 634), leaf(device, [8], 635));
    let normed = A::layer_norm(
        h.clone().into_primitive().tensor(),
        gamma.clone().into_primitive().tensor(),
        Some(beta.clone().into_primitive().tensor()),
        1e-5,
    );
    let y = Tensor::<A, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(normed));
    backward_of(out, "layer_norm", y, [&h, &gamma, &beta]);

    let logits = leaf::<A, 3>(device, [6, 2, 4], 636);
    let targets = int_tensor::<A, 2>(device, [2, 3], 637, 1, 4);
    let input_lengths = Tensor::<A, 1, Int>::from_data(TensorData::new(vec![6i64, 5], [2]), device);
    let target_lengths = Tensor::<A, 1, Int>::from_data(TensorData::new(vec![3i64, 2], [2]), device);
    let loss = ctc_loss(act::log_softmax(logits.clone(), 2), targets, input_lengths, target_lengths, 0);
    backward_of(out, "ctc_loss", loss, [&logits]);
}

fn interpolate_for_backward<B: Backend>(x: Tensor<B, 4>, mode: InterpolateMode) -> Tensor<B, 4> {
    interpolate(x, [5, 11], InterpolateOptions { mode, align_corners: false })
}

fn activation_backward<A: AutodiffBackend>(device: &A::Device, out: &mut Outputs) {
    let x = float_tensor::<A, 2>(device, [4, 6], 650, -3.0, 3.0).require_grad();
    let alpha = leaf::<A, 1>(device, [6], 651);
    let grads_of = |out: &mut Outputs, label: &str, y: Tensor<A, 2>| {
        let grads = y.sin().sum().backward();
        out.push(format!("{label}: input gradient"), x.grad(&grads).expect("x requires grad"));
        grads
    };
    grads_of(out, "relu", act::relu(x.clone()));
    grads_of(out, "leaky_relu", act::leaky_relu(x.clone(), 0.1));
    grads_of(out, "gelu", act::gelu(x.clone()));
    grads_of(out, "sigmoid", act::sigmoid(x.clone()));
    grads_of(out, "hard_sigmoid", act::hard_sigmoid(x.clone(), 0.2, 0.5));
    grads_of(out, "log_sigmoid", act::log_sigmoid(x.clone()));
    grads_of(out, "silu", act::silu(x.clone()));
    grads_of(out, "tanh", act::tanh(x.clone()));
    grads_of(out, "softmax", act::softmax(x.clone(), 1));
    grads_of(out, "log_softmax", act::log_softmax(x.clone(), 1));
    grads_of(out, "softmin", act::softmin(x.clone(), 0));
    let grads = grads_of(out, "prelu", act::prelu(x.clone(), alpha.clone()));
    out.push("prelu: alpha gradient", alpha.grad(&grads).expect("alpha requires grad"));
}

/// Backward of every module op and activation, in both arrangements of `Mixed` and
/// `Autodiff`, against `Autodiff<B>`.
pub fn autodiff_module_backward<B: Backend>(device: &B::Device) {
    assert_eq!(Mixed::<B>::has_ctc_loss_backward(), B::has_ctc_loss_backward(), "Mixed must report B's CTC backward support");
    // NdArray and CubeCL (Wgpu) 0.21 implement interpolate backward for nearest only; the
    // other modes panic in the bare backend.
    let modes: Vec<_> = [InterpolateMode::Nearest, InterpolateMode::Bilinear, InterpolateMode::Bicubic]
        .into_iter()
        .filter(|mode| {
            bare_supports::<Autodiff<B>, _>(device, &format!("interpolate {mode:?} backward"), || {
                let x = leaf::<Autodiff<B>, 4>(device, [1, 1, 4, 4], 0);
                interpolate_for_backward(x, mode.clone()).sum().backward();
            })
        })
        .collect();
    equivalent!("autodiff_module_backward (Mixed<Autodiff<B>>)", device, backward_scenario::<Autodiff<B>>(&modes));
    assert_equivalent::<Autodiff<B>>(
        "autodiff_module_backward (Autodiff<Mixed<B>>)",
        device,
        |device, out| backward_scenario::<Autodiff<B>>(device, out, &modes),
        |device, out| backward_scenario::<Autodiff<Mixed<B>>>(device, out, &modes),
    );
}

fn backward_scenario<A: AutodiffBackend>(device: &A::Device, out: &mut Outputs, interpolate_modes: &[InterpolateMode]) {
    module_backward::<A>(device, out, interpolate_modes);
    activation_backward::<A>(device, out);
}

/// The MLP, CNN and tensor-level scenarios on `Autodiff<Mixed<B>>`, where every backward
/// kernel and every optimizer op runs on `Mixed<B>`.
pub fn autodiff_over_mixed<B: Backend>(device: &B::Device) {
    use super::autodiff::{cnn_scenario, mlp_scenario, tensor_ops_scenario};
    assert_equivalent::<Autodiff<B>>(
        "autodiff_over_mixed",
        device,
        |device, out| {
            mlp_scenario::<Autodiff<B>>(device, out);
            cnn_scenario::<Autodiff<B>>(device, out);
            tensor_ops_scenario::<Autodiff<B>>(device, out);
        },
        |device, out| {
            mlp_scenario::<Autodiff<Mixed<B>>>(device, out);
            cnn_scenario::<Autodiff<Mixed<B>>>(device, out);
            tensor_ops_scenario::<Autodiff<Mixed<B>>>(device, out);
        },
    );
}
