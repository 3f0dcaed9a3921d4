//! Loads a model trained by the training example (`examples/train/`; either model: the
//! transformer or the MLP) and predicts its validation set, under the precision it was
//! trained in.
//!
//! ```sh
//! cargo run --release --example train -- --precision bf16-mixed --artifacts /tmp/run
//! cargo run --release --example infer -- --artifacts /tmp/run
//! cargo run --release --features wgpu --example infer -- --artifacts /tmp/run   # on the GPU
//! ```
//!
//! The backend is `Mixed<Wgpu>` when the `wgpu` feature is compiled in and an adapter
//! exists (the same check as the training example's), otherwise `Mixed<Flex>` (or
//! `Mixed<NdArray>`). `MixedPrecision::setup_module` puts the model and device in the saved
//! precision: f32 weights under bf16 autocast for bf16-mixed, f16 weights for 16-true, and
//! so on. The last line of stdout is a JSON object. The models, tasks and artifacts are the
//! training example's, in `examples/common/`.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::ElementConversion;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn_mixed::{Mixed, MixedPrecision};
use clap::Parser;

use common::artifacts::{self, SavedConfig};
use common::{model, task};

#[derive(Parser, Debug)]
#[command(about = "Classifies the validation set with a model saved by the train example")]
struct Args {
    /// The folder the train example wrote (its --artifacts).
    #[arg(long)]
    artifacts: PathBuf,
    /// How many predictions to print.
    #[arg(long, default_value_t = 8)]
    show: usize,
    /// Run on the CPU even when a Wgpu adapter is available.
    #[arg(long)]
    cpu: bool,
    /// Allow 16 <-> bf16 when the backend lacks the saved precision's half type.
    #[arg(long)]
    allow_fallback: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = artifacts::load_config(&args.artifacts).map_err(|message| (1, message)).and_then(|config| dispatch(&args, &config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

#[allow(unreachable_code)]
fn dispatch(args: &Args, config: &SavedConfig) -> Result<(), Failure> {
    #[cfg(feature = "wgpu")]
    if !args.cpu {
        let device = Default::default();
        match common::adapter::probe::<Mixed<burn::backend::Wgpu>>(&device) {
            Ok(()) => return infer::<Mixed<burn::backend::Wgpu>>(device, "wgpu", args, config),
            Err(why) => println!("note: no usable Wgpu adapter ({}); running on the CPU", why.trim()),
        }
    }
    #[cfg(feature = "flex")]
    return infer::<Mixed<burn::backend::Flex>>(Default::default(), "flex", args, config);
    #[cfg(feature = "ndarray")]
    return infer::<Mixed<burn::backend::NdArray>>(Default::default(), "ndarray", args, config);
    Err((2, "no CPU backend compiled in: enable the flex or ndarray feature".into()))
}

fn infer<B: Backend>(device: B::Device, backend: &str, args: &Args, config: &SavedConfig) -> Result<(), Failure> {
    let model = artifacts::load_model::<B>(&args.artifacts, config, &device).map_err(|m| (1, m))?;
    let mp = MixedPrecision::new(config.precision).with_fallback(args.allow_fallback);
    let model = mp.setup_module::<B, _>(&device, model).map_err(|e| {
        let hint = match args.allow_fallback {
            false => " (--allow-fallback swaps f16 and bf16; --cpu runs on the CPU)",
            true => " (--cpu runs on the CPU)",
        };
        (2, format!("{e}{hint}"))
    })?;
    let precision = model.precision();
    let model = model.map_module(|m| m.with_precision(MixedPrecision::new(precision)));

    // The validation set, regenerated from the seed the training run saved.
    let samples = config.data.valid().map_err(|m| (1, m))?;
    let batch = task::batch::<B>(&samples, &device);
    // The forward pass runs inside the prepared model's precision region.
    let logits = model
        .run(|m| m.forward_f32(batch.inputs.clone()))
        .map_err(|e| (1, e.to_string()))?
        .map_err(|m| (1, format!("{m} (config.json pairs a model with another model's task)")))?;
    let probabilities = softmax(logits, 1);
    let predicted = probabilities.clone().argmax(1).flatten::<1>(0, 1);
    let targets = batch.targets.dims()[0];
    let correct = predicted.clone().equal(batch.targets).int().sum().into_scalar().elem::<i64>();
    let accuracy = correct as f64 / targets as f64;

    println!(
        "{} validation items, {} trained in {} on {}, run in {precision} on {backend} ({})",
        samples.len(),
        config.model.kind().name(),
        config.precision,
        config.backend,
        B::name(&device)
    );
    let predicted: Vec<i64> = predicted.into_data().convert::<i64>().to_vec().expect("int data");
    let mut row = 0;
    for (i, item) in samples.iter().take(args.show).enumerate() {
        let rows = item.targets();
        println!("  item {i:>3}: {}", item.describe(&predicted[row..row + rows]));
        row += rows;
    }
    println!(
        "accuracy: {accuracy:.4} ({correct}/{targets} {})",
        match config.model.kind() {
            model::ModelKind::Transformer => "tokens",
            model::ModelKind::Mlp => "items",
        }
    );
    let param_dtype = format!("{:?}", model.module().first_weight().dtype()).to_lowercase();
    let result = serde_json::json!({
        "precision": precision.as_str(),
        "trained_precision": config.precision.as_str(),
        "backend": backend,
        "param_dtype": param_dtype,
        "model": config.model.kind().name(),
        "items": samples.len(),
        "accuracy": accuracy,
    });
    println!("{result}");
    Ok(())
}
