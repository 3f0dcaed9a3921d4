//! burn-mixed's data-parallel strategy for burn-train (`DataParallel::host_staged`), run by
//! `SupervisedTraining` on two Wgpu devices (see `dp/mod.rs` for what two lavapipe devices
//! can and cannot show): the same training as one device over each step's global batch,
//! and a resume from burn-train's checkpoint that continues bit for bit, loss scale
//! included.

#![cfg(feature = "wgpu")]

mod dp;

use std::path::{Path, PathBuf};

use burn::backend::wgpu::WgpuDevice;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, Learner, RegressionOutput, SupervisedTraining, TrainOutput, TrainStep};
use burn_mixed::data_parallel::{CommDtype, DataParallel, DataParallelError, ReduceOp};
use burn_mixed::{GradScalerConfig, MixedPrecision, Precision};
use dp::{Mlp, Train, bits, max_rel_diff, params};

const LR: f64 = 0.01;
/// Rows per device per step.
const BATCH: usize = 8;
const STEPS: usize = 4;

/// The first device is Wgpu's default one: burn-train loads checkpoints onto the default
/// device, and a model elsewhere would then need `to_device` between two Wgpu devices.
fn devices() -> Vec<WgpuDevice> {
    vec![WgpuDevice::DefaultDevice, WgpuDevice::Cpu]
}

#[derive(Clone, Debug)]
pub struct Batch<B: Backend> {
    x: Tensor<B, 2>,
    y: Tensor<B, 2>,
}

/// Items are row numbers of `dp::row`.
#[derive(Clone)]
struct Rows;

fn gather<B: Backend>(items: &[usize], device: &B::Device) -> Batch<B> {
    let (x, y) = dp::gather(items, device);
    Batch { x, y }
}

impl<B: Backend> Batcher<B, usize, Batch<B>> for Rows {
    fn batch(&self, items: Vec<usize>, device: &B::Device) -> Batch<B> {
        gather(&items, device)
    }
}

fn regression<B: Backend>(model: &Mlp<B>, batch: Batch<B>) -> RegressionOutput<B> {
    let out = model.forward(batch.x);
    let loss = (out.clone() - batch.y.clone()).powi_scalar(2).mean();
    RegressionOutput::new(loss, out, batch.y)
}

impl<B: AutodiffBackend> TrainStep for Mlp<B> {
    type Input = Batch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: Batch<B>) -> TrainOutput<RegressionOutput<B>> {
        let output = regression(self, batch);
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl<B: Backend> InferenceStep for Mlp<B> {
    type Input = Batch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: Batch<B>) -> RegressionOutput<B> {
        regression(self, batch)
    }
}

fn setup(precision: Precision, scaler: GradScalerConfig) -> MixedPrecision {
    MixedPrecision::new(precision).with_scaler(scaler)
}

/// What a run ends with: the parameters and the scaler's state (16-mixed).
struct Outcome {
    params: Vec<Vec<f32>>,
    scaler: Option<burn_mixed::scaler::ScalerState>,
    skipped: u64,
}

/// `epochs` epochs of `SupervisedTraining` with the host-staged strategy over `devices()`,
/// SGD, `STEPS` steps per epoch; `resume` continues from burn-train's checkpoint of that
/// epoch in `dir`.
fn supervised(precision: Precision, scaler: GradScalerConfig, epochs: usize, dir: &Path, resume: Option<usize>) -> Outcome {
    let devices = devices();
    let plan = DataParallel::<Train>::new(devices.clone()).expect("two distinct Wgpu devices");
    let setup = setup(precision, scaler);
    assert_eq!(plan.check_precision(&setup), Ok(precision));
    let prepared = setup.setup::<Train, _, _>(&devices[0], Mlp::new(&devices[0]), SgdConfig::new().init()).expect("lavapipe runs f16");
    assert_eq!(plan.check_model(&prepared.model), Ok(()));
    let strategy = plan.host_staged(&prepared.optimizer, ReduceOp::Mean, CommDtype::Native);
    let rows = devices.len() * BATCH * STEPS;
    let train = DataLoaderBuilder::new(Rows).batch_size(BATCH).set_device(devices[0].clone()).build(InMemDataset::new((0..rows).collect()));
    let valid =
        DataLoaderBuilder::new(Rows).batch_size(BATCH).set_device(devices[0].clone()).build(InMemDataset::new((rows..rows + 16).collect()));
    let mut training = SupervisedTraining::new(dir, train, valid)
        .num_epochs(epochs)
        .with_application_logger(None)
        .with_file_checkpointer(BinFileRecorder::<FullPrecisionSettings>::new())
        .with_training_strategy(strategy);
    if let Some(epoch) = resume {
        training = training.checkpoint(epoch);
    }
    let trained = training.launch(Learner::new(prepared.model, prepared.optimizer, LR)).model;
    Outcome {
        params: params(trained.module()),
        scaler: prepared.scaler.as_ref().map(|s| s.state()),
        skipped: prepared.scaler.as_ref().map_or(0, |s| s.skipped_steps()),
    }
}

/// The same steps by hand on one device: step `k` over device 0's batch `k` of the first
/// half of the rows followed by device 1's batch `k` of the second half (burn-train's
/// `split_dataloader` gives each device a contiguous share).
fn one_device(precision: Precision, scaler: GradScalerConfig) -> Vec<Vec<f32>> {
    let device = WgpuDevice::DefaultDevice;
    let prepared = setup(precision, scaler).setup::<Train, _, _>(&device, Mlp::new(&device), SgdConfig::new().init()).expect("f16");
    let (mut model, mut optim) = (prepared.model, prepared.optimizer);
    let share = 2 * BATCH * STEPS / 2;
    for step in 0..STEPS {
        let items: Vec<usize> = (0..2).flat_map(|d| (d * share + step * BATCH)..(d * share + (step + 1) * BATCH)).collect();
        let batch = gather::<Train>(&items, &device);
        let grads = model.run(|net| GradientsParams::from_grads(regression(net, batch).loss.backward(), net)).expect("no region");
        model = optim.step(LR, model, grads);
    }
    params(model.module())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burn-mixed-dp-strategy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn supervised_training_on_two_devices_matches_one_device_over_the_global_batch() {
    let scaler = GradScalerConfig { init_scale: 1024.0, ..Default::default() };
    let init = params(&Mlp::<Train>::new(&WgpuDevice::DefaultDevice));
    let moved =
        |p: &[Vec<f32>]| -> Vec<Vec<f32>> { p.iter().zip(&init).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect()).collect() };
    for precision in [Precision::True32, Precision::Mixed16] {
        let dir = temp_dir(precision.as_str());
        let run = supervised(precision, scaler, 1, &dir, None);
        let _ = std::fs::remove_dir_all(&dir);
        let reference = one_device(precision, scaler);
        assert_ne!(bits(&run.params), bits(&init), "{precision}: training moved the parameters");
        // Not bitwise: each device's mean over 8 rows, averaged, rounds differently from one
        // mean over 16 rows (and under 16-mixed each device's f16 products round on their
        // own rows). Measured on the update (final minus initial), relative to its largest.
        let diff = max_rel_diff(&moved(&run.params), &moved(&reference));
        let tolerance = if precision == Precision::True32 { 1e-5 } else { 2e-3 };
        eprintln!("{precision}: two devices vs one over the global batch, max difference {diff:e} of the largest update");
        assert!(diff <= tolerance, "{precision}: {diff:e} > {tolerance:e}");
        if precision == Precision::Mixed16 {
            let state = run.scaler.expect("16-mixed has a scaler");
            assert_eq!((run.skipped, state.scale), (0, 1024.0), "no overflow at scale 1024, one report per step");
        }
    }
}

#[test]
fn resuming_from_a_checkpoint_continues_parameters_and_loss_scale_bit_for_bit() {
    // A scale of 2^20 overflows f16 in this model's backward pass, so the first epoch skips
    // steps and backs off; growth every 2 good steps then moves the scale again.
    let scaler = GradScalerConfig { init_scale: 1048576.0, growth_interval: 2, ..Default::default() };
    let straight_dir = temp_dir("straight");
    let straight = supervised(Precision::Mixed16, scaler, 2, &straight_dir, None);
    let _ = std::fs::remove_dir_all(&straight_dir);

    let resumed_dir = temp_dir("resumed");
    let first = supervised(Precision::Mixed16, scaler, 1, &resumed_dir, None);
    let after_first = first.scaler.clone().expect("16-mixed has a scaler");
    eprintln!("after epoch 1: {after_first:?}; after epoch 2: {:?}", straight.scaler);
    assert!(first.skipped > 0, "the first epoch skips steps (scale 2^20 overflows f16)");
    assert!(after_first.steps > after_first.skipped_steps, "the first epoch also stepped");
    let resumed = supervised(Precision::Mixed16, scaler, 2, &resumed_dir, Some(1));
    let _ = std::fs::remove_dir_all(&resumed_dir);

    assert_eq!(bits(&resumed.params), bits(&straight.params), "parameters after resuming at epoch 1");
    assert_eq!(resumed.scaler, straight.scaler, "scaler state after resuming at epoch 1");
    assert_eq!(resumed.skipped, straight.skipped);
    assert_ne!(bits(&resumed.params), bits(&first.params), "the second epoch trained");
}

#[test]
fn a_model_off_the_first_device_is_refused_before_training() {
    let plan = DataParallel::<Train>::new(devices()).expect("two distinct Wgpu devices");
    let model = Mlp::<Train>::new(&WgpuDevice::Cpu);
    let err = plan.check_model(&model).expect_err("the model is on the second device");
    assert!(matches!(&err, DataParallelError::ModelDevice { first, .. } if first == "DefaultDevice"), "{err:?}");
    let message = err.to_string();
    for needle in ["Cpu", "DefaultDevice", "create the model on the first device"] {
        assert!(message.contains(needle), "{needle:?} missing from: {message}");
    }
}
