//! `DistributedBackend for Mixed<B>` (feature `distributed`), on Wgpu: what burn-train's DDP
//! strategy needs from the backend type, short of the all-reduce itself (which Wgpu does
//! not implement in Burn 0.21: `comm_init` and `all_reduce` are `unimplemented!()` in
//! CubeCL's Wgpu server; only Cuda runs it). Run by `scripts/check-distributed.sh`.

use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, Wgpu};
use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::tensor::backend::distributed::{
    DistributedBackend, DistributedConfig, DistributedParamId, ReduceOperation, get_distributed_sync_client,
};
use burn::train::ExecutionStrategy;
use burn_mixed::data_parallel::DataParallel;
use burn_mixed::{Mixed, MixedPrecision, Precision};

type Train = Mixed<Autodiff<Wgpu>>;

fn devices() -> Vec<WgpuDevice> {
    vec![WgpuDevice::Cpu, WgpuDevice::DefaultDevice]
}

fn config() -> DistributedConfig {
    DistributedConfig { all_reduce_op: ReduceOperation::Mean }
}

/// Burn's default `start_communication_server` would register the server under
/// `Mixed<..>`'s own type; `Autodiff`'s backward pass submits gradients under the innermost
/// backend's type (`Wgpu`), so the forwarded one must land there.
#[test]
fn the_gradient_sync_server_is_the_one_autodiffs_backward_pass_reaches() {
    Train::start_communication_server(&devices(), config());
    let under_inner = get_distributed_sync_client::<Wgpu>().is_some();
    let under_mixed = get_distributed_sync_client::<Train>().is_some();
    Train::close_communication_server(&devices()[0]);
    assert!(under_inner, "the server must be registered under Wgpu, where gradients are submitted");
    assert!(!under_mixed, "nothing may be registered under Mixed's own type");
    assert!(get_distributed_sync_client::<Wgpu>().is_none(), "closed through Mixed");
}

/// burn-train's DDP marks every parameter; the mark must survive `Mixed` (Burn's default
/// `set_distributed_params` returns the tensor unmarked: no gradient would be synced).
#[test]
fn parameters_marked_for_gradient_sync_stay_marked() {
    let device = WgpuDevice::Cpu;
    let tensor = Tensor::<Train, 1>::ones([3], &device).require_grad();
    assert!(!tensor.is_distributed());
    let marked = tensor.set_distributed(DistributedParamId::from(7));
    assert!(marked.is_distributed());
}

#[test]
fn the_ddp_strategy_takes_the_mixed_backend_and_configures_the_scaler() {
    let device = WgpuDevice::Cpu;
    let prepared = MixedPrecision::new(Precision::Mixed16)
        .setup::<Train, _, _>(&device, LinearConfig::new(4, 2).init::<Train>(&device), AdamConfig::new().init::<Train, Linear<Train>>())
        .expect("lavapipe runs f16");
    let plan = DataParallel::<Train>::new(devices()).expect("two distinct devices");
    let strategy = plan.ddp(&prepared.optimizer, config());
    assert!(matches!(strategy, ExecutionStrategy::DistributedDataParallel { .. }));
    assert_eq!(prepared.optimizer.scaler().expect("16-mixed").replicas(), 2, "one update per round of 2 replicas");
}
