//! Activations: the backend's `ActivationOps` (relu, leaky_relu, gelu, prelu, sigmoid,
//! hard_sigmoid, log_sigmoid, softmax, log_softmax, softmin) on several dims, and the
//! activations Burn composes from other ops.

use burn::tensor::activation as act;
use burn::tensor::backend::Backend;

use crate::support::{Outputs, equivalent, float_tensor};

/// Every activation in `burn::tensor::activation`.
pub fn activations<B: Backend>(device: &B::Device) {
    equivalent!("activations", device, activations_run::<B>());
}

fn activations_run<B: Backend>(device: &B::Device, out: &mut Outputs) {
    let x = float_tensor::<B, 3>(device, [2, 4, 6], 181, -4.0, 4.0);
    // Large logits: softmax and friends must subtract the max, and both sides the same way.
    let wide = float_tensor::<B, 2>(device, [3, 7], 182, -60.0, 60.0);

    out.push("relu", act::relu(x.clone()));
    out.push("leaky_relu", act::leaky_relu(x.clone(), 0.02));
    out.push("gelu", act::gelu(x.clone()));
    out.push("gelu_approximate", act::gelu_approximate(x.clone()));
    out.push("sigmoid", act::sigmoid(x.clone()));
    out.push("hard_sigmoid", act::hard_sigmoid(x.clone(), 0.2, 0.5));
    out.push("log_sigmoid", act::log_sigmoid(x.clone()));
    out.push("silu", act::silu(x.clone()));
    out.push("tanh", act::tanh(x.clone()));
    out.push("softplus", act::softplus(x.clone(), 1.5));
    out.push("hard_swish", act::hard_swish(x.clone()));
    out.push("mish", act::mish(x.clone()));
    out.push("elu", act::elu(x.clone(), 1.0));
    out.push("celu", act::celu(x.clone(), 0.7));
    out.push("selu", act::selu(x.clone()));
    out.push("thresholded_relu", act::thresholded_relu(x.clone(), 0.5));
    out.push("softsign", act::softsign(x.clone()));
    out.push("hard_shrink", act::hard_shrink(x.clone(), 0.5));
    out.push("soft_shrink", act::soft_shrink(x.clone(), 0.5));
    out.push("glu", act::glu(x.clone(), 2));

    let alpha = float_tensor::<B, 1>(device, [4], 183, 0.0, 0.5);
    out.push("prelu per channel", act::prelu(x.clone(), alpha));
    let shared = float_tensor::<B, 1>(device, [1], 184, 0.0, 0.5);
    out.push("prelu shared", act::prelu(x.clone(), shared));

    for dim in 0..3 {
        out.push(format!("softmax {dim}"), act::softmax(x.clone(), dim));
        out.push(format!("log_softmax {dim}"), act::log_softmax(x.clone(), dim));
        out.push(format!("softmin {dim}"), act::softmin(x.clone(), dim));
        out.push(format!("quiet_softmax {dim}"), act::quiet_softmax(x.clone(), dim));
    }
    out.push("softmax wide logits", act::softmax(wide.clone(), 1));
    out.push("log_softmax wide logits", act::log_softmax(wide.clone(), 1));
    out.push("softmin wide logits", act::softmin(wide, 1));
}
