//! Mixed precision under data parallelism: checking the devices before training, and
//! configuring the loss scaler for the strategy that will run.
//!
//! burn-train runs a model on several devices in two ways, and the loss scaler must know
//! which, because the number of optimizer steps per iteration differs:
//!
//! - `ExecutionStrategy::MultiDevice(devices, OptimMainDevice | OptimSharded)`: one
//!   learner; each device computes gradients, burn-train sums them, and one optimizer
//!   steps (`step` on the main device, or `step_multi` with each device's gradients). One
//!   scaler report per iteration: nothing to coordinate.
//! - `ExecutionStrategy::DistributedDataParallel` (feature `distributed`): one learner
//!   *per device*, each stepping its own clone of the optimizer after the gradients were
//!   all-reduced. N reports per iteration, which must make one scale update and one
//!   verdict ([`GradScaler::set_replicas`]).
//!
//! [`DataParallel`] checks the device list once, before training starts (a bad list
//! otherwise shows up as a hang or a panic inside a collective), and builds the strategy
//! with the scaler configured for it. [`all_reduce()`] is a gradient all-reduce for
//! hand-written data-parallel loops, optionally moving the gradients in half precision.

pub mod all_reduce;
mod strategy;

use core::fmt;

use std::sync::Arc;

use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::prelude::DeviceOps;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::{ExecutionStrategy, LearningComponentsTypes, MultiDeviceOptim, TrainingStrategy};

use crate::precision::Precision;
use crate::scaler::{GradScaler, PrecisionOptimizer};
use crate::setup::MixedPrecision;

pub use all_reduce::{AllReduceReport, CommDtype, ReduceOp, all_reduce, reduce_to_first};
pub use strategy::HostDataParallel;

/// Reads `tensor` to the host and returns a function that uploads it to a device (in the
/// same dtype), with the number of bytes read. Burn 0.21's `to_device` between two
/// devices of a CubeCL backend goes through the runtime's server-to-server communication,
/// which only Cuda implements: on Wgpu it panics (`comm_init`: not implemented) on the
/// device's server thread. A host copy works on every backend; on Cuda it is slower than a
/// peer copy, not wrong.
pub(crate) fn host_copy<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> (impl FnOnce(&B::Device) -> Tensor<B, D>, u64) {
    let dtype = tensor.dtype();
    let data = tensor.into_data();
    let bytes = data.bytes.len() as u64;
    (move |device: &B::Device| Tensor::from_data(data, (device, dtype)), bytes)
}

/// A replica of `module` on `device` with the same parameter ids (so that gradients of
/// different replicas meet in [`all_reduce()`]), copied through the host: `Module::fork`
/// between two Wgpu devices panics in Burn 0.21 (see `host_copy`).
pub fn replicate<B: AutodiffBackend, M: AutodiffModule<B>>(module: M, device: &B::Device) -> M {
    struct Replicate<'a, B: AutodiffBackend>(&'a B::Device);
    impl<B: AutodiffBackend> ModuleMapper<B> for Replicate<'_, B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            let require_grad = tensor.is_require_grad();
            let (upload, _) = host_copy(tensor.inner());
            let mut copy = Tensor::<B, D>::from_inner(upload(self.0));
            if require_grad {
                copy = copy.require_grad();
            }
            Param::from_mapped_value(id, copy, mapper)
        }
    }
    module.map(&mut Replicate::<B>(device))
}

/// A device list that cannot train data-parallel, found before training starts.
#[derive(Clone, PartialEq)]
pub enum DataParallelError {
    /// No device at all.
    NoDevices,
    /// The same device twice: it would run two replicas and a collective would wait on
    /// itself.
    DuplicateDevice {
        /// The device.
        device: String,
        /// Its first position in the list.
        first: usize,
        /// Its second position.
        second: usize,
        /// The whole list.
        devices: Vec<String>,
    },
    /// Devices driven by different backends (e.g. a `Dispatch` list mixing Cuda and Wgpu):
    /// their gradients cannot meet in one collective.
    MixedBackends {
        /// The first device of another backend.
        device: String,
        /// Its backend.
        backend: String,
        /// The first device's backend.
        expected: String,
        /// The whole list.
        devices: Vec<String>,
    },
    /// A device cannot run the precision the others run (or would fall back to another
    /// one), so replicas would compute in different dtypes.
    Precision {
        /// The device.
        device: String,
        /// The precision asked for.
        precision: Precision,
        /// What it resolves to on this device: another precision after a fallback, or why
        /// it cannot run.
        resolved: Result<Precision, String>,
        /// The precision the other devices run.
        others: Precision,
    },
    /// Replicas of a hand-written loop whose optimizers do not share one scaler (or where
    /// some have a scaler and others none): their loss scales would drift apart.
    ScalerMismatch {
        /// The replica whose optimizer differs from the first one's.
        replica: usize,
        /// Whether its optimizer has a scaler.
        has_scaler: bool,
        /// Whether the first replica's optimizer has one.
        first_has_scaler: bool,
    },
    /// A number of optimizers that is not one per device.
    ReplicaCount {
        /// Optimizers given.
        optimizers: usize,
        /// Devices in the plan.
        devices: usize,
    },
    /// The model's parameters are not (all) on the first device, where
    /// [`HostDataParallel`] keeps the model and steps the optimizer.
    ModelDevice {
        /// The devices the model's parameters are on.
        model: Vec<String>,
        /// The first device of the list.
        first: String,
    },
}

impl fmt::Display for DataParallelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevices => write!(f, "data parallelism needs at least one device; the device list is empty"),
            Self::DuplicateDevice { device, first, second, devices } => write!(
                f,
                "device {device} appears twice in the device list (positions {first} and {second}); each device \
                 runs one replica, so list each once: {}",
                devices.join(", ")
            ),
            Self::MixedBackends { device, backend, expected, devices } => write!(
                f,
                "device {device} runs on backend {backend} but the first device runs on {expected}; every device \
                 of a data-parallel run must use the same backend (devices: {})",
                devices.join(", ")
            ),
            Self::Precision { device, precision, resolved, others } => match resolved {
                Ok(p) => write!(
                    f,
                    "device {device} would run precision {p} (fallback from {precision}) where the others run \
                     {others}; every replica must compute in the same dtype"
                ),
                Err(why) => write!(f, "device {device} cannot run precision {precision}: {why}"),
            },
            Self::ScalerMismatch { replica, has_scaler, first_has_scaler } => write!(
                f,
                "replica {replica}'s optimizer {} while replica 0's {}; every replica must use one shared \
                 GradScaler (clone one prepared optimizer per device) or none",
                if *has_scaler { "has a different GradScaler" } else { "has no GradScaler" },
                if *first_has_scaler { "has one" } else { "has none" },
            ),
            Self::ReplicaCount { optimizers, devices } => {
                write!(f, "{optimizers} optimizers for {devices} devices; a data-parallel loop steps one optimizer per device")
            }
            Self::ModelDevice { model, first } => write!(
                f,
                "the model's parameters are on {}, but the first device of the list is {first}; create the model on \
                 the first device (moving it between Wgpu devices is not possible in Burn 0.21)",
                model.join(", ")
            ),
        }
    }
}

/// The [`Display`](fmt::Display) message: a `main` returning `Result<(), Box<dyn Error>>`
/// prints an error's `Debug`, and that should say what is wrong and what to do. The
/// variants hold the same facts as fields, for code that matches on them.
impl fmt::Debug for DataParallelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DataParallelError {}

/// A checked device list for data-parallel training with mixed precision.
#[derive(Clone, Debug)]
pub struct DataParallel<B: Backend> {
    devices: Vec<B::Device>,
}

impl<B: Backend> DataParallel<B> {
    /// Checks that `devices` is non-empty, has no duplicates (by Burn's device id) and
    /// runs on one backend (by `Backend::name`).
    pub fn new(devices: Vec<B::Device>) -> Result<Self, DataParallelError> {
        let names: Vec<String> = devices.iter().map(|d| format!("{d:?}")).collect();
        let Some(first) = devices.first() else {
            return Err(DataParallelError::NoDevices);
        };
        for (second, device) in devices.iter().enumerate() {
            if let Some(first) = devices[..second].iter().position(|d| d.to_id() == device.to_id()) {
                return Err(DataParallelError::DuplicateDevice { device: names[second].clone(), first, second, devices: names });
            }
        }
        let expected = B::name(first);
        for (i, device) in devices.iter().enumerate().skip(1) {
            let backend = B::name(device);
            if backend != expected {
                return Err(DataParallelError::MixedBackends { device: names[i].clone(), backend, expected, devices: names });
            }
        }
        Ok(Self { devices })
    }

    /// The checked devices, in the order given.
    pub fn devices(&self) -> &[B::Device] {
        &self.devices
    }

    /// Checks that every device runs `precision` as the first device does (the same
    /// precision after any fallback `precision` allows), and returns it.
    pub fn check_precision(&self, precision: &MixedPrecision) -> Result<Precision, DataParallelError> {
        let describe = |device: &B::Device| format!("{device:?}");
        let first = precision.resolve::<B>(&self.devices[0]).map_err(|e| DataParallelError::Precision {
            device: describe(&self.devices[0]),
            precision: precision.precision(),
            resolved: Err(e.to_string()),
            others: precision.precision(),
        })?;
        for device in &self.devices[1..] {
            match precision.resolve::<B>(device) {
                Ok(p) if p == first => {}
                resolved => {
                    return Err(DataParallelError::Precision {
                        device: describe(device),
                        precision: precision.precision(),
                        resolved: resolved.map_err(|e| e.to_string()),
                        others: first,
                    });
                }
            }
        }
        Ok(first)
    }

    /// Checks that `model` lives on the first device, where [`HostDataParallel`] keeps it.
    pub fn check_model<M: Module<B>>(&self, model: &M) -> Result<(), DataParallelError> {
        let on = model.devices();
        if on.iter().all(|d| d.to_id() == self.devices[0].to_id()) {
            return Ok(());
        }
        Err(DataParallelError::ModelDevice {
            model: on.iter().map(|d| format!("{d:?}")).collect(),
            first: format!("{:?}", self.devices[0]),
        })
    }

    /// burn-mixed's own data-parallel strategy for burn-train ([`HostDataParallel`]): runs
    /// wherever the backend has several devices, Wgpu included, with one optimizer step per
    /// iteration on the first device (so the scaler counts one report per update).
    /// `op` combines the devices' gradients (`Mean`: the gradient of the mean loss over the
    /// global batch; burn-train's `MultiDevice` sums); `comm` is the dtype they move in.
    pub fn host_staged<LC, O>(&self, optimizer: &PrecisionOptimizer<O>, op: ReduceOp, comm: CommDtype) -> TrainingStrategy<LC>
    where
        B: AutodiffBackend,
        LC: LearningComponentsTypes<Backend = B> + 'static,
    {
        if let Some(scaler) = optimizer.scaler() {
            scaler.set_replicas(1, None);
        }
        TrainingStrategy::Custom(Arc::new(HostDataParallel::<LC>::new(self.devices.clone(), op, comm)))
    }

    /// burn-train's `MultiDevice` strategy for a prepared optimizer: one optimizer step
    /// per iteration, so the scaler counts one report per update.
    pub fn multi_device<O>(&self, optimizer: &PrecisionOptimizer<O>, optim: MultiDeviceOptim) -> ExecutionStrategy<B> {
        if let Some(scaler) = optimizer.scaler() {
            scaler.set_replicas(1, None);
        }
        ExecutionStrategy::MultiDevice(self.devices.clone(), optim)
    }

    /// burn-train's DDP strategy for a prepared optimizer: every device steps a clone of
    /// it, so the scaler makes one update from the devices' N reports.
    #[cfg(feature = "distributed")]
    pub fn ddp<O>(
        &self,
        optimizer: &PrecisionOptimizer<O>,
        config: burn::tensor::backend::distributed::DistributedConfig,
    ) -> ExecutionStrategy<B>
    where
        B: burn::tensor::backend::distributed::DistributedBackend,
    {
        if let Some(scaler) = optimizer.scaler() {
            scaler.set_replicas(self.devices.len(), None);
        }
        ExecutionStrategy::ddp(self.devices.clone(), config)
    }

    /// For a hand-written data-parallel loop: `optimizers[i]` steps the replica on
    /// `devices[i]`. Checks that there is one per device and that they share one scaler
    /// (or none has one), then makes the scaler wait for all of them at each update.
    pub fn replicas<O>(&self, optimizers: &[PrecisionOptimizer<O>]) -> Result<(), DataParallelError> {
        if optimizers.len() != self.devices.len() {
            return Err(DataParallelError::ReplicaCount { optimizers: optimizers.len(), devices: self.devices.len() });
        }
        let first: Option<&GradScaler> = optimizers[0].scaler();
        for (replica, optimizer) in optimizers.iter().enumerate().skip(1) {
            let same = match (first, optimizer.scaler()) {
                (Some(a), Some(b)) => a.same_as(b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Err(DataParallelError::ScalerMismatch {
                    replica,
                    has_scaler: optimizer.scaler().is_some(),
                    first_has_scaler: first.is_some(),
                });
            }
        }
        if let Some(scaler) = first {
            scaler.set_replicas(self.devices.len(), None);
        }
        Ok(())
    }
}
