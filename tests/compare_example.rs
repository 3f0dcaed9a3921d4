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

/// (precision, step, loss) rows of the CSV, after checking its header.
fn csv_rows(path: &Path) -> Vec<(String, usize, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("precision,step,loss"), "{}", path.display());
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), 3, "{line}");
            (cells[0].to_string(), cells[1].parse().expect("step"), cells[2].parse().expect("loss"))
        })
        .collect()
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
        assert!(number(r, "final_loss").is_finite() && number(r, "step_s") > 0.0, "{context}");
        assert!(number(r, "peak_bytes") > 0.0, "{context}");
        let folder = PathBuf::from(r["artifacts"].as_str().expect("artifacts"));
        assert!(folder.starts_with(&dir) && folder.join("model.mpk").is_file(), "{context}");
    }

    let table = table(&run.stdout());
    let header = [
        "precision",
        "final loss",
        "ratio",
        "valid accuracy",
        "ratio",
        "step time",
        "ratio",
        "peak memory",
        "ratio",
        "skipped steps",
        "loss scale",
    ];
    assert_eq!(table[0], header, "{}", run.describe());
    assert_eq!(table.len(), 1 + all.len(), "{}", run.describe());
    for (row, precision) in table[1..].iter().zip(all) {
        assert_eq!(row.len(), header.len(), "{row:?}");
        assert_eq!(row[0], precision, "{row:?}");
        assert!(row[5].ends_with(" ms") && row[7].ends_with(" MiB"), "{row:?}");
        assert_eq!(row[9], "0", "{row:?}");
        assert_eq!(row[10] == "65536", precision == "16-mixed", "{row:?}");
    }
    // The baseline's ratios are to itself; 64-true trains the same f32 start in f64.
    assert!(table[1][2..9].iter().step_by(2).all(|r| r == "1.00"), "{:?}", table[1]);

    // One CSV row per step per precision, ending at each run's final loss.
    let csv = PathBuf::from(json["csv"].as_str().expect("csv path"));
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 3 * all.len(), "{}", csv.display());
    for (r, precision) in runs(&json).iter().zip(all) {
        let steps: Vec<_> = rows.iter().filter(|row| row.0 == precision).collect();
        assert_eq!(steps.iter().map(|row| row.1).collect::<Vec<_>>(), [1, 2, 3], "{precision}");
        // Equal up to the last bit serde_json's float parsing may round differently.
        let (last, reported) = (steps[2].2, number(r, "final_loss"));
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
        assert_eq!(r["final_loss"], alone["final_loss"], "{precision}: compared {r}, alone {alone}");
        assert_eq!(r["valid_accuracy"], alone["valid_accuracy"], "{precision}: compared {r}, alone {alone}");
        let _ = std::fs::remove_dir_all(alone_dir);
    }
    let csv = PathBuf::from(json["csv"].as_str().expect("csv path"));
    assert_eq!(csv_rows(&csv).len(), 2 * 3);
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
