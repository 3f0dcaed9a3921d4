//! burn-train's `SupervisedTraining` trains the prepared model with the user's own
//! `TrainStep` and `InferenceStep`, and both run under the model's precision, on whichever
//! thread burn-train calls them from; afterwards nothing of that precision remains.

mod common;

use std::sync::{Arc, Mutex};

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::nn::loss::{MseLoss, Reduction};
use burn::optim::SgdConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType};
use burn::train::MultiDeviceOptim;
use burn::train::{InferenceStep, Learner, RegressionOutput, SupervisedTraining, TrainOutput, TrainStep};
use burn_mixed::autocast::{AutocastState, autocast_state};
use burn_mixed::data_parallel::DataParallel;
use burn_mixed::{MixedPrecision, Precision};
use common::{Train, data};

/// What one step saw: where it ran, the autocast state, the dtype of the layer's output
/// and the scale its own backward pass applied (training only).
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    training: bool,
    state: AutocastState,
    output: DType,
    backward_scale: Option<f32>,
}

#[derive(Clone, Debug, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A user's model, written with no knowledge of burn-mixed, that logs what its steps see.
#[derive(Module, Debug)]
struct Probe<B: Backend> {
    linear: Linear<B>,
    #[module(skip)]
    log: Log,
}

#[derive(Clone, Debug)]
struct Item([f32; 4]);

#[derive(Clone, Debug)]
struct Batch<B: Backend> {
    x: Tensor<B, 2>,
    y: Tensor<B, 2>,
}

#[derive(Clone)]
struct ItemBatcher;

impl<B: Backend> Batcher<B, Item, Batch<B>> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &B::Device) -> Batch<B> {
        let n = items.len();
        let values: Vec<f32> = items.iter().flat_map(|i| i.0).collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(values, [n, 4]), device);
        let y = x.clone().sum_dim(1) * 0.5;
        Batch { x, y }
    }
}

impl<B: Backend> Probe<B> {
    fn regression(&self, batch: Batch<B>) -> (RegressionOutput<B>, DType) {
        let out = self.linear.forward(batch.x);
        let dtype = out.dtype();
        let loss = MseLoss::new().forward(out.clone(), batch.y.clone(), Reduction::Mean);
        (RegressionOutput::new(loss, out.cast(FloatDType::F32), batch.y), dtype)
    }
}

impl<B: AutodiffBackend> TrainStep for Probe<B> {
    type Input = Batch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: Batch<B>) -> TrainOutput<RegressionOutput<B>> {
        let device = batch.x.device();
        let (output, dtype) = self.regression(batch);
        // A separate leaf shows the scale this thread's backward applies: d(sum(x))/dx = 1.
        let leaf = Tensor::<B, 1>::ones([1], &device).require_grad();
        let grads = leaf.clone().sum().backward();
        let backward_scale = leaf.grad(&grads).map(|g| g.into_data().to_vec::<f32>().expect("f32")[0]);
        self.log.push(Seen { training: true, state: autocast_state(), output: dtype, backward_scale });
        TrainOutput::new(self, output.loss.backward(), output)
    }
}

impl<B: Backend> InferenceStep for Probe<B> {
    type Input = Batch<B>;
    type Output = RegressionOutput<B>;

    fn step(&self, batch: Batch<B>) -> RegressionOutput<B> {
        let (output, dtype) = self.regression(batch);
        self.log.push(Seen { training: false, state: autocast_state(), output: dtype, backward_scale: None });
        output
    }
}

fn items(count: usize, seed: u64) -> Vec<Item> {
    let values = data::<burn::backend::Flex>(count, 4, seed, &Default::default()).into_data().to_vec::<f32>().expect("f32");
    values.chunks(4).map(|c| Item([c[0], c[1], c[2], c[3]])).collect()
}

/// Trains one epoch of 4 training and 2 validation batches under `precision`; returns what
/// the steps saw and the final weight.
fn train(precision: Precision) -> (Vec<Seen>, Vec<f32>) {
    train_with(precision, None)
}

/// [`train`], under burn-train's `MultiDevice` strategy with `optim` when given (built by
/// `DataParallel::multi_device` on Flex's one device).
fn train_with(precision: Precision, multi: Option<MultiDeviceOptim>) -> (Vec<Seen>, Vec<f32>) {
    let device = Default::default();
    let log = Log::default();
    let linear = Linear {
        weight: Param::from_tensor(data::<Train>(4, 1, 7, &device)),
        bias: Some(Param::from_tensor(data::<Train>(1, 1, 8, &device).reshape([1]))),
    };
    let model = Probe { linear, log: log.clone() };
    let prepared =
        MixedPrecision::new(precision).setup::<Train, _, _>(&device, model, SgdConfig::new().init()).expect("flex runs every precision");
    let train_loader = DataLoaderBuilder::new(ItemBatcher).batch_size(8).build(InMemDataset::new(items(32, 1)));
    let valid_loader = DataLoaderBuilder::new(ItemBatcher).batch_size(8).build(InMemDataset::new(items(16, 2)));
    let dir = std::env::temp_dir().join(format!("burn-mixed-learner-{precision}-{multi:?}-{}", std::process::id()));
    let mut training = SupervisedTraining::new(&dir, train_loader, valid_loader).num_epochs(1).with_application_logger(None);
    if let Some(optim) = multi {
        let plan = DataParallel::<Train>::new(vec![device]).expect("one device");
        training = training.with_training_strategy(plan.multi_device(&prepared.optimizer, optim).into());
    }
    let trained = training.launch(Learner::new(prepared.model, prepared.optimizer, 0.05)).model;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(trained.precision(), precision, "burn-train hands back the prepared model");
    let weight = trained.module().linear.weight.val().into_data().to_vec::<f32>().expect("f32 parameters");
    (log.take(), weight)
}

#[test]
fn supervised_training_runs_steps_and_validation_under_the_precision() {
    let (reference, f32_weight) = train(Precision::True32);
    assert!(reference.iter().all(|s| s.state == AutocastState::Disabled && s.output == DType::F32));
    for (precision, dtype, scale) in [(Precision::MixedBf16, FloatDType::BF16, 1.0), (Precision::Mixed16, FloatDType::F16, 65536.0)] {
        let (seen, weight) = train(precision);
        let (training, validation): (Vec<_>, Vec<_>) = seen.iter().partition(|s| s.training);
        assert_eq!((training.len(), validation.len()), (4, 2), "{precision}: every step logged");
        for s in training.iter().chain(&validation) {
            assert_eq!(s.state, AutocastState::Enabled(dtype), "{precision}: {s:?}");
            assert_eq!(s.output, DType::from(dtype), "{precision}: the linear layer autocasts");
        }
        // Every training backward was scaled by the scale in force: 65536 at first under
        // 16-mixed, halved after an overflow (f16 outputs of this model overflow at 65536 x
        // the loss), never below 1; nothing under bf16-mixed.
        let scales: Vec<f32> = training.iter().map(|s| s.backward_scale.expect("the leaf has a gradient")).collect();
        assert_eq!(scales[0], scale, "{precision}: {scales:?}");
        assert!(scales.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] / 2.0), "{precision}: {scales:?}");
        assert!(scales.iter().all(|s| *s >= 1.0), "{precision}: {scales:?}");
        // Trained in its precision: close to the f32 run, and not equal to it.
        assert_ne!(weight, f32_weight, "{precision} changed the arithmetic");
        for (w, r) in weight.iter().zip(&f32_weight) {
            assert!((w - r).abs() < 0.05, "{precision}: weight {w} vs f32 {r}");
        }
    }
    // Nothing of those runs remains on this thread or the device.
    assert_eq!(autocast_state(), AutocastState::Outside);
    let (after, after_weight) = train(Precision::True32);
    assert_eq!(after, reference);
    assert_eq!(after_weight, f32_weight, "a 32-true run after them is bit-identical");
}

/// burn-train's `MultiDevice` strategy (its worker threads, the gradients moved to the main
/// device, and under `OptimSharded` the optimizer's `step_multi`) with the prepared model
/// and optimizer, on Flex's one device: the same steps, scales and weights, bit for bit, as
/// the default single-device strategy (16-mixed overflows and backs off on this model).
#[test]
fn burn_train_multi_device_strategies_run_the_prepared_model_and_optimizer() {
    let (reference, weight) = train(Precision::Mixed16);
    for optim in [MultiDeviceOptim::OptimMainDevice, MultiDeviceOptim::OptimSharded] {
        let (seen, multi_weight) = train_with(Precision::Mixed16, Some(optim));
        assert_eq!(seen, reference, "{optim:?}: every step saw the same precision, dtype and scale");
        assert_eq!(
            multi_weight.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
            weight.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
            "{optim:?}"
        );
    }
}
