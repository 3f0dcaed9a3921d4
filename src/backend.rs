//! The `Mixed<B>` backend type: a zero-sized decorator over any Burn backend.

use core::marker::PhantomData;

use burn::tensor::backend::{AutodiffBackend, Backend, BackendTypes, DTypeUsageSet, ExecutionError};
use burn::tensor::ops::{BoolTensor, FloatTensor, IntTensor, QuantizedTensor};
use burn::tensor::{DType, TensorData};

use crate::ops::forward::forward_to_inner;

/// A Burn backend that runs every op on `B`, applying the autocast policy on the way.
///
/// `Mixed<B>` reuses `B`'s tensor primitives and device, so a model written for any
/// backend runs on it unchanged: `type Backend = Mixed<Wgpu>;` for inference and
/// `Mixed<Autodiff<Wgpu>>` for training. Outside an autocast region (precision
/// `32-true`) every result is bit-identical to `B`'s; inside one, the per-op policy in
/// [`crate::autocast::policy`] picks the dtype each op runs in.
///
/// Put `Mixed` *outside* `Autodiff`: then the casts it inserts are recorded on the tape,
/// parameter gradients come back in the parameters' dtype (f32), and activations are
/// saved for backward in half precision.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{DType, FloatDType, Tensor};
/// use burn_mixed::Mixed;
/// use burn_mixed::autocast::autocast;
///
/// type B = Mixed<Flex>;
/// let device = Default::default();
/// let x = Tensor::<B, 2>::ones([4, 8], &device);
/// let w = Tensor::<B, 2>::ones([8, 2], &device);
///
/// // Outside a region, Mixed<Flex> is Flex: an f32 product.
/// assert_eq!(x.clone().matmul(w.clone()).dtype(), DType::F32);
/// // Inside one, the policy runs the product in bf16 and the exponential in f32.
/// let (product, exp) = autocast::<B, _>(&device, FloatDType::BF16, || {
///     let product = x.matmul(w);
///     (product.clone(), product.exp())
/// })?;
/// assert_eq!(product.dtype(), DType::BF16);
/// assert_eq!(exp.dtype(), DType::F32);
/// assert_eq!(product.into_data().convert::<f32>().to_vec::<f32>().unwrap(), vec![8.0; 8]);
/// # Ok::<(), burn_mixed::autocast::AutocastError>(())
/// ```
#[derive(Clone, Copy, Default, Debug)]
pub struct Mixed<B> {
    _inner: PhantomData<B>,
}

impl<B: Backend> BackendTypes for Mixed<B> {
    type Device = B::Device;
    type FloatTensorPrimitive = B::FloatTensorPrimitive;
    type FloatElem = B::FloatElem;
    type IntTensorPrimitive = B::IntTensorPrimitive;
    type IntElem = B::IntElem;
    type BoolTensorPrimitive = B::BoolTensorPrimitive;
    type BoolElem = B::BoolElem;
    type QuantizedTensorPrimitive = B::QuantizedTensorPrimitive;
}

impl<B: Backend> Backend for Mixed<B> {
    fn name(device: &Self::Device) -> String {
        format!("mixed<{}>", B::name(device))
    }

    fn memory_persistent_allocations<Output: Send, Input: Send, Func: Fn(Input) -> Output + Send>(
        device: &Self::Device,
        input: Input,
        func: Func,
    ) -> Output {
        B::memory_persistent_allocations(device, input, func)
    }

    fn staging<'a, Iter>(data: Iter, device: &Self::Device)
    where
        Iter: Iterator<Item = &'a mut TensorData>,
    {
        B::staging(data, device)
    }

    forward_to_inner! {
        <B as Backend> {
            fn ad_enabled(device: &Self::Device) -> bool;
            fn memory_cleanup(device: &Self::Device);
            fn seed(device: &Self::Device, seed: u64);
            fn sync(device: &Self::Device) -> Result<(), ExecutionError>;
            fn supports_dtype(device: &Self::Device, dtype: DType) -> bool;
            fn dtype_usage(device: &Self::Device, dtype: DType) -> DTypeUsageSet;
            fn device_count(type_id: u16) -> usize;
        }
    }
}

/// Training: `Mixed<Autodiff<B>>`. The inner backend (the one optimizers and
/// `model.valid()` use) stays wrapped, so validation runs under the same policy.
impl<A: AutodiffBackend> AutodiffBackend for Mixed<A> {
    type InnerBackend = Mixed<A::InnerBackend>;
    type Gradients = A::Gradients;

    /// Inside a 16-mixed model's precision region the loss is multiplied here by the
    /// region's loss scale, so a user's `loss.backward()` needs no edit; anywhere else the
    /// loss is left as it is.
    fn backward(tensor: FloatTensor<Self>) -> Self::Gradients {
        let tensor = match crate::region::loss_scale_for_backward() {
            Some(scale) => A::float_mul_scalar(tensor, scale.into()),
            None => tensor,
        };
        // The forward pass is over: its cached parameter casts must not leak into the next.
        crate::autocast::clear_cast_cache();
        A::backward(tensor)
    }

    forward_to_inner! {
        <A as AutodiffBackend> {
            fn grad(tensor: &FloatTensor<Self>, grads: &Self::Gradients) -> Option<FloatTensor<Self::InnerBackend>>;
            fn grad_remove(tensor: &FloatTensor<Self>, grads: &mut Self::Gradients) -> Option<FloatTensor<Self::InnerBackend>>;
            fn grad_replace(tensor: &FloatTensor<Self>, grads: &mut Self::Gradients, grad: FloatTensor<Self::InnerBackend>);
            fn inner(tensor: FloatTensor<Self>) -> FloatTensor<Self::InnerBackend>;
            fn int_inner(tensor: IntTensor<Self>) -> IntTensor<Self::InnerBackend>;
            fn bool_inner(tensor: BoolTensor<Self>) -> BoolTensor<Self::InnerBackend>;
            fn q_inner(tensor: QuantizedTensor<Self>) -> QuantizedTensor<Self::InnerBackend>;
            fn from_inner(tensor: FloatTensor<Self::InnerBackend>) -> FloatTensor<Self>;
            fn int_from_inner(tensor: IntTensor<Self::InnerBackend>) -> IntTensor<Self>;
            fn bool_from_inner(tensor: BoolTensor<Self::InnerBackend>) -> BoolTensor<Self>;
            fn q_from_inner(tensor: QuantizedTensor<Self::InnerBackend>) -> QuantizedTensor<Self>;
        }
    }

    // DDP marks parameters here; Burn's defaults would drop the mark (no gradient sync).
    #[cfg(feature = "distributed")]
    forward_to_inner! {
        <A as AutodiffBackend> {
            fn set_distributed_params(tensor: FloatTensor<Self>, param_id: burn::tensor::backend::distributed::DistributedParamId) -> FloatTensor<Self>;
            fn distributed_params(tensor: &FloatTensor<Self>) -> Option<burn::tensor::backend::distributed::DistributedParams>;
            fn is_distributed(tensor: &FloatTensor<Self>) -> bool;
        }
    }
}
