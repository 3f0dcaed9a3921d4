//! Re-labelling of the few return types that are structs generic over the backend.
//!
//! `Mixed<B>` shares all of `B`'s primitives, so these moves are free: only the type
//! parameter of the wrapping struct changes.

use burn::tensor::TensorPrimitive;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{DeformConv2dBackward, MaxPool1dBackward, MaxPool1dWithIndices, MaxPool2dBackward, MaxPool2dWithIndices};

use crate::Mixed;

pub(crate) fn primitive<B: Backend>(p: TensorPrimitive<B>) -> TensorPrimitive<Mixed<B>> {
    match p {
        TensorPrimitive::Float(t) => TensorPrimitive::Float(t),
        TensorPrimitive::QFloat(t) => TensorPrimitive::QFloat(t),
    }
}

pub(crate) fn unlift_primitive<B: Backend>(p: TensorPrimitive<Mixed<B>>) -> TensorPrimitive<B> {
    match p {
        TensorPrimitive::Float(t) => TensorPrimitive::Float(t),
        TensorPrimitive::QFloat(t) => TensorPrimitive::QFloat(t),
    }
}

pub(crate) fn max_pool1d_with_indices<B: Backend>(r: MaxPool1dWithIndices<B>) -> MaxPool1dWithIndices<Mixed<B>> {
    MaxPool1dWithIndices::new(r.output, r.indices)
}

pub(crate) fn max_pool2d_with_indices<B: Backend>(r: MaxPool2dWithIndices<B>) -> MaxPool2dWithIndices<Mixed<B>> {
    MaxPool2dWithIndices::new(r.output, r.indices)
}

pub(crate) fn max_pool1d_backward<B: Backend>(r: MaxPool1dBackward<B>) -> MaxPool1dBackward<Mixed<B>> {
    MaxPool1dBackward::new(r.x_grad)
}

pub(crate) fn max_pool2d_backward<B: Backend>(r: MaxPool2dBackward<B>) -> MaxPool2dBackward<Mixed<B>> {
    MaxPool2dBackward::new(r.x_grad)
}

pub(crate) fn deform_conv2d_backward<B: Backend>(r: DeformConv2dBackward<B>) -> DeformConv2dBackward<Mixed<B>> {
    DeformConv2dBackward::new(r.x_grad, r.offset_grad, r.weight_grad, r.mask_grad, r.bias_grad)
}

/// A pending collective re-labelled for `Mixed<B>`. Taking the handle out without a sync is
/// sound because the new wrapper still syncs before use: `Mixed`'s `sync_collective` is
/// `B`'s, on the same device.
#[cfg(feature = "distributed")]
pub(crate) fn collective<B: burn::tensor::backend::distributed::DistributedBackend>(
    c: burn::tensor::backend::distributed::CollectiveTensor<B>,
) -> burn::tensor::backend::distributed::CollectiveTensor<Mixed<B>> {
    // Safety: only re-wrapped, not used; `resolve` on the result syncs the device.
    burn::tensor::backend::distributed::CollectiveTensor::new(unsafe { c.assume_resolved() })
}
