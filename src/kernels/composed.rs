//! Kernels built from the extension point's methods, for every backend with host kernels:
//! a linear layer's input and weight gradients (two products with transposed operands),
//! and a convolution's bias gradient. `Mixed`'s hooks and the autodiff nodes both use them.

use burn::tensor::TensorMetadata;
use burn::tensor::ops::FloatTensor;

use super::{ConvBiasGradArgs, HostKernels, TensorPair};

/// See the module documentation.
pub(crate) trait Composed: HostKernels {
    /// A convolution's bias gradient from `(x, bias, output_grad)`.
    fn conv_bias_grad(args: ConvBiasGradArgs<Self>) -> Result<FloatTensor<Self>, ConvBiasGradArgs<Self>> {
        let (x, bias, grad) = args;
        Self::half_sum_to_channels(grad).map_err(|grad| (x, bias, grad))
    }

    /// A linear layer's input gradient from `(weight, output_grad)`: `grad @ weight^T`.
    fn linear_x_grad(args: TensorPair<Self>) -> Result<FloatTensor<Self>, TensorPair<Self>> {
        let (weight, grad) = args;
        match Self::half_linear((grad, Self::float_swap_dims(weight, 0, 1), None)) {
            Ok(out) => Ok(out),
            Err((grad, weight_t, _)) => Err((Self::float_swap_dims(weight_t, 0, 1), grad)),
        }
    }

    /// A linear layer's weight gradient from `(x, output_grad)`: `x^T @ grad`, summed over
    /// every leading dimension (both flattened to rows), `[in, out]`.
    fn linear_weight_grad(args: TensorPair<Self>) -> Result<FloatTensor<Self>, TensorPair<Self>> {
        let (x, grad) = args;
        let (x_shape, g_shape) = (x.shape(), grad.shape());
        let (k, n) = (x_shape[x_shape.num_dims() - 1], g_shape[g_shape.num_dims() - 1]);
        // The leading dimensions' product, not `elements / k`: with `k = 0` there are
        // still rows (of nothing), and the gradient keeps its own.
        let rows = x_shape.as_slice()[..x_shape.num_dims() - 1].iter().product();
        let x2d = Self::float_reshape(x.clone(), burn::tensor::Shape::new([rows, k]));
        let g2d = Self::float_reshape(grad.clone(), burn::tensor::Shape::new([rows, n]));
        Self::half_matmul((Self::float_swap_dims(x2d, 0, 1), g2d)).map_err(|_| (x, grad))
    }
}

impl<K: HostKernels> Composed for K {}
