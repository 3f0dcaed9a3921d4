//! A gradient all-reduce for hand-written data-parallel loops, optionally moving the
//! gradients between devices in half precision.
//!
//! Transfers go through the host (a copy to host memory and an upload): Burn 0.21's `to_device` between
//! two Wgpu devices panics (see there), and a host copy works on every backend.
//!
//! Burn's own DDP all-reduces inside the backward pass (its sync server calls the inner
//! backend's collective, in the gradient's dtype: f32 under the mixed precisions), where
//! `Mixed` cannot reach. This one takes the replicas' finished gradients: each replica's
//! gradient goes to the first device, the sum is formed there in the gradient's own dtype,
//! in device order (so every run and every device sees the same sum), and the result goes
//! back to every device.
//!
//! With [`CommDtype::F16`] or [`CommDtype::BF16`] only the transfers are in half
//! precision (PyTorch DDP's fp16/bf16 compression hooks, DeepSpeed's communication dtype):
//! each gradient is narrowed on its own device just before it leaves and widened on
//! arrival, the sum is formed in the gradient's dtype, and the result is narrowed once for
//! the way back. The first device uses the narrowed result too, so every replica holds the
//! same bits. The gradients come back in their own dtype, so the optimizer's unscale and
//! overflow check still run in f32. Under [`ReduceOp::Mean`] each gradient is divided by
//! the number of replicas *before* it is narrowed, so that the f16 range is spent on the
//! averaged values; a scaled gradient that still overflows f16 arrives as inf, and the loss
//! scaler skips the step and backs off, as for any other overflow.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, Tensor};

use crate::autocast::no_autocast;

/// The dtype gradients travel in between devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommDtype {
    /// The gradients' own dtype (f32 under the mixed precisions): exact transfers.
    #[default]
    Native,
    /// Half the bytes; 10 mantissa bits, range up to 65504.
    F16,
    /// Half the bytes; 7 mantissa bits, f32's range (needs a backend with bf16).
    BF16,
}

impl CommDtype {
    /// The half dtype transfers are narrowed to; `None` for the gradients' own dtype.
    pub fn narrow(self) -> Option<FloatDType> {
        match self {
            Self::Native => None,
            Self::F16 => Some(FloatDType::F16),
            Self::BF16 => Some(FloatDType::BF16),
        }
    }
}

/// How the replicas' gradients combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReduceOp {
    /// The sum (what burn-train's multi-device strategy gives the optimizer).
    Sum,
    /// The mean (the gradient of the mean loss over the global batch).
    #[default]
    Mean,
}

/// What an all-reduce moved between devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllReduceReport {
    /// Bytes that left one device for another (to the first device and back).
    pub bytes_moved: u64,
    /// Tensor transfers between devices.
    pub transfers: u64,
    /// Parameters whose gradients were reduced.
    pub parameters: usize,
}

/// All-reduces `grads[i]` (the gradients of `module`'s replica on `devices[i]`): returns
/// one `GradientsParams` per device holding the combined gradients on that device, and
/// what moved. A parameter with a gradient on some replicas only counts as zero on the
/// others (a branch one replica's batch did not reach).
///
/// # Panics
/// If `grads` and `devices` differ in length or are empty (a programming error: the
/// device list was checked by [`DataParallel`](super::DataParallel)).
pub fn all_reduce<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: Vec<GradientsParams>,
    devices: &[B::Device],
    op: ReduceOp,
    comm: CommDtype,
) -> (Vec<GradientsParams>, AllReduceReport) {
    reduce(module, grads, devices, op, comm, true)
}

/// [`all_reduce`] without the way back: the combined gradients on the first device only
/// (for a single optimizer stepping there, as [`HostDataParallel`](super::HostDataParallel)
/// runs it). The same bits as `all_reduce`'s first device.
pub fn reduce_to_first<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: Vec<GradientsParams>,
    devices: &[B::Device],
    op: ReduceOp,
    comm: CommDtype,
) -> (GradientsParams, AllReduceReport) {
    let (mut out, report) = reduce(module, grads, devices, op, comm, false);
    (out.swap_remove(0), report)
}

fn reduce<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: Vec<GradientsParams>,
    devices: &[B::Device],
    op: ReduceOp,
    comm: CommDtype,
    broadcast: bool,
) -> (Vec<GradientsParams>, AllReduceReport) {
    assert!(
        !devices.is_empty() && grads.len() == devices.len(),
        "all_reduce: {} gradient sets for {} devices; pass one per device",
        grads.len(),
        devices.len()
    );
    let receivers = if broadcast { devices.len() } else { 1 };
    no_autocast(|| {
        let mut visitor = Reduce::<B> {
            devices,
            out: (0..receivers).map(|_| GradientsParams::new()).collect(),
            grads,
            op,
            comm,
            report: AllReduceReport::default(),
        };
        module.visit(&mut visitor);
        (visitor.out, visitor.report)
    })
}

struct Reduce<'a, B: AutodiffBackend> {
    devices: &'a [B::Device],
    grads: Vec<GradientsParams>,
    out: Vec<GradientsParams>,
    op: ReduceOp,
    comm: CommDtype,
    report: AllReduceReport,
}

impl<B: AutodiffBackend> Reduce<'_, B> {
    fn send<const D: usize>(&mut self, tensor: Tensor<B::InnerBackend, D>, to: &B::Device) -> Tensor<B::InnerBackend, D> {
        let (data, bytes) = super::host_copy(tensor);
        self.report.transfers += 1;
        self.report.bytes_moved += bytes;
        data(to)
    }
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Reduce<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let parts: Vec<Option<Tensor<B::InnerBackend, D>>> =
            self.grads.iter_mut().map(|g| g.remove::<B::InnerBackend, D>(param.id)).collect();
        let Some(template) = parts.iter().flatten().next().cloned() else {
            return;
        };
        self.report.parameters += 1;
        let dtype = FloatDType::from(template.dtype());
        let replicas = parts.len();
        let root = self.devices[0].clone();
        let mut sum: Option<Tensor<B::InnerBackend, D>> = None;
        for (i, part) in parts.into_iter().enumerate() {
            let part = part.unwrap_or_else(|| Tensor::zeros(template.shape(), (&self.devices[i], template.dtype())));
            let part = match self.op {
                ReduceOp::Mean => part.div_scalar(replicas as f64),
                ReduceOp::Sum => part,
            };
            let outgoing = match self.comm.narrow() {
                Some(half) => part.cast(half),
                None => part,
            };
            let arrived = if i == 0 { outgoing } else { self.send(outgoing, &root) }.cast(dtype);
            sum = Some(match sum {
                None => arrived,
                Some(acc) => acc + arrived,
            });
        }
        let sum = sum.expect("at least one replica");
        let result = match self.comm.narrow() {
            Some(half) => sum.cast(half),
            None => sum,
        };
        // Every device under `all_reduce`; the first only under `reduce_to_first`.
        for i in 0..self.out.len() {
            let device = self.devices[i].clone();
            let local = if i == 0 { result.clone() } else { self.send(result.clone(), &device) };
            self.out[i].register::<B::InnerBackend, D>(param.id, local.cast(dtype));
        }
    }
}
