//! `ActivationOps` for `Mixed<B>`: every method forwarded to `B` (defaults included, so `B`'s own
//! overrides and autodiff hooks are reached), with the autocast hook on the float ops
//! listed in `autocast::policy`.

use super::prelude::*;

impl<B: Backend> ActivationOps<Self> for Mixed<B> {
    forward_to_inner! {
        <B as ActivationOps<B>> {
        fn leaky_relu(tensor: FloatTensor<Self>, negative_slope: Scalar) -> FloatTensor<Self>;
        fn relu(tensor: FloatTensor<Self>) -> FloatTensor<Self> => relu;
        fn relu_backward(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> [ActivationBackward: output, grad] => relu_backward;
        fn gelu(tensor: FloatTensor<Self>) -> FloatTensor<Self> => gelu;
        fn prelu(tensor: FloatTensor<Self>, alpha: FloatTensor<Self>) -> FloatTensor<Self> [Prelu: tensor, alpha];
        fn gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> [ActivationBackward: x, grad] => gelu_backward;
        fn sigmoid(tensor: FloatTensor<Self>) -> FloatTensor<Self>;
        fn sigmoid_backward(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> [ActivationBackward: output, grad];
        fn hard_sigmoid(tensor: FloatTensor<Self>, alpha: Scalar, beta: Scalar) -> FloatTensor<Self>;
        fn log_sigmoid(tensor: FloatTensor<Self>) -> FloatTensor<Self>;
        fn softmax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> [Softmax: tensor];
        fn log_softmax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> [LogSoftmax: tensor];
        fn softmin(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> [Softmin: tensor];
        fn log_sigmoid_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> [ActivationBackward: x, grad];
        }
    }
}
