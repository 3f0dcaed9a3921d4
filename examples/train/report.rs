//! What a training run reports: a summary on stdout and, as the last line, one JSON
//! object.

use std::path::PathBuf;

use burn_mixed::Precision;
use serde::Serialize;

/// The results of a training run.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The precision in force (differs from the requested one only after a fallback).
    pub precision: Precision,
    pub requested_precision: Precision,
    /// The `--backend` value.
    pub backend: &'static str,
    /// `Backend::name` of the training backend.
    pub backend_type: String,
    /// The `--model` value.
    pub model: &'static str,
    pub epochs: usize,
    pub steps: usize,
    /// Devices that trained data-parallel (each on `batch_size` items per step).
    pub devices: usize,
    pub batch_size: usize,
    pub train_items: usize,
    pub seed: u64,
    /// The learning rate after the warm-up (`--lr`); see `schedule.rs`.
    pub peak_lr: f64,
    /// Steps whose learning rate climbs linearly towards `peak_lr`.
    pub warmup_steps: usize,
    /// The learning rate of the last step, where the cosine decay ends.
    pub final_lr: f64,
    pub adam_epsilon: f64,
    /// The headline loss: the mean training loss over the last tenth of the steps
    /// ([`tail_steps`] of them), which a single batch's noise or spike moves little.
    pub train_loss_last_tenth: Option<f64>,
    /// The training loss of the last step's batch alone.
    pub last_batch_loss: Option<f64>,
    /// The trained model's inference version on the whole validation set, after training:
    /// the mean cross-entropy, and the accuracy (per item for the MLP, per token for the
    /// transformer).
    pub valid_loss: f64,
    pub valid_accuracy: f64,
    pub valid_items: usize,
    /// The dtype of a parameter after training, e.g. "f32" or "bf16".
    pub param_dtype: String,
    pub skipped_steps: u64,
    /// The loss scale after training (16-mixed only).
    pub loss_scale: Option<f32>,
    pub wall_s: f64,
    /// Median time of a training step (see `MetricValues::step_seconds`).
    pub step_s: Option<f64>,
    /// Peak host allocations during the run, above what was allocated when it started (on
    /// Flex and NdArray, where tensors live in host memory).
    pub peak_bytes: Option<usize>,
    /// Whether the training loop's thread is one of rayon's pool (one host device; see
    /// `burn_mixed::kernels::join_host_pool`).
    pub host_pool: bool,
    pub artifacts: PathBuf,
    /// The training loss of every step (in the comparison's CSV, not in the JSON line).
    #[serde(skip)]
    pub losses: Vec<f64>,
    /// The learning rate of every step (likewise).
    #[serde(skip)]
    pub learning_rates: Vec<f64>,
}

/// Mebibytes, for people.
pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// How many of a run's last steps its headline loss averages: a tenth of `steps`, rounded
/// up (at least one).
pub fn tail_steps(steps: usize) -> usize {
    steps.div_ceil(10).max(1)
}

/// The mean of the last [`tail_steps`] of `losses`; `None` without any.
pub fn tail_mean(losses: &[f64]) -> Option<f64> {
    let tail = &losses[losses.len().saturating_sub(tail_steps(losses.len()))..];
    (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64)
}

impl Outcome {
    /// The summary lines, without the JSON.
    pub fn print_summary(&self) {
        let or_na = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
        let fallback = match self.precision != self.requested_precision {
            true => format!(" (fallback from {})", self.requested_precision),
            false => String::new(),
        };
        println!("precision       {}{fallback}", self.precision);
        println!("backend         {} ({})", self.backend, self.backend_type);
        println!("model           {}, parameters {}", self.model, self.param_dtype);
        let per_device = if self.devices > 1 { format!(" per device x {} devices", self.devices) } else { String::new() };
        println!(
            "epochs / steps  {} / {} (batch {}{per_device}, {} training items)",
            self.epochs, self.steps, self.batch_size, self.train_items
        );
        println!("optimizer       Adam, epsilon {:e}", self.adam_epsilon);
        println!("learning rate   {} after {} warm-up step(s), then a cosine to {:e}", self.peak_lr, self.warmup_steps, self.final_lr);
        let loss = |l: Option<f64>| or_na(l.map(|l| format!("{l:.4}")));
        println!(
            "train loss      {} (the mean over the last {} of {} steps; the last batch's: {})",
            loss(self.train_loss_last_tenth),
            tail_steps(self.losses.len()),
            self.losses.len(),
            loss(self.last_batch_loss)
        );
        println!("valid loss      {:.4} ({} items)", self.valid_loss, self.valid_items);
        println!("valid accuracy  {:.4}", self.valid_accuracy);
        println!("skipped steps   {}", self.skipped_steps);
        println!("loss scale      {}", or_na(self.loss_scale.map(|s| s.to_string())));
        println!("wall time       {:.2} s (step {})", self.wall_s, or_na(self.step_s.map(|s| format!("{:.1} ms", s * 1e3))));
        match self.peak_bytes {
            Some(bytes) => println!("peak memory     {:.1} MiB (host allocations)", mib(bytes)),
            None => println!("peak memory     n/a (device memory is not counted)"),
        }
        println!("artifacts       {}", self.artifacts.display());
    }

    /// The summary, then the JSON line.
    pub fn print(&self) {
        self.print_summary();
        println!("{}", serde_json::to_string(self).expect("plain data serializes"));
    }
}
