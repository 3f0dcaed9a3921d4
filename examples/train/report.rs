//! What the training example reports: a quiet progress renderer for burn-train (on
//! stderr, so stdout keeps only the summary and the JSON line), the last value of each
//! training metric, a minimal stderr logger, and a counting allocator for peak memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use burn::train::LearnerSummary;
use burn_mixed::Precision;
use serde::Serialize;

/// `System`, counting the bytes currently allocated and the most ever allocated at once.
pub struct CountingAlloc {
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl CountingAlloc {
    pub const fn new() -> Self {
        Self { current: AtomicUsize::new(0), peak: AtomicUsize::new(0) }
    }

    pub fn peak_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn grew(&self, bytes: usize) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            self.shrank(layout.size());
            self.grew(new_size);
        }
        new
    }
}

/// The results of a training run: printed as a summary, then as one JSON line (the last
/// line of stdout).
#[derive(Serialize)]
pub struct Outcome {
    /// The precision in force (differs from the requested one only after a fallback).
    pub precision: Precision,
    pub requested_precision: Precision,
    /// The `--backend` value.
    pub backend: &'static str,
    /// `Backend::name` of the training backend.
    pub backend_type: String,
    pub epochs: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub train_items: usize,
    pub seed: u64,
    pub lr: f64,
    pub adam_epsilon: f64,
    /// The training loss of the last step.
    pub final_loss: Option<f64>,
    /// Accuracy of the trained model's inference version on the validation set.
    pub valid_accuracy: f64,
    pub valid_items: usize,
    /// The dtype of a parameter after training, e.g. "f32" or "bf16".
    pub param_dtype: String,
    pub skipped_steps: u64,
    /// The loss scale after training (16-mixed only).
    pub loss_scale: Option<f32>,
    pub wall_s: f64,
    /// Peak host allocations (on Flex and NdArray, where tensors live in host memory).
    pub peak_bytes: Option<usize>,
    pub artifacts: PathBuf,
}

impl Outcome {
    pub fn print(&self) {
        let or_na = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
        let fallback = match self.precision != self.requested_precision {
            true => format!(" (fallback from {})", self.requested_precision),
            false => String::new(),
        };
        println!("precision       {}{fallback}", self.precision);
        println!("backend         {} ({})", self.backend, self.backend_type);
        println!("parameters      {}", self.param_dtype);
        println!(
            "epochs / steps  {} / {} (batch {}, {} training items)",
            self.epochs, self.steps, self.batch_size, self.train_items
        );
        println!("optimizer       Adam, lr {}, epsilon {:e}", self.lr, self.adam_epsilon);
        println!("final loss      {}", or_na(self.final_loss.map(|l| format!("{l:.4}"))));
        println!("valid accuracy  {:.4} ({} items)", self.valid_accuracy, self.valid_items);
        println!("skipped steps   {}", self.skipped_steps);
        println!("loss scale      {}", or_na(self.loss_scale.map(|s| s.to_string())));
        println!("wall time       {:.2} s", self.wall_s);
        match self.peak_bytes {
            Some(bytes) => println!("peak memory     {:.1} MiB (host allocations)", bytes as f64 / (1 << 20) as f64),
            None => println!("peak memory     n/a (device memory is not counted)"),
        }
        println!("artifacts       {}", self.artifacts.display());
        println!("{}", serde_json::to_string(self).expect("plain data serializes"));
    }
}

/// The latest value of every training and validation metric, by name.
#[derive(Clone, Default)]
pub struct MetricValues {
    shared: Arc<Mutex<Values>>,
}

#[derive(Default)]
struct Values {
    names: HashMap<MetricId, String>,
    train: HashMap<String, f64>,
    valid: HashMap<String, f64>,
}

impl MetricValues {
    fn lock(&self) -> std::sync::MutexGuard<'_, Values> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value of training metric `name` at the last training step.
    pub fn train(&self, name: &str) -> Option<f64> {
        self.lock().train.get(name).copied()
    }

    fn record(&self, state: MetricState, valid: bool) {
        // Numeric entries carry the last batch's value; text-only metrics are skipped.
        let MetricState::Numeric(entry, value) = state else { return };
        let mut values = self.lock();
        let Some(name) = values.names.get(&entry.metric_id).cloned() else { return };
        let map = if valid { &mut values.valid } else { &mut values.train };
        map.insert(name, value.current());
    }

    fn line(&self, valid: bool) -> String {
        let values = self.lock();
        let map = if valid { &values.valid } else { &values.train };
        let mut items: Vec<_> = map.iter().collect();
        items.sort_by(|a, b| a.0.cmp(b.0));
        let show = |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.4}") };
        items.iter().map(|(name, value)| format!("{name} {}", show(**value))).collect::<Vec<_>>().join(", ")
    }
}

/// A burn-train renderer that needs no terminal: a line on stderr at most every
/// `interval`, and one at the end of each epoch's training and validation.
pub struct QuietRenderer {
    values: MetricValues,
    interval: Duration,
    last_line: Option<Instant>,
}

impl QuietRenderer {
    pub fn new(values: MetricValues, interval: Duration) -> Self {
        Self { values, interval, last_line: None }
    }

    fn render(&mut self, split: &str, item: &TrainingProgress, valid: bool) {
        let done = item.progress.as_ref().is_some_and(|p| p.items_processed >= p.items_total);
        let due = self.last_line.is_none_or(|at| at.elapsed() >= self.interval);
        if !(done || due) {
            return;
        }
        self.last_line = Some(Instant::now());
        let epoch = &item.global_progress;
        let items = item
            .progress
            .as_ref()
            .map(|p| format!(" items {}/{}", p.items_processed, p.items_total))
            .unwrap_or_default();
        let iteration = item.iteration.map(|i| format!(" iteration {i}")).unwrap_or_default();
        eprintln!(
            "[{split}] epoch {}/{}{iteration}{items}: {}",
            epoch.items_processed,
            epoch.items_total,
            self.values.line(valid)
        );
    }
}

impl MetricsRendererTraining for QuietRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.values.record(state, false);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.values.record(state, true);
    }

    fn render_train(&mut self, item: TrainingProgress, _indicators: Vec<ProgressType>) {
        self.render("train", &item, false);
    }

    fn render_valid(&mut self, item: TrainingProgress, _indicators: Vec<ProgressType>) {
        self.render("valid", &item, true);
    }

    fn on_train_end(&mut self, _summary: Option<LearnerSummary>) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for QuietRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.values.record(state, true);
    }

    fn render_test(&mut self, item: EvaluationProgress, _indicators: Vec<ProgressType>) {
        self.render("test", &TrainingProgress::from(&item), true);
    }
}

impl MetricsRenderer for QuietRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.values.lock().names.insert(definition.metric_id, definition.name);
    }
}

/// Log records go to stderr (burn-train's own file logger is turned off, so a skipped
/// step or a precision fallback shows up where the user looks).
pub struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl StderrLogger {
    /// Installs the logger; `RUST_LOG=info|debug|...` overrides the default of `warn`.
    pub fn install() {
        let level = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(log::LevelFilter::Warn);
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("[{} {}] {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}
