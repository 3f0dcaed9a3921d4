//! What the benches share: the models, one training step under a precision, peak memory,
//! and a summary of ratios to each table's baseline (its first column), measured in the
//! same run.

// Each bench binary uses part of this module.
#![allow(dead_code)]

pub mod memory;
pub mod models;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::tensor::backend::AutodiffBackend;
use burn_mixed::autocast::AutocastGuard;
use burn_mixed::{MixedPrecision, Precision};
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;

use models::Workload;

/// The environment variable that, set to `0`, leaves the bench's thread out of rayon's
/// pool (the threading before `join_host_pool`, for comparison).
pub const HOST_POOL_ENV: &str = "MIXED_BENCH_HOST_POOL";

/// Joins the bench's thread to rayon's pool, as a training loop on the host does
/// (`burn_mixed::kernels::join_host_pool`), unless [`HOST_POOL_ENV`] is `0`; says which.
pub fn join_host_pool() {
    if std::env::var(HOST_POOL_ENV).is_ok_and(|v| v == "0") {
        println!("{HOST_POOL_ENV}=0: the bench's thread stays out of rayon's pool");
    } else {
        burn_mixed::kernels::join_host_pool().expect("the bench's first rayon use");
    }
}

/// The precisions a step bench compares, baseline first.
pub const PRECISIONS: [Precision; 5] =
    [Precision::True32, Precision::MixedBf16, Precision::TrueBf16, Precision::Mixed16, Precision::True16];

/// The precisions of `precisions` that run on `device` (lavapipe has no bf16, for one).
pub fn runnable<B: AutodiffBackend>(precisions: &[Precision], device: &B::Device) -> Vec<Precision> {
    precisions.iter().copied().filter(|p| MixedPrecision::new(*p).resolve::<B>(device).is_ok()).collect()
}

/// One training step without the optimizer: forward and loss (in an autocast region under
/// the mixed precisions), backward, and a wait for the device to finish.
pub fn step<B: AutodiffBackend, W: Workload<B>>(model: &W, precision: Precision, device: &B::Device) {
    let loss = {
        let _region = match precision.is_mixed() {
            true => AutocastGuard::enable::<B>(device, precision.compute_dtype()).expect("checked by runnable"),
            false => AutocastGuard::disable(),
        };
        model.loss()
    };
    // Gradients stay alive across the sync so that a lazy backend computes them.
    let grads = loss.backward();
    B::sync(device).expect("device sync");
    drop(grads);
}

/// Per-iteration times and peak bytes of each (table, precision), for the summary.
#[derive(Default)]
struct Record {
    nanos: Vec<f64>,
    peak: Option<u64>,
}

/// (table, column, record), in the order the columns were first seen.
static RECORDS: Mutex<Vec<(String, String, Record)>> = Mutex::new(Vec::new());

fn record(table: &str, column: &str, edit: impl FnOnce(&mut Record)) {
    let mut records = RECORDS.lock().expect("records");
    let index = match records.iter().position(|(t, c, _)| t == table && c == column) {
        Some(i) => i,
        None => {
            records.push((table.to_owned(), column.to_owned(), Record::default()));
            records.len() - 1
        }
    };
    edit(&mut records[index].2);
}

/// Benchmarks `run` as `column` of `group`, also keeping each sample's per-iteration time
/// for the ratio table.
pub fn bench(group: &mut BenchmarkGroup<'_, WallTime>, table: &str, column: &str, mut run: impl FnMut()) {
    group.bench_function(column, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            let elapsed = start.elapsed();
            record(table, column, |r| r.nanos.push(elapsed.as_nanos() as f64 / iters as f64));
            elapsed
        })
    });
}

/// Records the peak bytes of `column` in `table`.
pub fn record_peak(table: &str, column: &str, bytes: u64) {
    record(table, column, |r| r.peak = Some(bytes));
}

/// Each (table, column) measured so far with its median time per iteration, in nanoseconds.
pub fn medians() -> Vec<(String, String, f64)> {
    let records = RECORDS.lock().expect("records");
    records.iter().filter(|(_, _, r)| !r.nanos.is_empty()).map(|(t, c, r)| (t.clone(), c.clone(), median(&r.nanos))).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints each column's median step time and peak bytes, with their ratios to the first
/// column of its table.
pub fn print_summary() {
    let records = RECORDS.lock().expect("records");
    println!("\n{:<30} {:>22} {:>11} {:>7} {:>12} {:>7}", "table", "column", "time", "ratio", "peak bytes", "ratio");
    let mut baseline: Option<(&str, Option<f64>, Option<u64>)> = None;
    for (table, column, r) in records.iter() {
        let time = (!r.nanos.is_empty()).then(|| median(&r.nanos));
        if baseline.is_none_or(|(t, _, _)| t != table) {
            baseline = Some((table, time, r.peak));
        }
        let (_, base_time, base_peak) = baseline.expect("set above");
        let shown_time = time.map_or("-".into(), |n| format!("{:.2?}", Duration::from_nanos(n as u64)));
        let time_ratio = time.zip(base_time).map_or("-".into(), |(n, b)| format!("{:.3}", n / b));
        let peak = r.peak.map_or("-".into(), |p| p.to_string());
        let peak_ratio = r.peak.zip(base_peak).map_or("-".into(), |(p, b)| format!("{:.3}", p as f64 / b as f64));
        println!("{table:<30} {column:>22} {shown_time:>11} {time_ratio:>7} {peak:>12} {peak_ratio:>7}");
    }
}
