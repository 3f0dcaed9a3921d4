//! `DistributedBackend` for `Mixed<B>` (feature `distributed`): every method forwarded to
//! `B`, the default ones included.
//!
//! Burn's defaults are not neutral here. The default `start_communication_server`,
//! `register_sync_parameters`, `submit_gradient_sync` and `submit_sync_collective` key the
//! gradient-sync server on the *implementing type* (`TypeId::of::<Self>()`). Under
//! `Mixed<Autodiff<Cuda>>` the gradients are submitted by `Autodiff`'s backward pass with
//! the inner backend's type (`Cuda`), so a server started under `Mixed`'s own `TypeId`
//! would never see them: every device would train on its own gradients, silently.
//! Forwarding every method keeps one server, under the type that submits to it.
//!
//! The collective runs on `B`'s primitives and in their dtype: `Mixed` adds no autocast
//! here (an all-reduce is a sum across devices; narrowing it is an opt-in, see
//! `crate::data_parallel::all_reduce`).

use burn::tensor::Device;
use burn::tensor::backend::DeviceId;
use burn::tensor::backend::distributed::{
    CollectiveTensor, DistributedBackend, DistributedConfig, DistributedParams, ReduceOperation, TensorRef,
};

use super::prelude::*;

impl<B: DistributedBackend> DistributedBackend for Mixed<B> {
    forward_to_inner! {
        <B as DistributedBackend> {
            fn start_communication_server(devices: &[Self::Device], config: DistributedConfig);
            fn close_communication_server(device: &Self::Device);
            fn register_sync_parameters(device: &Self::Device, distributed_params: Vec<DistributedParams>);
            fn submit_sync_collective(device: &Self::Device);
            fn sync_collective(device: &Self::Device);
            fn all_reduce(tensor: FloatTensor<Self>, op: ReduceOperation, device_ids: Vec<DeviceId>) -> CollectiveTensor<Self>
                as lift::collective;
        }
    }

    fn submit_gradient_sync(tensor: TensorRef<Self>, distributed_params: DistributedParams) {
        B::submit_gradient_sync(inner_ref(&tensor), distributed_params)
    }

    unsafe fn comm_device(tensor: &TensorRef<Self>) -> Device<Self> {
        // Safety: the caller's contract (the tensor is not accessed meanwhile) is passed on.
        unsafe { B::comm_device(&inner_ref(tensor)) }
    }

    unsafe fn float_from_ref(tensor: &TensorRef<Self>) -> FloatTensor<Self> {
        // Safety: as above.
        unsafe { B::float_from_ref(&inner_ref(tensor)) }
    }
}

/// The same pointer, typed for `B`: `Mixed<B>`'s float primitive *is* `B`'s.
fn inner_ref<B: DistributedBackend>(tensor: &TensorRef<Mixed<B>>) -> TensorRef<B> {
    TensorRef(tensor.0)
}
