//! The nodes of the spatial ops: 2-d convolution and average pooling. Their backward runs
//! on the inner backend's kernels where they take the case, on its own ops otherwise.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::tensor::ops::{ConvOptions, FloatTensor};

use super::super::{Composed, HostKernels};

/// A convolution's node: parents `[x, weight]` or `[x, weight, bias]`.
#[derive(Debug)]
pub(super) struct HalfConv2d;

/// What a convolution's backward needs: its input, weight and bias (for their shapes and
/// the products) and its options.
type ConvState<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>, ConvOptions<2>);

/// The backward of a convolution node (either arity).
fn conv2d_backward<B: HostKernels, const N: usize>(ops: Ops<ConvState<B>, N>, grads: &mut Gradients) {
    let (x, weight, bias, options) = ops.state;
    let grad = grads.consume::<B>(&ops.node);
    let mut parents = ops.parents.into_iter();
    let (node_x, node_weight, node_bias) = (parents.next().flatten(), parents.next().flatten(), parents.next().flatten());
    let args = || (x.clone(), weight.clone(), grad.clone(), options.clone());
    if let Some(node) = node_x {
        let g = B::half_conv2d_x_backward(args()).unwrap_or_else(|(x, w, g, o)| B::conv2d_x_backward(x, w, g, o));
        grads.register::<B>(node.id, g);
    }
    if let Some(node) = node_weight {
        let g = B::half_conv2d_weight_backward(args()).unwrap_or_else(|(x, w, g, o)| B::conv2d_weight_backward(x, w, g, o));
        grads.register::<B>(node.id, g);
    }
    if let (Some(node), Some(bias)) = (node_bias, bias) {
        let g = B::conv_bias_grad((x, bias, grad)).unwrap_or_else(|(x, b, g)| B::conv2d_bias_backward(x, b, g));
        grads.register::<B>(node.id, g);
    }
}

impl<B: HostKernels, const N: usize> Backward<B, N> for HalfConv2d {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        conv2d_backward::<B, N>(ops, grads)
    }
}

/// An average pooling's node: parent `[x]`.
#[derive(Debug)]
pub(super) struct HalfAvgPool2d;

impl<B: HostKernels> Backward<B, 1> for HalfAvgPool2d {
    /// The input (for its shape, and the inner backend's op) and the pooling's options.
    type State = (FloatTensor<B>, [usize; 2], [usize; 2], [usize; 2], bool, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let (x, kernel, stride, padding, count_include_pad, ceil_mode) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::half_avg_pool2d_backward((x, grad, kernel, stride, padding, count_include_pad, ceil_mode))
                .unwrap_or_else(|(x, grad, k, s, p, c, m)| B::avg_pool2d_backward(x, grad, k, s, p, c, m))
        });
    }
}
