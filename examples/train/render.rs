//! Progress display and metric recording. Every run records the training loss of every
//! step and when it came (for the summary, the step time, the comparison's CSV and plot)
//! and the last value of each metric (for the quiet lines); the display is burn-train's terminal UI when the output is a terminal, and otherwise a
//! quiet line on stderr every few seconds, so that stdout keeps only the summary and the
//! JSON line when it is piped or captured.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::tui::TuiMetricsRendererWrapper;
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation, MetricsRendererTraining, ProgressType,
    TrainingProgress,
};
use burn::train::{Interrupter, LearnerSummary};

/// The name burn-train's `LossMetric` registers.
const LOSS: &str = "Loss";

/// `--renderer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RendererKind {
    /// `tui` when stdout and stderr are both terminals, else `quiet`.
    Auto,
    /// burn-train's terminal UI (needs stdout to be a terminal; `q` stops training).
    Tui,
    /// A progress line on stderr every 2 seconds.
    Quiet,
}

impl RendererKind {
    /// `auto` decided for this process; `tui` refused when stdout is not a terminal (the
    /// UI would write its escape codes into a file or pipe).
    pub fn resolve(self) -> Result<RendererKind, String> {
        let stdout = std::io::stdout().is_terminal();
        match self {
            RendererKind::Auto if stdout && std::io::stderr().is_terminal() => Ok(RendererKind::Tui),
            RendererKind::Auto => Ok(RendererKind::Quiet),
            RendererKind::Tui if !stdout => Err("--renderer tui draws on stdout, which is not a terminal here; valid values: auto, tui \
                 (stdout a terminal), quiet"
                .into()),
            kind => Ok(kind),
        }
    }
}

/// What the recorder saw, shared with the code that launched training.
#[derive(Clone, Default)]
pub struct MetricValues {
    shared: Arc<Mutex<Values>>,
}

#[derive(Default)]
struct Values {
    names: HashMap<MetricId, String>,
    /// The last value of each training and validation metric.
    train: HashMap<String, f64>,
    valid: HashMap<String, f64>,
    /// The training loss of every step, and when it arrived.
    losses: Vec<(Instant, f64)>,
}

impl MetricValues {
    fn lock(&self) -> std::sync::MutexGuard<'_, Values> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The training loss of every step, in order.
    pub fn losses(&self, items_per_step: usize) -> Vec<f64> {
        // Data-parallel strategies report each device's loss on its share of the step's
        // batch (equal shares): their mean is the loss over the global batch.
        let values = self.lock();
        values.losses.chunks(items_per_step.max(1)).map(|c| c.iter().map(|(_, l)| l).sum::<f64>() / c.len() as f64).collect()
    }

    /// The median time between two consecutive training steps' losses: a step's forward,
    /// backward and optimizer update plus burn-train's own work, as a user waits for it.
    /// The median leaves out the validation passes between epochs and the first steps'
    /// warm-up. `None` with fewer than two steps. Data-parallel strategies report one item
    /// per device per step, so a step spans `items_per_step` items.
    pub fn step_seconds(&self, items_per_step: usize) -> Option<f64> {
        let values = self.lock();
        let n = items_per_step.max(1);
        let mut gaps: Vec<f64> = values.losses.windows(n + 1).map(|w| (w[n].0 - w[0].0).as_secs_f64()).collect();
        if gaps.is_empty() {
            return None;
        }
        gaps.sort_by(f64::total_cmp);
        Some(gaps[gaps.len() / 2])
    }

    fn record(&self, state: &MetricState, valid: bool) {
        // Numeric entries carry the last batch's value; text-only metrics are skipped.
        let MetricState::Numeric(entry, value) = state else { return };
        let mut values = self.lock();
        let Some(name) = values.names.get(&entry.metric_id).cloned() else { return };
        if !valid && name == LOSS {
            values.losses.push((Instant::now(), value.current()));
        }
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

/// burn-train's renderer for one run: records into [`MetricValues`] and displays through
/// burn-train's terminal UI or the quiet lines.
pub struct Recorder {
    values: MetricValues,
    display: Display,
}

enum Display {
    Quiet { interval: Duration, last_line: Option<Instant> },
    Tui(TuiMetricsRendererWrapper),
}

impl Recorder {
    /// `kind` must be resolved (`tui` or `quiet`); the UI's `q` key stops training through
    /// `interrupter` (burn-train's own).
    pub fn new(kind: RendererKind, values: MetricValues, interrupter: Interrupter) -> Self {
        let display = match kind {
            RendererKind::Tui => Display::Tui(TuiMetricsRendererWrapper::new(interrupter, None)),
            RendererKind::Auto | RendererKind::Quiet => Display::Quiet { interval: Duration::from_secs(2), last_line: None },
        };
        Self { values, display }
    }

    fn quiet_line(&mut self, split: &str, item: &TrainingProgress, valid: bool) {
        let Display::Quiet { interval, last_line } = &mut self.display else { return };
        let done = item.progress.as_ref().is_some_and(|p| p.items_processed >= p.items_total);
        let due = last_line.is_none_or(|at| at.elapsed() >= *interval);
        if !(done || due) {
            return;
        }
        *last_line = Some(Instant::now());
        let epoch = &item.global_progress;
        let items = item.progress.as_ref().map(|p| format!(" items {}/{}", p.items_processed, p.items_total)).unwrap_or_default();
        let iteration = item.iteration.map(|i| format!(" iteration {i}")).unwrap_or_default();
        eprintln!("[{split}] epoch {}/{}{iteration}{items}: {}", epoch.items_processed, epoch.items_total, self.values.line(valid));
    }
}

impl MetricsRendererTraining for Recorder {
    fn update_train(&mut self, state: MetricState) {
        self.values.record(&state, false);
        if let Display::Tui(tui) = &mut self.display {
            tui.update_train(state);
        }
    }

    fn update_valid(&mut self, state: MetricState) {
        self.values.record(&state, true);
        if let Display::Tui(tui) = &mut self.display {
            tui.update_valid(state);
        }
    }

    fn render_train(&mut self, item: TrainingProgress, indicators: Vec<ProgressType>) {
        match &mut self.display {
            Display::Tui(tui) => tui.render_train(item, indicators),
            Display::Quiet { .. } => self.quiet_line("train", &item, false),
        }
    }

    fn render_valid(&mut self, item: TrainingProgress, indicators: Vec<ProgressType>) {
        match &mut self.display {
            Display::Tui(tui) => tui.render_valid(item, indicators),
            Display::Quiet { .. } => self.quiet_line("valid", &item, true),
        }
    }

    fn on_train_end(&mut self, summary: Option<LearnerSummary>) -> Result<(), Box<dyn core::error::Error>> {
        // The quiet display leaves burn-train's summary out: stdout gets the example's own.
        match &mut self.display {
            Display::Tui(tui) => tui.on_train_end(summary),
            Display::Quiet { .. } => Ok(()),
        }
    }
}

impl MetricsRendererEvaluation for Recorder {
    fn update_test(&mut self, name: EvaluationName, state: MetricState) {
        self.values.record(&state, true);
        if let Display::Tui(tui) = &mut self.display {
            tui.update_test(name, state);
        }
    }

    fn render_test(&mut self, item: EvaluationProgress, indicators: Vec<ProgressType>) {
        match &mut self.display {
            Display::Tui(tui) => tui.render_test(item, indicators),
            Display::Quiet { .. } => self.quiet_line("test", &TrainingProgress::from(&item), true),
        }
    }

    fn on_test_end(&mut self, summary: Option<LearnerSummary>) -> Result<(), Box<dyn core::error::Error>> {
        match &mut self.display {
            Display::Tui(tui) => tui.on_test_end(summary),
            Display::Quiet { .. } => Ok(()),
        }
    }
}

impl MetricsRenderer for Recorder {
    fn manual_close(&mut self) {
        if let Display::Tui(tui) = &mut self.display {
            tui.manual_close();
        }
    }

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.values.lock().names.insert(definition.metric_id.clone(), definition.name.clone());
        if let Display::Tui(tui) = &mut self.display {
            tui.register_metric(definition);
        }
    }
}
