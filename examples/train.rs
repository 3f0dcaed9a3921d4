//! Trains a small classifier with burn-train under any precision, on any compiled backend.
//!
//! ```sh
//! cargo run --release --example train                                  # 32-true on Flex
//! cargo run --release --example train -- --precision bf16-mixed --steps 200
//! BURN_PRECISION=16-mixed cargo run --release --example train
//! cargo run --release --features wgpu --example train -- --backend wgpu --precision 16-mixed
//! ```
//!
//! The training code is plain burn-train: a `TrainStep` that calls `loss.backward()`, a
//! `Learner` and `SupervisedTraining`. Mixed precision is `MixedPrecision::setup` on the
//! model and optimizer (the model comes back bound to its precision, and burn-train runs its
//! steps, training and validation, inside that precision on its own threads),
//! `MixedPrecision::input`/`output` in the model's forward pass, and two optional metrics
//! for the loss scaler. Progress goes to stderr; stdout gets a summary
//! and, as its last line, one JSON object with the run's results.

#[path = "train/artifacts.rs"]
mod artifacts;
#[path = "train/data.rs"]
mod data;
#[path = "train/model.rs"]
mod model;
#[path = "train/report.rs"]
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use burn::backend::Autodiff;
use burn::data::dataloader::DataLoaderBuilder;
use burn::optim::AdamConfig;
use burn::tensor::backend::Backend;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{ClassificationOutput, ItemLazy, Learner, SupervisedTraining};
use burn_mixed::train::ScalerMetric;
use burn_mixed::{Mixed, MixedPrecision, Precision, Prepared};
use clap::Parser;

use artifacts::SavedConfig;
use data::{BlobBatcher, DataSpec};
use model::ModelSpec;
use report::{CountingAlloc, MetricValues, Outcome, QuietRenderer, StderrLogger};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// The classifier every run trains: 16 -> 64 -> 64 -> 4.
const MODEL: ModelSpec = ModelSpec { input_dim: data::INPUT_DIM, hidden: 64, classes: data::CLASSES };

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

    /// Runs on the host: its tensors are counted by the allocator.
    fn is_host(self) -> bool {
        matches!(self, Self::Flex | Self::NdArray)
    }
}

fn parse_backend(value: &str) -> Result<BackendKind, String> {
    let compiled = BackendKind::compiled().join(", ");
    match BackendKind::ALL.iter().find(|(_, name, _)| *name == value.trim()) {
        Some((kind, _, true)) => Ok(*kind),
        Some((_, name, false)) => Err(format!(
            "backend {name} is not compiled in (build with --features {name}); compiled backends: {compiled}"
        )),
        None => Err(format!("unknown backend; compiled backends: {compiled}")),
    }
}

#[derive(Parser, Debug)]
#[command(about = "Trains a small MLP classifier with burn-train under a chosen precision")]
struct Args {
    /// Precision: "32-true" ("32"), "64-true" ("64"), "16-mixed" ("16"), "bf16-mixed" ("bf16"),
    /// "16-true" or "bf16-true". Default: $BURN_PRECISION, else 32-true; a flag that
    /// disagrees with $BURN_PRECISION is an error.
    #[arg(long)]
    precision: Option<Precision>,
    /// Backend, among those compiled in: flex (default), ndarray, wgpu, cuda.
    #[arg(long, value_parser = parse_backend)]
    backend: Option<BackendKind>,
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
    /// Where burn-train's logs, model.mpk and config.json go (default: a new folder in the
    /// system's temporary directory).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    /// Adam's epsilon. Default: 1e-4 under 16-true and bf16-true (which may fall back to
    /// 16-true), else Burn's 1e-5. Under 16-true Adam's moments are f16, where its epsilon
    /// (times the bias correction: 3e-7 at step 1) and the second moment of small gradients
    /// fall below f16's normal range, and the updates blow up.
    #[arg(long)]
    adam_epsilon: Option<f64>,
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
    /// A precision this backend cannot run, or a flag/env disagreement: exit code 2.
    fn usage(err: impl std::fmt::Display) -> Self {
        Self { code: 2, message: err.to_string() }
    }

    fn io(message: String) -> Self {
        Self { code: 1, message }
    }
}

fn main() -> ExitCode {
    StderrLogger::install();
    let args = Args::parse();
    let result = Precision::resolve(args.precision).map_err(Failure::usage).and_then(|precision| {
        let backend = args.backend.unwrap_or_else(default_backend);
        dispatch(backend, precision, &args)
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

fn dispatch(backend: BackendKind, precision: Precision, args: &Args) -> Result<(), Failure> {
    match backend {
        #[cfg(feature = "flex")]
        BackendKind::Flex => run::<burn::backend::Flex>(Default::default(), backend, precision, args),
        #[cfg(feature = "ndarray")]
        BackendKind::NdArray => run::<burn::backend::NdArray>(Default::default(), backend, precision, args),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => run::<burn::backend::Wgpu>(Default::default(), backend, precision, args),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => run::<burn::backend::Cuda>(Default::default(), backend, precision, args),
        #[allow(unreachable_patterns)]
        other => Err(Failure::usage(parse_backend(other.name()).err().unwrap_or_default())),
    }
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

fn run<X: Backend>(device: X::Device, backend: BackendKind, requested: Precision, args: &Args) -> Result<(), Failure> {
    type Train<X> = Mixed<Autodiff<X>>;
    let start = Instant::now();

    // The data is plain Rust (no tensors until the loaders batch it, after setup).
    let train_items = args.steps.map_or(data::DEFAULT_TRAIN_ITEMS, |steps| steps * args.batch_size);
    let spec = DataSpec::new(args.seed, train_items);
    let (train_set, valid_set) = (spec.train_dataset(), spec.valid_dataset());
    let epochs = if args.steps.is_some() { 1 } else { args.epochs };

    let adam_epsilon = args.adam_epsilon.unwrap_or(if requested.is_true_half() { 1e-4 } else { 1e-5 });

    // The same seed gives every precision the same f32 initial weights. Creating them fixes
    // the device's default float dtype at f32, so under the -true precisions setup cannot
    // change it (it logs a warning) and the model converts inputs with `MixedPrecision::input`.
    Train::<X>::seed(&device, args.seed);
    let model = MODEL.init::<Train<X>>(&device);
    let mp = MixedPrecision::new(requested).with_fallback(args.allow_fallback);
    let Prepared { model, optimizer, precision, scaler } =
        mp.setup::<Train<X>, _, _>(&device, model, AdamConfig::new().with_epsilon(adam_epsilon as f32).init()).map_err(Failure::usage)?;
    // After a fallback `precision` differs from `requested`; the model converts its inputs
    // for the precision actually in force.
    let model = model.map_module(|m| m.with_precision(MixedPrecision::new(precision)));

    for (flag, value) in [("--batch-size", args.batch_size), ("--epochs", epochs), ("--steps", args.steps.unwrap_or(1))] {
        if value == 0 {
            return Err(Failure::usage(format!("{flag} must be at least 1")));
        }
    }
    let artifacts = args.artifacts.clone().unwrap_or_else(|| {
        let name = format!("burn-mixed-train-{precision}-{}-{}", backend.name(), std::process::id());
        std::env::temp_dir().join(name)
    });
    std::fs::create_dir_all(&artifacts)
        .map_err(|e| Failure::io(format!("cannot create {}: {e}", artifacts.display())))?;

    let train_loader = DataLoaderBuilder::new(BlobBatcher)
        .batch_size(args.batch_size)
        .shuffle(args.seed)
        .set_device(device.clone())
        .build(train_set);
    let valid_loader = DataLoaderBuilder::new(BlobBatcher)
        .batch_size(args.batch_size)
        .set_device(device.clone())
        .build(valid_set);

    let values = MetricValues::default();
    let mut training = SupervisedTraining::new(&artifacts, train_loader, valid_loader)
        .metrics((LossMetric::<MetricBackend<X>>::new(), AccuracyMetric::<MetricBackend<X>>::new()))
        .num_epochs(epochs)
        .renderer(QuietRenderer::new(values.clone(), Duration::from_secs(2)))
        .with_application_logger(None);
    if let Some(scaler) = &scaler {
        training = training
            .metric_train_numeric(ScalerMetric::loss_scale(scaler))
            .metric_train_numeric(ScalerMetric::skipped_steps(scaler));
    }
    eprintln!(
        "training {precision} on {} for {epochs} epoch(s) of {} steps; artifacts in {}",
        Train::<X>::name(&device),
        train_items.div_ceil(args.batch_size),
        artifacts.display()
    );
    let trained = training.launch(Learner::new(model, optimizer, args.lr)).model;

    // The trained model's inference version (`Mixed<X>`, as burn-train returns it), under
    // its precision, on the whole validation set.
    let valid_accuracy = trained
        .run(|m| model::accuracy(m, data::batch(&spec.valid(), &device)))
        .map_err(|e| Failure::io(e.to_string()))?;
    let param_dtype = format!("{:?}", trained.module().first_weight().dtype()).to_lowercase();
    let final_loss = values.train("Loss");

    let saved = SavedConfig { precision, backend: backend.name().into(), data: spec, model: MODEL };
    artifacts::save(&artifacts, trained.into_module(), &saved).map_err(Failure::io)?;

    let outcome = Outcome {
        precision,
        requested_precision: requested,
        backend: backend.name(),
        backend_type: Train::<X>::name(&device),
        epochs,
        steps: epochs * train_items.div_ceil(args.batch_size),
        batch_size: args.batch_size,
        train_items,
        seed: args.seed,
        lr: args.lr,
        adam_epsilon,
        final_loss,
        valid_accuracy,
        valid_items: spec.valid_items,
        param_dtype,
        skipped_steps: scaler.as_ref().map_or(0, |s| s.skipped_steps()),
        loss_scale: scaler.as_ref().map(|s| s.scale()),
        wall_s: start.elapsed().as_secs_f64(),
        peak_bytes: backend.is_host().then(|| ALLOC.peak_bytes()),
        artifacts,
    };
    outcome.print();
    Ok(())
}
