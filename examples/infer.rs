//! Loads a model trained by `examples/train.rs` and classifies its validation set, under
//! the precision it was trained in.
//!
//! ```sh
//! cargo run --release --example train -- --precision bf16-mixed --artifacts /tmp/run
//! cargo run --release --example infer -- --artifacts /tmp/run
//! cargo run --release --features wgpu --example infer -- --artifacts /tmp/run   # on the GPU
//! ```
//!
//! The backend is `Mixed<Wgpu>` when the `wgpu` feature is compiled in and an adapter
//! exists, otherwise `Mixed<Flex>` (or `Mixed<NdArray>`). `MixedPrecision::setup_module`
//! puts the model and device in the saved precision: f32 weights under bf16 autocast for
//! bf16-mixed, f16 weights for 16-true, and so on. The last line of stdout is a JSON object.

#[allow(dead_code)]
#[path = "train/artifacts.rs"]
mod artifacts;
#[allow(dead_code)]
#[path = "train/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "train/model.rs"]
mod model;

use std::path::PathBuf;
use std::process::ExitCode;

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ElementConversion;
use burn_mixed::{Mixed, MixedPrecision};
use clap::Parser;

use artifacts::SavedConfig;

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
    let result = artifacts::load_config(&args.artifacts)
        .map_err(|message| (1, message))
        .and_then(|config| dispatch(&args, &config));
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
        match wgpu_adapter() {
            Ok(()) => return infer::<Mixed<burn::backend::Wgpu>>(Default::default(), "wgpu", args, config),
            Err(why) => println!("note: no usable Wgpu adapter ({why}); running on the CPU"),
        }
    }
    #[cfg(feature = "flex")]
    return infer::<Mixed<burn::backend::Flex>>(Default::default(), "flex", args, config);
    #[cfg(feature = "ndarray")]
    return infer::<Mixed<burn::backend::NdArray>>(Default::default(), "ndarray", args, config);
    Err((2, "no CPU backend compiled in: enable the flex or ndarray feature".into()))
}

/// Whether Wgpu can run a tensor op here. Without an adapter, creating the device panics;
/// the panic is caught (and kept off stderr) and reported as a reason instead.
#[cfg(feature = "wgpu")]
fn wgpu_adapter() -> Result<(), String> {
    use burn::backend::Wgpu;
    use burn::tensor::Tensor;
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        let device = Default::default();
        Tensor::<Wgpu, 1>::from_floats([1.0, 2.0], &device).sum().into_scalar().elem::<f32>()
    });
    std::panic::set_hook(quiet);
    match probe {
        Ok(sum) if sum == 3.0 => Ok(()),
        Ok(sum) => Err(format!("a test sum gave {sum}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "device creation panicked".into())),
    }
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
    let samples = config.data.valid();
    let batch = data::batch::<B>(&samples, &device);
    // The forward pass runs inside the prepared model's precision region.
    let logits = model.run(|m| m.forward_f32(batch.features.clone())).map_err(|e| (1, e.to_string()))?;
    let probabilities = softmax(logits, 1);
    let predicted = probabilities.clone().argmax(1).flatten::<1>(0, 1);
    let correct = predicted.clone().equal(batch.targets).int().sum().into_scalar().elem::<i64>();
    let accuracy = correct as f64 / samples.len() as f64;

    println!(
        "{} validation items, model trained in {} on {}, run in {precision} on {backend} ({})",
        samples.len(),
        config.precision,
        config.backend,
        B::name(&device)
    );
    let shown = args.show.min(samples.len());
    let predicted: Vec<i64> = predicted.into_data().convert::<i64>().to_vec().expect("int data");
    let probabilities: Vec<f32> = probabilities.into_data().convert::<f32>().to_vec().expect("float data");
    let classes = config.model.classes;
    for (i, sample) in samples.iter().take(shown).enumerate() {
        let class = predicted[i] as usize;
        let p = probabilities[i * classes + class];
        let mark = if class == usize::from(sample.label) { "" } else { "  (wrong)" };
        println!("  item {i:>3}: label {}, predicted {class} with p = {p:.3}{mark}", sample.label);
    }
    println!("accuracy: {accuracy:.4} ({correct}/{})", samples.len());
    let param_dtype = format!("{:?}", model.module().first_weight().dtype()).to_lowercase();
    let result = serde_json::json!({
        "precision": precision.as_str(),
        "trained_precision": config.precision.as_str(),
        "backend": backend,
        "param_dtype": param_dtype,
        "items": samples.len(),
        "accuracy": accuracy,
    });
    println!("{result}");
    Ok(())
}
