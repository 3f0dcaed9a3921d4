//! `--devices` and `--strategy`: which devices train, data-parallel, and how.

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use burn::train::LearningComponentsTypes;
use burn::train::{ExecutionStrategy, MultiDeviceOptim, TrainingStrategy};
use burn_mixed::data_parallel::{CommDtype, DataParallel, ReduceOp};
use burn_mixed::{Mixed, MixedPrecision, PrecisionOptimizer};
use clap::ValueEnum;

/// How several devices train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyKind {
    /// burn-mixed's strategy: replicas run from one thread, gradients averaged through the
    /// host, one optimizer step on the first device. Runs on every backend.
    Host,
    /// burn-train's `MultiDevice` with `OptimMainDevice` (gradients summed, one step on the
    /// first device).
    Multi,
    /// burn-train's `MultiDevice` with `OptimSharded`.
    MultiSharded,
}

/// The devices `--devices` names on a backend.
pub trait DeviceList: Backend {
    /// `spec` is a count or, where the backend has kinds of devices, a comma-separated list.
    fn parse_devices(spec: &str) -> Result<Vec<Self::Device>, String>;

    /// Why burn-train's `MultiDevice` cannot run here, if it cannot.
    fn multi_device_unsupported() -> Option<&'static str> {
        None
    }
}

fn count(spec: &str, backend: &str, valid: &str) -> Result<usize, String> {
    match spec.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--devices {spec:?} is not valid on {backend}; valid: {valid}")),
    }
}

/// A backend with one device: `--devices 1` only.
fn single<D: Default>(spec: &str, backend: &str) -> Result<Vec<D>, String> {
    match count(spec, backend, "1")? {
        1 => Ok(vec![D::default()]),
        n => Err(format!("--devices {n}: {backend} has one device (the host); use --backend wgpu or cuda for several")),
    }
}

#[cfg(feature = "flex")]
impl DeviceList for burn::backend::Flex {
    fn parse_devices(spec: &str) -> Result<Vec<Self::Device>, String> {
        single(spec, "flex")
    }
}

#[cfg(feature = "ndarray")]
impl DeviceList for burn::backend::NdArray {
    fn parse_devices(spec: &str) -> Result<Vec<Self::Device>, String> {
        single(spec, "ndarray")
    }
}

#[cfg(feature = "wgpu")]
impl DeviceList for burn::backend::Wgpu {
    /// A count N means discrete GPUs 0..N; names: default, cpu (lavapipe, or another CPU
    /// adapter), discrete:I, integrated:I, virtual:I.
    fn parse_devices(spec: &str) -> Result<Vec<Self::Device>, String> {
        use burn::backend::wgpu::WgpuDevice;
        const VALID: &str = "a count N (discrete GPUs 0..N) or a list of default, cpu, discrete:I, integrated:I, virtual:I";
        if let Ok(n) = spec.trim().parse::<usize>() {
            return match n {
                0 => Err(format!("--devices 0 is not valid on wgpu; valid: {VALID}")),
                1 => Ok(vec![WgpuDevice::DefaultDevice]),
                n => Ok((0..n).map(WgpuDevice::DiscreteGpu).collect()),
            };
        }
        spec.split(',')
            .map(|name| {
                let name = name.trim();
                let indexed = |prefix: &str| name.strip_prefix(prefix).and_then(|i| i.parse::<usize>().ok());
                match name {
                    "default" => Ok(WgpuDevice::DefaultDevice),
                    "cpu" => Ok(WgpuDevice::Cpu),
                    _ => indexed("discrete:")
                        .map(WgpuDevice::DiscreteGpu)
                        .or_else(|| indexed("integrated:").map(WgpuDevice::IntegratedGpu))
                        .or_else(|| indexed("virtual:").map(WgpuDevice::VirtualGpu))
                        .ok_or_else(|| format!("--devices: unknown wgpu device {name:?}; valid: {VALID}")),
                }
            })
            .collect()
    }

    fn multi_device_unsupported() -> Option<&'static str> {
        Some(
            "burn-train's MultiDevice cannot run on wgpu in Burn 0.21 (to_device between two Wgpu devices panics: \
             only CubeCL's Cuda server implements device-to-device transfers); use --strategy host",
        )
    }
}

#[cfg(feature = "cuda")]
impl DeviceList for burn::backend::Cuda {
    fn parse_devices(spec: &str) -> Result<Vec<Self::Device>, String> {
        let n = count(spec, "cuda", "a count N (GPUs 0..N)")?;
        Ok((0..n).map(burn::backend::cuda::CudaDevice::new).collect())
    }
}

/// The checked plan for `devices`, or why it cannot train.
pub fn plan<X: DeviceList>(
    devices: Vec<X::Device>,
    precision: &MixedPrecision,
    strategy: StrategyKind,
) -> Result<DataParallel<Mixed<Autodiff<X>>>, String> {
    if devices.len() > 1
        && strategy != StrategyKind::Host
        && let Some(why) = X::multi_device_unsupported()
    {
        return Err(why.into());
    }
    let plan = DataParallel::<Mixed<Autodiff<X>>>::new(devices).map_err(|e| e.to_string())?;
    plan.check_precision(precision).map_err(|e| e.to_string())?;
    Ok(plan)
}

/// burn-train's strategy for `plan` (one device: burn-train's own single-device one).
pub fn strategy<X: DeviceList, LC, O>(
    plan: &DataParallel<Mixed<Autodiff<X>>>,
    optimizer: &PrecisionOptimizer<O>,
    kind: StrategyKind,
) -> TrainingStrategy<LC>
where
    LC: LearningComponentsTypes<Backend = Mixed<Autodiff<X>>> + 'static,
{
    if plan.devices().len() == 1 {
        return TrainingStrategy::Default(ExecutionStrategy::SingleDevice(plan.devices()[0].clone()));
    }
    match kind {
        StrategyKind::Host => plan.host_staged(optimizer, ReduceOp::Mean, CommDtype::Native),
        StrategyKind::Multi => TrainingStrategy::Default(plan.multi_device(optimizer, MultiDeviceOptim::OptimMainDevice)),
        StrategyKind::MultiSharded => TrainingStrategy::Default(plan.multi_device(optimizer, MultiDeviceOptim::OptimSharded)),
    }
}
