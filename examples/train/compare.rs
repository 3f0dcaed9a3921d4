//! `--compare`: the runs of several precisions side by side. A table on stdout (each value
//! with its ratio to 32-true, the first run), the learning rate and loss of every step of
//! every run as CSV, the losses as a plot, and one JSON line with every run.
//!
//! Every run trains with the same learning-rate schedule (`schedule.rs`), and the table
//! leads with losses a single batch moves little: the mean training loss over the last
//! tenth of the steps and the validation loss. The last batch's loss comes after them, for
//! reference; alone it compares one batch's noise, or one run's late spike.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn_mixed::Precision;
use serde::Serialize;

use crate::plot;
use crate::report::{Outcome, mib, tail_steps};

/// `--compare`'s value: a comma-separated list of precisions, or `all`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareList {
    /// Every precision the backend runs.
    All,
    Listed(Vec<Precision>),
}

/// clap's parser for `--compare`; the error names the bad value and the valid ones.
pub fn parse_list(value: &str) -> Result<CompareList, String> {
    if value.trim() == "all" {
        return Ok(CompareList::All);
    }
    let mut precisions = Vec::new();
    for item in value.split(',').map(str::trim) {
        let precision: Precision = item.parse().map_err(|e| format!("{e} (or give `all`)"))?;
        if !precisions.contains(&precision) {
            precisions.push(precision);
        }
    }
    Ok(CompareList::Listed(precisions))
}

/// The precisions to run, 32-true first (the baseline every ratio divides by). Under
/// `all`, those `supported` accepts; a listed precision it refuses is an error.
pub fn plan(list: &CompareList, supported: impl Fn(Precision) -> Result<Precision, String>) -> Result<Vec<Precision>, String> {
    let mut plan = vec![Precision::True32];
    match list {
        CompareList::All => {
            for precision in Precision::ALL {
                match supported(precision) {
                    Ok(_) if !plan.contains(&precision) => plan.push(precision),
                    Ok(_) => {}
                    Err(why) => eprintln!("note: --compare all leaves out {precision}: {why}"),
                }
            }
        }
        CompareList::Listed(listed) => {
            for &precision in listed {
                supported(precision)?;
                if !plan.contains(&precision) {
                    plan.push(precision);
                }
            }
        }
    }
    Ok(plan)
}

fn ratio(value: Option<f64>, baseline: Option<f64>) -> String {
    match (value, baseline) {
        (Some(v), Some(b)) if b != 0.0 && v.is_finite() => format!("{:.2}", v / b),
        _ => "-".into(),
    }
}

/// The table, one row per run; ratios are to the first run.
pub fn table(runs: &[Outcome]) -> String {
    let base = &runs[0];
    let header = [
        "precision",
        "train loss",
        "ratio",
        "valid loss",
        "ratio",
        "valid accuracy",
        "ratio",
        "last batch loss",
        "step time",
        "ratio",
        "peak memory",
        "ratio",
        "skipped steps",
        "loss scale",
    ];
    let loss = |l: Option<f64>| l.map_or("-".into(), |l| format!("{l:.4}"));
    let peak = |o: &Outcome| o.peak_bytes.map(|b| b as f64);
    let mut rows = vec![header.map(String::from).to_vec()];
    for run in runs {
        rows.push(vec![
            run.precision.to_string(),
            loss(run.train_loss_last_tenth),
            ratio(run.train_loss_last_tenth, base.train_loss_last_tenth),
            loss(Some(run.valid_loss)),
            ratio(Some(run.valid_loss), Some(base.valid_loss)),
            format!("{:.4}", run.valid_accuracy),
            ratio(Some(run.valid_accuracy), Some(base.valid_accuracy)),
            loss(run.last_batch_loss),
            run.step_s.map_or("-".into(), |s| format!("{:.1} ms", s * 1e3)),
            ratio(run.step_s, base.step_s),
            run.peak_bytes.map_or("n/a".into(), |b| format!("{:.1} MiB", mib(b))),
            ratio(peak(run), peak(base)),
            run.skipped_steps.to_string(),
            run.loss_scale.map_or("-".into(), |s| s.to_string()),
        ]);
    }
    let widths: Vec<usize> = (0..header.len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// The CSV's header: one row per step per run, `step` counting from 1, `lr` the learning
/// rate the step's update used, `loss` the step's training loss (the mean over the devices'
/// batches when several train).
const CSV_HEADER: &str = "precision,step,lr,loss";

/// The per-step CSV, under [`CSV_HEADER`].
pub fn csv(runs: &[Outcome]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for run in runs {
        for (step, (lr, loss)) in run.learning_rates.iter().zip(&run.losses).enumerate() {
            let _ = writeln!(out, "{},{},{lr},{loss}", run.precision, step + 1);
        }
    }
    out
}

/// The comparison's JSON line.
#[derive(Serialize)]
struct Summary<'a> {
    /// The precision every ratio divides by: the first run's.
    baseline: Precision,
    /// The per-step CSV ([`CSV_HEADER`]).
    csv: &'a Path,
    plot: &'a Path,
    /// One object per precision, in the order they ran, with the fields of a single run's
    /// JSON line (`report::Outcome`).
    runs: &'a [Outcome],
}

/// Prints the table, writes `compare-losses.csv` and `compare-losses.png` into `dir`, says
/// where they went, and prints the JSON line.
pub fn report(runs: &[Outcome], dir: &Path, title: &str) -> Result<(), String> {
    println!("{}", table(runs));
    let base = &runs[0];
    let (steps, tail) = (base.losses.len(), tail_steps(base.losses.len()));
    println!(
        "ratio: to {} (run first; every run has the same initial weights, data and learning-rate schedule: \
         {} warm-up steps to {}, then a cosine to {:e}).",
        base.precision, base.warmup_steps, base.peak_lr, base.final_lr
    );
    println!(
        "train loss: the mean over steps {}-{steps} (the last tenth); valid loss and accuracy: the trained model on \
         the {} validation items; last batch loss: step {steps}'s batch alone.",
        steps + 1 - tail,
        base.valid_items
    );
    println!("step time: the median over the run's steps; peak memory: host allocations during training.");
    let csv_path: PathBuf = dir.join("compare-losses.csv");
    std::fs::write(&csv_path, csv(runs)).map_err(|e| format!("cannot write {}: {e}", csv_path.display()))?;
    let plot_path = dir.join("compare-losses.png");
    plot::losses(runs, title, &plot_path)?;
    println!("per-step losses  {}", csv_path.display());
    println!("loss plot        {}", plot_path.display());
    println!("each run's model {}/<precision>/", dir.display());
    let summary = Summary { baseline: runs[0].precision, csv: &csv_path, plot: &plot_path, runs };
    println!("{}", serde_json::to_string(&summary).expect("plain data serializes"));
    Ok(())
}
