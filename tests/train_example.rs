//! Runs the `train` and `infer` example binaries the way a user would.
//!
//! `cargo test` builds the examples into `target/<profile>/examples/` with the same
//! features as this test, so the binaries are run directly (no nested cargo). A filtered
//! run (`cargo test --test train_example`) does not build examples; the tests then refuse
//! to run a missing or stale binary and say how to build it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::Value;

const ENV: &str = "BURN_PRECISION";
const STEPS: &str = "30";

/// `target/<profile>/examples/<name>`, checked to be newer than every source file it was
/// built from (cargo lists them in `<name>.d` next to it).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/train_example-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let how = "`cargo test` builds the examples only when no target filter is given: run \
               `cargo build --release --example train --example infer` (same features) first, \
               or a plain `cargo test --release -p burn-mixed`";
    let built = modified(&path).unwrap_or_else(|| panic!("{} does not exist; {how}", path.display()));
    let dep_info = std::fs::read_to_string(profile_dir.join("examples").join(format!("{name}.d"))).unwrap_or_default();
    for source in dep_sources(&dep_info) {
        let changed = modified(&source).is_none_or(|m| m > built);
        assert!(!changed, "{} is older than {} (or that file is gone); {how}", path.display(), source.display());
    }
    path
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The prerequisites of a make-style dep-info file (`target: a.rs b.rs`, spaces escaped).
fn dep_sources(dep_info: &str) -> Vec<PathBuf> {
    let Some((_, sources)) = dep_info.lines().next().and_then(|l| l.split_once(": ")) else {
        return Vec::new();
    };
    let sources = sources.replace("\\ ", "\0");
    sources.split_whitespace().map(|s| PathBuf::from(s.replace('\0', " "))).collect()
}

/// A fresh artifacts folder, unique to this test process and `name`.
fn artifacts(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burn-mixed-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct Run {
    output: Output,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn describe(&self) -> String {
        format!("exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code(), self.stdout(), self.stderr())
    }

    /// The JSON object on the last line of stdout, after checking the run succeeded.
    fn json(&self) -> Value {
        assert_eq!(self.code(), Some(0), "{}", self.describe());
        let stdout = self.stdout();
        let last = stdout.lines().last().unwrap_or_else(|| panic!("no stdout\n{}", self.describe()));
        let value: Value =
            serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e})\n{}", self.describe()));
        assert!(value.is_object(), "{}", self.describe());
        value
    }
}

/// Runs an example with `args`; `env` sets BURN_PRECISION (unset otherwise).
fn run(name: &str, args: &[&str], env: Option<&str>) -> Run {
    let mut command = Command::new(example(name));
    command.args(args).env_remove(ENV).env_remove("RUST_LOG");
    if let Some(value) = env {
        command.env(ENV, value);
    }
    Run { output: command.output().expect("the example starts") }
}

/// `train --steps STEPS --artifacts <fresh dir> ARGS` on `backend`.
fn train(tag: &str, backend: &str, args: &[&str], env: Option<&str>) -> (Run, PathBuf) {
    let dir = artifacts(tag);
    let dir_arg = dir.to_str().expect("utf-8 temp dir").to_string();
    let mut all = vec!["--backend", backend, "--steps", STEPS, "--artifacts", &dir_arg];
    all.extend_from_slice(args);
    (run("train", &all, env), dir)
}

fn number(json: &Value, key: &str) -> f64 {
    json[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {json}"))
}

fn final_loss(precision: &str) -> f64 {
    let (run, dir) = train(&format!("loss-{precision}"), "flex", &["--precision", precision], None);
    let loss = number(&run.json(), "final_loss");
    let _ = std::fs::remove_dir_all(dir);
    loss
}

#[test]
fn every_precision_and_alias_trains_on_flex() {
    #[rustfmt::skip]
    let cases = [
        ("32-true", "32-true", "f32"), ("32", "32-true", "f32"),
        ("64-true", "64-true", "f64"), ("64", "64-true", "f64"),
        ("16-mixed", "16-mixed", "f32"), ("16", "16-mixed", "f32"),
        ("bf16-mixed", "bf16-mixed", "f32"), ("bf16", "bf16-mixed", "f32"),
        ("16-true", "16-true", "f16"), ("bf16-true", "bf16-true", "bf16"),
    ];
    for (value, canonical, param_dtype) in cases {
        let (run, dir) = train(&format!("alias-{value}"), "flex", &["--precision", value], None);
        let json = run.json();
        let context = format!("--precision {value}: {json}");
        assert_eq!(json["precision"], canonical, "{context}");
        assert_eq!(json["backend"], "flex", "{context}");
        assert_eq!(json["param_dtype"], param_dtype, "{context}");
        assert_eq!(json["steps"], 30, "{context}");
        assert!(json["skipped_steps"].is_u64(), "{context}");
        match canonical {
            "16-mixed" => assert!(json["loss_scale"].as_f64().is_some_and(|s| s > 0.0), "{context}"),
            _ => assert!(json["loss_scale"].is_null(), "{context}"),
        }
        let loss = number(&json, "final_loss");
        assert!(loss.is_finite() && loss > 0.0, "{context}");
        let accuracy = number(&json, "valid_accuracy");
        assert!((0.0..=1.0).contains(&accuracy), "{context}");
        assert!(number(&json, "peak_bytes") > 0.0, "{context}");
        assert!(number(&json, "wall_s") >= 0.0, "{context}");
        assert!(dir.join("model.mpk").is_file() && dir.join("config.json").is_file(), "{context}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn precision_comes_from_the_environment_when_no_flag_is_given() {
    let (run, dir) = train("env", "flex", &[], Some("bf16"));
    assert_eq!(run.json()["precision"], "bf16-mixed");
    let _ = std::fs::remove_dir_all(dir);
    // A flag that agrees with the variable is fine.
    let (run, dir) = train("env-agree", "flex", &["--precision", "bf16-mixed"], Some("bf16"));
    assert_eq!(run.json()["precision"], "bf16-mixed");
    let _ = std::fs::remove_dir_all(dir);
    // Neither: 32-true, and without --steps one epoch of 4096 items.
    let dir = artifacts("default");
    let run = run_default(&dir);
    let json = run.json();
    assert_eq!((&json["precision"], &json["steps"], &json["epochs"]), (&"32-true".into(), &64.into(), &1.into()));
    let _ = std::fs::remove_dir_all(dir);
}

fn run_default(dir: &Path) -> Run {
    run("train", &["--artifacts", dir.to_str().expect("utf-8 temp dir")], None)
}

#[test]
fn half_precision_losses_track_32_true() {
    let reference = final_loss("32-true");
    for (precision, tolerance) in [("bf16-mixed", 0.05), ("16-mixed", 0.05), ("64-true", 0.001)] {
        let loss = final_loss(precision);
        let relative = (loss - reference).abs() / reference;
        assert!(
            relative <= tolerance,
            "{precision}: final loss {loss} vs 32-true {reference}: {:.3}% apart (limit {}%)",
            100.0 * relative,
            100.0 * tolerance
        );
    }
}

#[test]
fn invalid_precision_is_refused_with_the_valid_values() {
    let expected = ["32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "\"bf16\""];
    for (args, env) in [(&["--precision", "fp16"][..], None), (&[][..], Some("fp16"))] {
        let run = run("train", args, env);
        assert_ne!(run.code(), Some(0), "{}", run.describe());
        let stderr = run.stderr();
        assert!(stderr.contains("\"fp16\""), "{}", run.describe());
        for value in expected {
            assert!(stderr.contains(value), "{value} missing:\n{}", run.describe());
        }
    }
}

#[test]
fn flag_and_environment_must_agree() {
    let run = run("train", &["--precision", "16-mixed", "--steps", "1"], Some("bf16-mixed"));
    assert_ne!(run.code(), Some(0), "{}", run.describe());
    let stderr = run.stderr();
    assert!(stderr.contains("precision conflict"), "{}", run.describe());
    assert!(stderr.contains("--precision=16-mixed") && stderr.contains("BURN_PRECISION=bf16-mixed"), "{}", run.describe());
}

#[test]
fn unknown_backend_lists_the_compiled_ones() {
    let unknown = run("train", &["--backend", "tpu"], None);
    assert_eq!(unknown.code(), Some(2), "{}", unknown.describe());
    let stderr = unknown.stderr();
    assert!(stderr.contains("compiled backends") && stderr.contains("flex"), "{}", unknown.describe());
    #[cfg(not(feature = "cuda"))]
    {
        let absent = run("train", &["--backend", "cuda"], None);
        assert_eq!(absent.code(), Some(2), "{}", absent.describe());
        assert!(absent.stderr().contains("not compiled in"), "{}", absent.describe());
    }
}

#[test]
fn infer_reproduces_the_validation_accuracy() {
    for precision in ["32-true", "bf16-mixed", "16-true"] {
        let (trained, dir) = train(&format!("infer-{precision}"), "flex", &["--precision", precision], None);
        let trained = trained.json();
        let dir_arg = dir.to_str().expect("utf-8 temp dir");
        let inferred = run("infer", &["--artifacts", dir_arg, "--cpu"], None).json();
        let context = format!("{precision}: train {trained}, infer {inferred}");
        assert_eq!(inferred["precision"], precision, "{context}");
        assert_eq!(inferred["param_dtype"], trained["param_dtype"], "{context}");
        // Same backend, same weights (stored exactly), same data: the same predictions.
        assert_eq!(inferred["accuracy"], trained["valid_accuracy"], "{context}");
        let _ = std::fs::remove_dir_all(dir);
    }
    let missing = run("infer", &["--artifacts", "/nonexistent/burn-mixed"], None);
    assert_eq!(missing.code(), Some(1), "{}", missing.describe());
}

/// The run exited with status 2 and a message naming the backend and bf16, not a panic.
#[cfg(any(feature = "ndarray", feature = "wgpu"))]
fn assert_refused_bf16(run: &Run, backend: &str) {
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    let stderr = run.stderr();
    assert!(stderr.contains(backend) && stderr.contains("bf16"), "{}", run.describe());
    assert!(!stderr.contains("panicked"), "{}", run.describe());
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_trains_32_true_and_refuses_bf16() {
    let (run, dir) = train("ndarray-32", "ndarray", &["--precision", "32-true"], None);
    let json = run.json();
    assert_eq!((&json["backend"], &json["param_dtype"]), (&"ndarray".into(), &"f32".into()));
    let _ = std::fs::remove_dir_all(dir);

    let (run, dir) = train("ndarray-bf16", "ndarray", &["--precision", "bf16-mixed"], None);
    assert_refused_bf16(&run, "ndarray");
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_trains_16_mixed_and_refuses_bf16() {
    let (run, dir) = train("wgpu-16", "wgpu", &["--precision", "16-mixed"], None);
    let json = run.json();
    assert_eq!((&json["backend"], &json["precision"]), (&"wgpu".into(), &"16-mixed".into()));
    assert!(json["loss_scale"].is_number() && json["peak_bytes"].is_null(), "{json}");
    let _ = std::fs::remove_dir_all(dir);

    let (run, dir) = train("wgpu-16-true", "wgpu", &["--precision", "16-true"], None);
    let json = run.json();
    assert_eq!((&json["precision"], &json["param_dtype"]), (&"16-true".into(), &"f16".into()), "{json}");
    assert!(json["final_loss"].as_f64().is_some_and(f64::is_finite), "{json}");
    let _ = std::fs::remove_dir_all(dir);

    let (run, dir) = train("wgpu-bf16", "wgpu", &["--precision", "bf16-mixed"], None);
    assert_refused_bf16(&run, "wgpu");
    let _ = std::fs::remove_dir_all(dir);

    // Opting in to the fallback trains in 16-mixed instead, and says so.
    let (run, dir) = train("wgpu-fallback", "wgpu", &["--precision", "bf16-mixed", "--allow-fallback"], None);
    let json = run.json();
    assert_eq!((&json["precision"], &json["requested_precision"]), (&"16-mixed".into(), &"bf16-mixed".into()));
    assert!(run.stderr().contains("falling back to 16-mixed"), "{}", run.describe());
    let _ = std::fs::remove_dir_all(dir);
}
