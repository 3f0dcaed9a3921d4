//! Trains a small model with burn-train under any precision, on any compiled backend, or
//! compares precisions side by side.
//!
//! ```sh
//! cargo run --release --example train                                  # transformer, 32-true, Flex
//! cargo run --release --example train -- --precision bf16-mixed --steps 200
//! cargo run --release --example train -- --lr 1e-3 --warmup-fraction 0.1
//! cargo run --release --example train -- --compare all                 # every precision, a table and a plot
//! cargo run --release --example train -- --model mlp --compare 32-true,16-mixed
//! BURN_PRECISION=16-mixed cargo run --release --example train
//! cargo run --release --features wgpu --example train -- --backend wgpu --precision 16-mixed
//! cargo run --release --features wgpu --example train -- --backend wgpu --devices default,cpu --precision 16-mixed
//! ```
//!
//! The training code is plain burn-train: a `TrainStep` that calls `loss.backward()`, a
//! `Learner` with a learning-rate schedule (a linear warm-up, then a cosine decay: burn's
//! own schedulers, in `schedule.rs`) and `SupervisedTraining`. Mixed precision is `MixedPrecision::setup` on the
//! model and optimizer (the model comes back bound to its precision, and burn-train runs its
//! steps, training and validation, inside that precision on its own threads),
//! `MixedPrecision::input`/`output` in the models' forward passes, and two optional metrics
//! for the loss scaler. Progress goes to burn-train's terminal UI or to stderr; stdout gets
//! a summary (or the comparison's table) and, as its last line, one JSON object.
//!
//! Here: `compare.rs` (the table, CSV and JSON of `--compare`), `plot.rs` (its PNG),
//! `devices.rs` (`--devices`, `--strategy`), `render.rs` (progress and per-step recording),
//! `report.rs` (a run's results), `schedule.rs`. Shared with the inference example, in
//! `examples/common/`: the tasks, the models, the artifacts and the GPU adapter check.

#[path = "../common/mod.rs"]
mod common;
mod compare;
#[path = "../../support/counting_alloc.rs"]
mod counting_alloc;
mod devices;
mod plot;
mod render;
mod report;
mod schedule;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::optim::AdamConfig;
use burn::tensor::backend::Backend;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{ClassificationOutput, ItemLazy, Learner, SupervisedTraining};
use burn_mixed::train::ScalerMetric;
use burn_mixed::{Mixed, MixedPrecision, Precision, Prepared};
use clap::Parser;

use common::adapter;
use common::artifacts::{self, SavedConfig};
use common::model::{self, ModelKind};
use common::task::{self, TaskBatcher};
use compare::CompareList;
use counting_alloc::CountingAlloc;
use devices::{DeviceList, StrategyKind};
use render::{MetricValues, Recorder, RendererKind};
use report::Outcome;
use schedule::WarmupCosine;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Backends the example knows; `compiled()` says which this build has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BackendKind {
    Flex,
    NdArray,
    Wgpu,
    Cuda,
}

impl BackendKind {
    const ALL: [(BackendKind, &'static str, bool); 4] = [
        (Self::Flex, "flex", cfg!(feature = "flex")),
        (Self::NdArray, "ndarray", cfg!(feature = "ndarray")),
        (Self::Wgpu, "wgpu", cfg!(feature = "wgpu")),
        (Self::Cuda, "cuda", cfg!(feature = "cuda")),
    ];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(k, ..)| *k == self).map(|(_, n, _)| *n).unwrap_or("?")
    }

    fn compiled() -> Vec<&'static str> {
        Self::ALL.iter().filter(|(.., on)| *on).map(|(_, n, _)| *n).collect()
    }

    /// Runs on the host: its tensors are counted by the allocator, and it needs no adapter.
    fn is_host(self) -> bool {
        matches!(self, Self::Flex | Self::NdArray)
    }
}

fn parse_backend(value: &str) -> Result<BackendKind, String> {
    let compiled = BackendKind::compiled().join(", ");
    match BackendKind::ALL.iter().find(|(_, name, _)| *name == value.trim()) {
        Some((kind, _, true)) => Ok(*kind),
        Some((_, name, false)) => {
            Err(format!("backend {name} is not compiled in (build with --features {name}); compiled backends: {compiled}"))
        }
        None => Err(format!("unknown backend; compiled backends: {compiled}")),
    }
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Trains a small transformer (or MLP) with burn-train under a chosen precision, or compares precisions")]
struct Args {
    /// Precision: "32-true" ("32"), "64-true" ("64"), "16-mixed" ("16"), "bf16-mixed" ("bf16"),
    /// "16-true" or "bf16-true". Default: $BURN_PRECISION, else 32-true; a flag that
    /// disagrees with $BURN_PRECISION is an error.
    #[arg(long)]
    precision: Option<Precision>,
    /// Train once per precision, one after another from the same initial weights and data,
    /// and compare: a comma-separated list ("32-true,bf16-mixed,16-mixed") or "all" (every
    /// precision the backend runs). 32-true always runs first, as the baseline.
    /// $BURN_PRECISION is not read.
    #[arg(long, value_name = "LIST|all", value_parser = compare::parse_list, conflicts_with = "precision")]
    compare: Option<CompareList>,
    /// The model and its task: a transformer that sorts sequences of 16 tokens, or an MLP
    /// that classifies Gaussian blobs.
    #[arg(long, value_enum, default_value_t = ModelKind::Transformer)]
    model: ModelKind,
    /// Backend, among those compiled in: flex (default), ndarray, wgpu, cuda.
    #[arg(long, value_parser = parse_backend)]
    backend: Option<BackendKind>,
    /// Progress display: burn-train's terminal UI, quiet lines on stderr, or auto (the UI
    /// when stdout and stderr are terminals).
    #[arg(long, value_enum, default_value_t = RendererKind::Auto)]
    renderer: RendererKind,
    /// Passes over the training set.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Total optimizer steps: one epoch over a training set of steps * batch-size items.
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seeds the data, the initial weights and the shuffling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where burn-train's logs, model.mpk and config.json go (with --compare: one folder
    /// per precision in it, and the comparison's CSV and plot). Default: a new folder in
    /// the system's temporary directory.
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Adam's peak learning rate, reached after the warm-up; a cosine then decays it to a
    /// hundredth by the last step. Default: 2e-3 for the transformer, 1e-2 for the MLP.
    #[arg(long)]
    lr: Option<f64>,
    /// The fraction of the steps that warm up, their learning rate climbing linearly
    /// towards --lr. 0: none, the first step at the peak.
    #[arg(long, default_value_t = 0.05, value_parser = schedule::parse_warmup_fraction)]
    warmup_fraction: f64,
    /// Adam's epsilon. Default: 1e-4 under 16-true and bf16-true (which may fall back to
    /// 16-true), else Burn's 1e-5. Under 16-true Adam's moments are f16, where its epsilon
    /// (times the bias correction: 3e-7 at step 1) and the second moment of small gradients
    /// fall below f16's normal range, and the updates blow up.
    #[arg(long)]
    adam_epsilon: Option<f64>,
    /// Devices to train on, data-parallel (each takes --batch-size items per step, so a
    /// step's global batch is N times larger). A count: GPUs 0..N on cuda (discrete GPUs on
    /// wgpu); flex and ndarray have one device. On wgpu also a list of default, cpu,
    /// discrete:I, integrated:I, virtual:I ("default,cpu": two devices on one adapter, e.g.
    /// lavapipe). The model is created on the first.
    #[arg(long, default_value = "1")]
    devices: String,
    /// How several devices train: host (burn-mixed's strategy, every backend: gradients
    /// averaged through the host, one optimizer step on the first device), multi or
    /// multi-sharded (burn-train's MultiDevice with OptimMainDevice / OptimSharded: gradients
    /// summed; not on wgpu in Burn 0.21).
    #[arg(long, value_enum, default_value_t = StrategyKind::Host)]
    strategy: StrategyKind,
    /// Allow 16-mixed <-> bf16-mixed (and 16-true <-> bf16-true) when the backend lacks the
    /// requested half type.
    #[arg(long)]
    allow_fallback: bool,
}

/// A failed run: the message for stderr and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad input: a value, a precision this backend cannot run, a flag/env disagreement,
    /// a backend without a device. Exit code 2.
    fn usage(err: impl std::fmt::Display) -> Self {
        Self { code: 2, message: err.to_string() }
    }

    fn io(message: String) -> Self {
        Self { code: 1, message }
    }
}

fn main() -> ExitCode {
    // RUST_LOG=info|debug|... overrides the default: warnings (a skipped step, a fallback).
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let result = args.renderer.resolve().map_err(Failure::usage).and_then(|renderer| {
        let backend = args.backend.unwrap_or_else(default_backend);
        dispatch(backend, &args, renderer)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn default_backend() -> BackendKind {
    match BackendKind::compiled().first() {
        Some(name) => parse_backend(name).expect("compiled backends parse"),
        None => panic!("no backend compiled in: enable one of the features flex, ndarray, wgpu, cuda"),
    }
}

fn dispatch(backend: BackendKind, args: &Args, renderer: RendererKind) -> Result<(), Failure> {
    match backend {
        #[cfg(feature = "flex")]
        BackendKind::Flex => run::<burn::backend::Flex>(backend, args, renderer),
        #[cfg(feature = "ndarray")]
        BackendKind::NdArray => run::<burn::backend::NdArray>(backend, args, renderer),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => run::<burn::backend::Wgpu>(backend, args, renderer),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => run::<burn::backend::Cuda>(backend, args, renderer),
        #[allow(unreachable_patterns)]
        other => Err(Failure::usage(parse_backend(other.name()).err().unwrap_or_default())),
    }
}

type Train<X> = Mixed<Autodiff<X>>;

/// Whether this thread joined rayon's pool (the threads Flex and the host kernels split
/// their ops across), for the report.
static HOST_POOL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// One host device: burn-train's single-device strategy runs the steps on this thread, so
/// it joins the pool its ops split their work on (`join_host_pool`: no thread wake-ups
/// per op). Several devices run their steps on burn-train's threads, where it would idle.
fn join_host_pool() {
    #[cfg(feature = "flex")]
    HOST_POOL.get_or_init(|| match burn_mixed::kernels::join_host_pool() {
        Ok(()) => true,
        Err(error) => {
            log::warn!("{error}");
            false
        }
    });
}

/// One training run, or a comparison of several.
fn run<X: DeviceList>(backend: BackendKind, args: &Args, renderer: RendererKind) -> Result<(), Failure> {
    for (flag, value) in [("--batch-size", args.batch_size), ("--epochs", args.epochs), ("--steps", args.steps.unwrap_or(1))] {
        if value == 0 {
            return Err(Failure::usage(format!("{flag} must be at least 1")));
        }
    }
    let devices = X::parse_devices(&args.devices).map_err(Failure::usage)?;
    if !backend.is_host() {
        for device in &devices {
            adapter::check::<X>(backend.name(), device).map_err(Failure::usage)?;
        }
    }
    if backend.is_host() && devices.len() == 1 {
        join_host_pool();
    }
    let device = devices[0].clone();
    let temp = |what: &str| std::env::temp_dir().join(format!("burn-mixed-{what}-{}-{}", backend.name(), std::process::id()));
    let Some(list) = &args.compare else {
        let precision = Precision::resolve(args.precision).map_err(Failure::usage)?;
        let dir = args.artifacts.clone().unwrap_or_else(|| temp(&format!("train-{precision}")));
        train::<X>(&devices, backend, precision, args, renderer, &dir)?.print();
        return Ok(());
    };
    let supported =
        |p: Precision| MixedPrecision::new(p).with_fallback(args.allow_fallback).resolve::<Train<X>>(&device).map_err(|e| e.to_string());
    let plan = compare::plan(list, supported).map_err(Failure::usage)?;
    let dir = args.artifacts.clone().unwrap_or_else(|| temp("compare"));
    // A first run in a process also pays for what stays allocated after it (thread pools,
    // per-thread kernel buffers, lazy statics), which would inflate the baseline's peak
    // memory and first steps: two steps of it first, not reported.
    let warm_up = Args { steps: Some(2), epochs: 1, ..args.clone() };
    eprintln!("== warm-up: 2 steps of {}, not reported", plan[0]);
    let warm_dir = dir.join("warm-up");
    train::<X>(&devices, backend, plan[0], &warm_up, RendererKind::Quiet, &warm_dir)?;
    let _ = std::fs::remove_dir_all(&warm_dir);
    let mut runs = Vec::new();
    for (i, precision) in plan.iter().enumerate() {
        eprintln!("== {precision} ({} of {})", i + 1, plan.len());
        runs.push(train::<X>(&devices, backend, *precision, args, renderer, &dir.join(precision.as_str()))?);
    }
    let title = format!("{} on {}, seed {}: training loss per step", args.model.name(), backend.name(), args.seed);
    compare::report(&runs, &dir, &title).map_err(Failure::io)
}

/// The backend burn-train moves step outputs to before updating metrics (Flex, whichever
/// backend trains); the loss and accuracy metrics are declared on it.
trait OutputBackend {
    type Backend: Backend;
}

impl<B: Backend> OutputBackend for ClassificationOutput<B> {
    type Backend = B;
}

type MetricBackend<B> = <<ClassificationOutput<B> as ItemLazy>::ItemSync as OutputBackend>::Backend;

/// Trains `args.model` under `requested` and saves it into `dir`.
fn train<X: DeviceList>(
    devices: &[X::Device],
    backend: BackendKind,
    requested: Precision,
    args: &Args,
    renderer: RendererKind,
    dir: &Path,
) -> Result<Outcome, Failure> {
    let start = Instant::now();
    let device = &devices[0];
    let replicas = devices.len();

    // The data is plain Rust (no tensors until the loaders batch it, after setup).
    let task = args.model.task(args.seed, args.steps.map(|steps| steps * args.batch_size * replicas));
    let spec = args.model.spec();
    let (train_set, valid) = (task.train_dataset().map_err(Failure::io)?, task.valid().map_err(Failure::io)?);
    let (train_items, valid_items) = (train_set.len(), valid.len());
    let epochs = if args.steps.is_some() { 1 } else { args.epochs };
    // Each device takes a contiguous share of the training set; the epoch ends with the
    // shortest share.
    let steps = epochs * (train_items / replicas).div_ceil(args.batch_size);
    // Every precision trains with the same schedule, checked before anything is set up.
    let warmup_steps = (args.warmup_fraction * steps as f64).round() as usize;
    let schedule = WarmupCosine::new(args.lr.unwrap_or(args.model.default_lr()), steps, warmup_steps).map_err(Failure::usage)?;
    let adam_epsilon = args.adam_epsilon.unwrap_or(if requested.is_true_half() { 1e-4 } else { 1e-5 });

    // The same seed gives every precision the same f32 initial weights. Creating them fixes
    // the device's default float dtype at f32, so under the -true precisions setup cannot
    // change it (it logs a warning) and the models convert with `MixedPrecision::input`.
    Train::<X>::seed(device, args.seed);
    let model = spec.init::<Train<X>>(device);
    let mp = MixedPrecision::new(requested).with_fallback(args.allow_fallback);
    // Several devices: the list and the precision on each are checked before anything trains.
    let plan = devices::plan::<X>(devices.to_vec(), &mp, args.strategy).map_err(Failure::usage)?;
    let Prepared { model, optimizer, precision, scaler } =
        mp.setup::<Train<X>, _, _>(device, model, AdamConfig::new().with_epsilon(adam_epsilon as f32).init()).map_err(Failure::usage)?;
    // After a fallback `precision` differs from `requested`; the model converts for the
    // precision actually in force.
    let model = model.map_module(|m| m.with_precision(MixedPrecision::new(precision)));
    plan.check_model(&model).map_err(Failure::usage)?;

    std::fs::create_dir_all(dir).map_err(|e| Failure::io(format!("cannot create {}: {e}", dir.display())))?;
    let train_loader =
        DataLoaderBuilder::new(TaskBatcher).batch_size(args.batch_size).shuffle(args.seed).set_device(device.clone()).build(train_set);
    let valid_loader = DataLoaderBuilder::new(TaskBatcher)
        .batch_size(args.batch_size)
        .set_device(device.clone())
        .build(task.valid_dataset().map_err(Failure::io)?);

    let values = MetricValues::default();
    let training = SupervisedTraining::new(dir, train_loader, valid_loader)
        .metrics((LossMetric::<MetricBackend<X>>::new(), AccuracyMetric::<MetricBackend<X>>::new()))
        .num_epochs(epochs)
        .with_application_logger(None);
    let recorder = Recorder::new(renderer, values.clone(), training.interrupter());
    let strategy = devices::strategy::<X, _, _>(&plan, &optimizer, args.strategy);
    let mut training = training.renderer(recorder).with_training_strategy(strategy);
    if let Some(scaler) = &scaler {
        training =
            training.metric_train_numeric(ScalerMetric::loss_scale(scaler)).metric_train_numeric(ScalerMetric::skipped_steps(scaler));
    }
    let on = match replicas {
        1 => Train::<X>::name(device),
        n => format!("{n} devices ({:?}, strategy {:?})", devices, args.strategy),
    };
    eprintln!(
        "training the {} in {precision} on {on} for {epochs} epoch(s), {steps} steps; artifacts in {}",
        args.model.name(),
        dir.display()
    );
    // Peak memory is that of training (steps and validation passes): above what is live
    // before it (data, parameters), and not counting the evaluation below.
    let memory_base = CountingAlloc::reset_peak();
    let trained = training.launch(Learner::new(model, optimizer, schedule.clone())).model;
    let peak_bytes = CountingAlloc::peak_bytes().saturating_sub(memory_base);

    // The trained model's inference version (`Mixed<X>`, as burn-train returns it), under
    // its precision, on the whole validation set.
    let evaluation =
        trained.run(|m| model::evaluate(m, task::batch(&valid, device))).map_err(|e| Failure::io(e.to_string()))?.map_err(Failure::io)?;
    let param_dtype = format!("{:?}", trained.module().first_weight().dtype()).to_lowercase();
    let losses = values.losses(replicas);

    let saved = SavedConfig { precision, backend: backend.name().into(), data: task, model: spec };
    artifacts::save(dir, trained.into_module(), &saved).map_err(Failure::io)?;

    Ok(Outcome {
        precision,
        requested_precision: requested,
        backend: backend.name(),
        backend_type: Train::<X>::name(device),
        model: args.model.name(),
        epochs,
        steps,
        devices: replicas,
        batch_size: args.batch_size,
        train_items,
        seed: args.seed,
        peak_lr: schedule.peak(),
        warmup_steps: schedule.warmup_steps(),
        final_lr: schedule.final_rate(),
        adam_epsilon,
        train_loss_last_tenth: report::tail_mean(&losses),
        last_batch_loss: losses.last().copied(),
        valid_loss: evaluation.loss,
        valid_accuracy: evaluation.accuracy,
        valid_items,
        param_dtype,
        skipped_steps: scaler.as_ref().map_or(0, |s| s.skipped_steps()),
        loss_scale: scaler.as_ref().map(|s| s.scale()),
        wall_s: start.elapsed().as_secs_f64(),
        step_s: values.step_seconds(replicas),
        peak_bytes: backend.is_host().then_some(peak_bytes),
        host_pool: HOST_POOL.get().copied().unwrap_or(false),
        artifacts: dir.to_path_buf(),
        losses,
        learning_rates: schedule.rates(),
    })
}
