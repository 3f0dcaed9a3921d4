//! `train --compare`: every precision from the same start, a table, a CSV of per-step
//! losses and a plot, on tiny configurations (a few steps each).

mod examples_common;

use std::path::{Path, PathBuf};

use examples_common::{Run, artifacts, number, run};
use serde_json::Value;

/// `train --compare LIST --steps STEPS --artifacts <fresh dir> ARGS`.
fn compare(tag: &str, list: &str, steps: &str, args: &[&str]) -> (Run, PathBuf) {
    let dir = artifacts(tag);
    let dir_arg = dir.to_str().expect("utf-8 temp dir").to_string();
    let mut all = vec!["--compare", list, "--steps", steps, "--artifacts", &dir_arg];
    all.extend_from_slice(args);
    (run("train", &all, None), dir)
}

fn runs(json: &Value) -> &Vec<Value> {
    json["runs"].as_array().unwrap_or_else(|| panic!("no runs in {json}"))
}

fn precisions(json: &Value) -> Vec<&str> {
    runs(json).iter().map(|r| r["precision"].as_str().expect("precision")).collect()
}

/// The table's header and rows: the stdout lines from the one starting with "precision" to
/// the first empty one, split on runs of two or more spaces.
fn table(stdout: &str) -> Vec<Vec<String>> {
    let lines = stdout.lines().skip_while(|l| !l.starts_with("precision ")).take_while(|l| !l.trim().is_empty());
    lines.map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()).collect()
}

/// One row of the per-step CSV.
struct CsvRow {
    precision: String,
    step: usize,
    lr: f64,
    loss: f64,
}

/// The rows of the CSV, after checking its header.
fn csv_rows(path: &Path) -> Vec<CsvRow> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("precision,step,lr,loss"), "{}", path.display());
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), 4, "{line}");
            let number = |i: usize| cells[i].parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            CsvRow { precision: cells[0].to_string(), step: cells[1].parse().expect("step"), lr: number(2), loss: number(3) }
        })
        .collect()
}

/// The CSV rows of `precision`, in order.
fn steps_of<'a>(rows: &'a [CsvRow], precision: &str) -> Vec<&'a CsvRow> {
    rows.iter().filter(|row| row.precision == precision).collect()
}

/// Equal to rounding: the schedule's rates are computed, not typed in.
fn close(value: f64, expected: f64) -> bool {
    (value - expected).abs() <= 1e-12 * expected.abs()
}

/// Decodes the PNG; returns its size and how many pixels are coloured (not grey).
fn decode_png(path: &Path) -> (u32, u32, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let frame = reader.next_frame(&mut pixels).expect("PNG image data");
    assert_eq!((frame.color_type, frame.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
    let coloured = pixels[..frame.buffer_size()].chunks(3).filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 40).count();
    (frame.width, frame.height, coloured)
}

#[test]
fn compare_all_gives_a_table_a_csv_and_a_plot() {
    let (run, dir) = compare("all-mlp", "all", "3", &["--model", "mlp"]);
    let json = run.json();
    let all = ["32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true"];
    assert_eq!(precisions(&json), all, "{json}");
    assert_eq!(json["baseline"], "32-true");
    for r in runs(&json) {
        let context = format!("{r}");
        assert_eq!((&r["model"], &r["steps"], &r["backend"]), (&"mlp".into(), &3.into(), &"flex".into()), "{context}");
        for key in ["train_loss_last_tenth", "last_batch_loss", "valid_loss", "valid_accuracy"] {
            assert!(number(r, key).is_finite(), "{key}: {context}");
        }
        assert!(number(r, "step_s") > 0.0, "{context}");
        // Three steps: the last tenth is the last step, and no step warms up.
        assert_eq!(r["train_loss_last_tenth"], r["last_batch_loss"], "{context}");
        assert_eq!((&r["peak_lr"], &r["warmup_steps"]), (&0.01.into(), &0.into()), "{context}");
        assert!(number(r, "peak_bytes") > 0.0, "{context}");
        let folder = PathBuf::from(r["artifacts"].as_str().expect("artifacts"));
        assert!(folder.starts_with(&dir) && folder.join("model.mpk").is_file(), "{context}");
    }

    let table = table(&run.stdout());
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
    assert_eq!(table[0], header, "{}", run.describe());
    assert_eq!(table.len(), 1 + all.len(), "{}", run.describe());
    for ((row, precision), r) in table[1..].iter().zip(all).zip(runs(&json)) {
        assert_eq!(row.len(), header.len(), "{row:?}");
        assert_eq!(row[0], precision, "{row:?}");
        // The JSON's values, rounded.
        for (column, key) in [(1, "train_loss_last_tenth"), (3, "valid_loss"), (5, "valid_accuracy"), (7, "last_batch_loss")] {
            assert_eq!(row[column], format!("{:.4}", number(r, key)), "{key}: {row:?}");
        }
        assert!(row[8].ends_with(" ms") && row[10].ends_with(" MiB"), "{row:?}");
        assert_eq!(row[12], "0", "{row:?}");
        assert_eq!(row[13] == "65536", precision == "16-mixed", "{row:?}");
    }
    // The baseline's ratios are to itself.
    for column in [2, 4, 6, 9, 11] {
        assert_eq!(table[1][column], "1.00", "{} of {:?}", header[column], table[1]);
    }
    assert!(run.stdout().contains("train loss: the mean over steps 3-3 (the last tenth)"), "{}", run.describe());

    // One CSV row per step per precision, ending at each run's last batch loss, and every
    // precision on the same schedule: three steps of a cosine from the peak to a hundredth.
    let csv = PathBuf::from(json["csv"].as_str().expect("csv path"));
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 3 * all.len(), "{}", csv.display());
    for (r, precision) in runs(&json).iter().zip(all) {
        let steps = steps_of(&rows, precision);
        assert_eq!(steps.iter().map(|row| row.step).collect::<Vec<_>>(), [1, 2, 3], "{precision}");
        let rates: Vec<f64> = steps.iter().map(|row| row.lr).collect();
        assert!(rates.iter().zip([0.01, 0.00505, 0.0001]).all(|(lr, expected)| close(*lr, expected)), "{precision}: {rates:?}");
        // Equal up to the last bit serde_json's float parsing may round differently.
        let (last, reported) = (steps[2].loss, number(r, "last_batch_loss"));
        assert!((last - reported).abs() <= 1e-12 * reported.abs(), "{precision}: CSV {last}, JSON {reported}");
    }

    let plot = PathBuf::from(json["plot"].as_str().expect("plot path"));
    let (width, height, coloured) = decode_png(&plot);
    assert_eq!((width, height), (960, 560));
    assert!(coloured > 500, "{coloured} coloured pixels: the curves are missing from {}", plot.display());
    let stdout = run.stdout();
    assert!(stdout.contains(&csv.display().to_string()) && stdout.contains(&plot.display().to_string()), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn compared_runs_match_runs_of_their_own() {
    // The transformer, bf16-mixed listed alone: 32-true is added first, as the baseline.
    let (run_pair, dir) = compare("pair", "bf16-mixed", "3", &[]);
    let json = run_pair.json();
    assert_eq!(precisions(&json), ["32-true", "bf16-mixed"], "{json}");
    // Same initial weights, same data, nothing carried over from the run before: each
    // compared run is the run one `--precision` gives, bit for bit.
    for (r, precision) in runs(&json).iter().zip(["32-true", "bf16-mixed"]) {
        let alone_dir = artifacts(&format!("alone-{precision}"));
        let alone_arg = alone_dir.to_str().expect("utf-8 temp dir");
        let alone = run("train", &["--precision", precision, "--steps", "3", "--artifacts", alone_arg], None).json();
        assert_eq!(r["model"], "transformer");
        for key in ["train_loss_last_tenth", "last_batch_loss", "valid_loss", "valid_accuracy"] {
            assert_eq!(r[key], alone[key], "{precision} {key}: compared {r}, alone {alone}");
        }
        let _ = std::fs::remove_dir_all(alone_dir);
    }
    let csv = PathBuf::from(json["csv"].as_str().expect("csv path"));
    assert_eq!(csv_rows(&csv).len(), 2 * 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_precision_warms_up_then_decays_on_the_same_schedule() {
    let (run, dir) = compare("schedule", "16-mixed", "20", &["--model", "mlp", "--lr", "0.004", "--warmup-fraction", "0.25"]);
    let json = run.json();
    for r in runs(&json) {
        assert_eq!((&r["peak_lr"], &r["warmup_steps"]), (&0.004.into(), &5.into()), "{r}");
        assert!(close(number(r, "final_lr"), 0.004 / 100.0), "{r}");
    }
    let rows = csv_rows(&PathBuf::from(json["csv"].as_str().expect("csv path")));
    let baseline: Vec<f64> = steps_of(&rows, "32-true").iter().map(|row| row.lr).collect();
    let mixed: Vec<f64> = steps_of(&rows, "16-mixed").iter().map(|row| row.lr).collect();
    assert_eq!(baseline, mixed);
    assert_eq!(baseline.len(), 20);
    // Five warm-up steps climb by a sixth of the peak each, the sixth step is the peak, and
    // the cosine falls from there to a hundredth of it at the last step.
    for (step, lr) in baseline[..6].iter().enumerate() {
        assert!(close(*lr, 0.004 * (step + 1) as f64 / 6.0), "step {}: {baseline:?}", step + 1);
    }
    assert!(baseline[5..].windows(2).all(|w| w[1] < w[0]), "{baseline:?}");
    assert!(close(baseline[19], 0.00004), "{baseline:?}");
    // The headline loss is the mean of the last two steps' losses.
    for (r, precision) in runs(&json).iter().zip(["32-true", "16-mixed"]) {
        let losses: Vec<f64> = steps_of(&rows, precision).iter().map(|row| row.loss).collect();
        assert!(close(number(r, "train_loss_last_tenth"), (losses[18] + losses[19]) / 2.0), "{precision}: {r}");
    }
    assert!(run.stdout().contains("the mean over steps 19-20"), "{}", run.describe());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_comparisons_are_refused() {
    let bad = run("train", &["--compare", "32-true,fp16", "--steps", "1"], None);
    assert_eq!(bad.code(), Some(2), "{}", bad.describe());
    let stderr = bad.stderr();
    for value in ["\"fp16\"", "bf16-mixed", "16-true", "all"] {
        assert!(stderr.contains(value), "{value} missing:\n{}", bad.describe());
    }
    assert!(!stderr.contains("panicked"), "{}", bad.describe());

    let both = run("train", &["--compare", "all", "--precision", "16-mixed"], None);
    assert_eq!(both.code(), Some(2), "{}", both.describe());
    assert!(both.stderr().contains("--precision"), "{}", both.describe());
}

#[cfg(feature = "ndarray")]
#[test]
fn compare_all_leaves_out_what_the_backend_cannot_run() {
    let (all, dir) = compare("ndarray-all", "all", "2", &["--backend", "ndarray", "--model", "mlp"]);
    let json = all.json();
    assert_eq!(precisions(&json), ["32-true", "64-true"], "{json}");
    assert!(all.stderr().contains("leaves out bf16-mixed"), "{}", all.describe());
    let _ = std::fs::remove_dir_all(dir);

    // A listed precision it cannot run is an error, before any training.
    let (listed, dir) = compare("ndarray-bf16", "bf16-mixed", "2", &["--backend", "ndarray"]);
    assert_eq!(listed.code(), Some(2), "{}", listed.describe());
    let stderr = listed.stderr();
    assert!(stderr.contains("ndarray") && stderr.contains("bf16") && !stderr.contains("panicked"), "{}", listed.describe());
    assert!(!stderr.contains("training the"), "{}", listed.describe());
    let _ = std::fs::remove_dir_all(dir);
}
