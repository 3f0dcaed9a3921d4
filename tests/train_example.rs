//! Runs the `train` and `infer` example binaries the way a user would (see
//! `examples_common` for how they are found), one precision per run; `compare_example.rs`
//! tests `--compare`.

mod examples_common;

use std::path::PathBuf;

use examples_common::{Run, artifacts, number, run};

const STEPS: &str = "30";

/// `train --steps STEPS --artifacts <fresh dir> ARGS` on `backend`.
fn train(tag: &str, backend: &str, args: &[&str], env: Option<&str>) -> (Run, PathBuf) {
    let dir = artifacts(tag);
    let dir_arg = dir.to_str().expect("utf-8 temp dir").to_string();
    let mut all = vec!["--backend", backend, "--steps", STEPS, "--artifacts", &dir_arg];
    all.extend_from_slice(args);
    (run("train", &all, env), dir)
}

/// The headline loss of a run: the mean over its last tenth of the steps.
fn train_loss(precision: &str) -> f64 {
    let (run, dir) = train(&format!("loss-{precision}"), "flex", &["--precision", precision], None);
    let loss = number(&run.json(), "train_loss_last_tenth");
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
        assert_eq!(json["model"], "transformer", "{context}");
        assert_eq!(json["param_dtype"], param_dtype, "{context}");
        assert_eq!(json["steps"], 30, "{context}");
        // One host device: the loop's thread joined rayon's pool.
        assert_eq!(json["host_pool"], true, "{context}");
        assert!(json["skipped_steps"].is_u64(), "{context}");
        match canonical {
            "16-mixed" => assert!(json["loss_scale"].as_f64().is_some_and(|s| s > 0.0), "{context}"),
            _ => assert!(json["loss_scale"].is_null(), "{context}"),
        }
        for key in ["train_loss_last_tenth", "last_batch_loss", "valid_loss"] {
            let loss = number(&json, key);
            assert!(loss.is_finite() && loss > 0.0, "{key}: {context}");
        }
        // 30 steps: the first two warm up (5%, rounded), the cosine ends at a hundredth.
        assert_eq!((&json["peak_lr"], &json["warmup_steps"]), (&0.002.into(), &2.into()), "{context}");
        assert!((number(&json, "final_lr") - 2e-5).abs() < 1e-15, "{context}");
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
    // Neither: 32-true, and without --steps one epoch of the MLP's 4096 items (the
    // transformer's default epoch is a minute long).
    let dir = artifacts("default");
    let default = examples_common::run("train", &["--model", "mlp", "--artifacts", dir.to_str().expect("utf-8 temp dir")], None);
    let json = default.json();
    assert_eq!((&json["precision"], &json["steps"], &json["epochs"]), (&"32-true".into(), &64.into(), &1.into()));
    assert_eq!((&json["model"], &json["train_items"]), (&"mlp".into(), &4096.into()));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn half_precision_losses_track_32_true() {
    let reference = train_loss("32-true");
    for (precision, tolerance) in [("bf16-mixed", 0.05), ("16-mixed", 0.05), ("64-true", 0.001)] {
        let loss = train_loss(precision);
        let relative = (loss - reference).abs() / reference;
        assert!(
            relative <= tolerance,
            "{precision}: train loss {loss} vs 32-true {reference}: {:.3}% apart (limit {}%)",
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
        assert_eq!(run.code(), Some(2), "{}", run.describe());
        assert!(!run.stderr().contains("panicked"), "{}", run.describe());
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
    for (model, precision) in [("transformer", "32-true"), ("transformer", "bf16-mixed"), ("transformer", "16-true"), ("mlp", "bf16-mixed")]
    {
        let (trained, dir) = train(&format!("infer-{model}-{precision}"), "flex", &["--precision", precision, "--model", model], None);
        let trained = trained.json();
        let dir_arg = dir.to_str().expect("utf-8 temp dir");
        let inferred = run("infer", &["--artifacts", dir_arg, "--cpu"], None).json();
        let context = format!("{precision}: train {trained}, infer {inferred}");
        assert_eq!(inferred["precision"], precision, "{context}");
        assert_eq!(inferred["model"], model, "{context}");
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
    // A GPU backend's ops do not split across the host's threads: the pool is left alone.
    assert_eq!(json["host_pool"], false, "{json}");
    let _ = std::fs::remove_dir_all(dir);

    let (run, dir) = train("wgpu-16-true", "wgpu", &["--precision", "16-true"], None);
    let json = run.json();
    assert_eq!((&json["precision"], &json["param_dtype"]), (&"16-true".into(), &"f16".into()), "{json}");
    assert!(json["train_loss_last_tenth"].as_f64().is_some_and(f64::is_finite), "{json}");
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

#[test]
fn renderer_and_model_values_are_checked() {
    // stdout is a pipe here: the terminal UI cannot draw on it.
    let tui = run("train", &["--renderer", "tui", "--steps", "1"], None);
    assert_eq!(tui.code(), Some(2), "{}", tui.describe());
    assert!(tui.stderr().contains("not a terminal") && tui.stderr().contains("quiet"), "{}", tui.describe());
    #[rustfmt::skip]
    let refused = [
        ("--renderer", "sparkly", &["auto", "tui", "quiet"][..]),
        ("--model", "cnn", &["transformer", "mlp"]),
        ("--warmup-fraction", "1.5", &["[0, 1)"]),
        // Burn's schedulers take rates in (0, 1].
        ("--lr", "2", &["at most 1"]),
    ];
    for (flag, bad, valid) in refused {
        let run = run("train", &[flag, bad], None);
        assert_eq!(run.code(), Some(2), "{}", run.describe());
        let stderr = run.stderr();
        assert!(stderr.contains(bad) && valid.iter().all(|v| stderr.contains(v)), "{}", run.describe());
    }
    // Auto, with stdout a pipe: the quiet renderer's lines on stderr, stdout kept clean.
    let (quiet, dir) = train("quiet", "flex", &["--model", "mlp"], None);
    quiet.json();
    assert!(quiet.stderr().contains("[train] epoch 1/1"), "{}", quiet.describe());
    assert!(quiet.stdout().lines().all(|l| !l.starts_with('[')), "{}", quiet.describe());
    let _ = std::fs::remove_dir_all(dir);
}

/// What makes wgpu find no adapter here (checked on this project's machines): no Vulkan
/// driver manifest, so the Vulkan loader offers none, and wgpu asks for Vulkan only.
#[cfg(feature = "wgpu")]
const NO_VULKAN: [(&str, &str); 3] =
    [("VK_ICD_FILENAMES", "/nonexistent/icd.json"), ("VK_DRIVER_FILES", "/nonexistent/icd.json"), ("VK_ADD_DRIVER_FILES", "")];

#[cfg(feature = "wgpu")]
#[test]
fn a_missing_wgpu_adapter_is_an_error_and_infer_falls_back() {
    let dir = artifacts("no-adapter");
    let dir_arg = dir.to_str().expect("utf-8 temp dir");
    let missing = examples_common::run_with("train", &["--backend", "wgpu", "--steps", "1", "--artifacts", dir_arg], &NO_VULKAN);
    assert_eq!(missing.code(), Some(2), "{}", missing.describe());
    let stderr = missing.stderr();
    for needle in ["backend wgpu", "mesa-vulkan-drivers", "--backend flex"] {
        assert!(stderr.contains(needle), "{needle} missing:\n{}", missing.describe());
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{}", missing.describe());

    // The inference example runs the model on the CPU instead, and says so.
    let _ = std::fs::remove_dir_all(&dir);
    let (trained, dir) = train("no-adapter-infer", "flex", &["--model", "mlp"], None);
    trained.json();
    let dir_arg = dir.to_str().expect("utf-8 temp dir");
    let inferred = examples_common::run_with("infer", &["--artifacts", dir_arg], &NO_VULKAN);
    assert_eq!(inferred.json()["backend"], "flex", "{}", inferred.describe());
    assert!(inferred.stdout().contains("no usable Wgpu adapter"), "{}", inferred.describe());
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_trains_data_parallel_on_two_devices_and_bad_device_lists_are_refused() {
    // Two devices on one lavapipe adapter, burn-mixed's host-staged strategy, 16-mixed.
    let (run, dir) = train("wgpu-devices", "wgpu", &["--model", "mlp", "--devices", "default,cpu", "--precision", "16-mixed"], None);
    let json = run.json();
    assert_eq!((&json["devices"], &json["steps"], &json["batch_size"]), (&2.into(), &30.into(), &64.into()), "{json}");
    // --steps counts optimizer steps: each device takes its own batch of 64 per step.
    assert_eq!(json["train_items"], 30 * 64 * 2, "{json}");
    assert!(json["loss_scale"].as_f64().is_some_and(|s| s > 0.0), "{json}");
    let loss = number(&json, "train_loss_last_tenth");
    assert!(loss.is_finite() && loss > 0.0, "{json}");
    assert!(run.stderr().contains("2 devices"), "{}", run.describe());
    let _ = std::fs::remove_dir_all(dir);

    // Refused before training, with exit code 2 and the reason.
    #[rustfmt::skip]
    let refused: [(&str, &[&str], &[&str]); 5] = [
        ("wgpu", &["--devices", "cpu,cpu"], &["Cpu appears twice"]),
        ("wgpu", &["--devices", "default,gpu"], &["\"gpu\"", "default, cpu, discrete:I"]),
        ("wgpu", &["--devices", "0"], &["--devices 0", "valid"]),
        ("wgpu", &["--devices", "default,cpu", "--strategy", "multi"], &["MultiDevice", "to_device", "--strategy host"]),
        ("flex", &["--devices", "2"], &["flex has one device"]),
    ];
    for (backend, args, needles) in refused {
        let (run, dir) = train("wgpu-devices-bad", backend, args, None);
        assert_eq!(run.code(), Some(2), "{}", run.describe());
        for needle in needles {
            assert!(run.stderr().contains(needle), "{needle:?} missing:\n{}", run.describe());
        }
        assert!(!run.stderr().contains("panicked"), "{}", run.describe());
        let _ = std::fs::remove_dir_all(dir);
    }
}
