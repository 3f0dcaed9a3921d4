//! Every public error's `Debug` is its `Display` message: a `main` that returns
//! `Result<(), Box<dyn Error>>` prints `Error: {err:?}`, and that line must carry what the
//! user needs (the valid values, the field and its requirement, what to do).

use std::error::Error;

use burn::tensor::FloatDType;

use crate::autocast::AutocastError;
use crate::data_parallel::DataParallelError;
use crate::precision::valid_values;
use crate::scaler::{GradScalerConfig, LossScale};
use crate::{Precision, PrecisionError, RegionError, SetupError};

/// `err`'s `Debug`, alone and as `main` prints it through `Box<dyn Error>`, is its
/// `Display` and contains every one of `needles`.
fn debug_says<E: Error + 'static>(err: E, needles: &[&str]) {
    let debug = format!("{err:?}");
    assert_eq!(debug, err.to_string(), "Debug is the Display message");
    let boxed: Box<dyn Error> = Box::new(err);
    let printed = format!("Error: {boxed:?}");
    for needle in needles {
        assert!(printed.contains(needle), "{needle:?} missing from: {printed}");
    }
}

#[test]
fn precision_error() {
    let invalid = "fp8".parse::<Precision>().unwrap_err();
    debug_says(invalid, &["\"fp8\"", &valid_values()]);
    let conflict = Precision::resolve_with(Some(Precision::Mixed16), Some("bf16")).unwrap_err();
    assert!(matches!(conflict, PrecisionError::Conflict { .. }));
    debug_says(conflict, &["--precision=16-mixed", "BURN_PRECISION=bf16-mixed", "remove one or make them agree"]);
}

#[test]
fn scaler_config_error() {
    let err = GradScalerConfig::default().with_backoff_factor(1.5).validate().unwrap_err();
    debug_says(err, &["backoff_factor = 1.5", "must be in (0, 1)"]);
    let mut state = LossScale::default().state();
    state.growth_tracker = 5000;
    let err = LossScale::from_state(state).unwrap_err();
    debug_says(err, &["state field growth_tracker = 5000", "must be < growth_interval"]);
}

#[test]
fn scaler_collapse() {
    let mut scale = LossScale::new(GradScalerConfig::default().with_max_consecutive_skips(2)).unwrap();
    scale.update(true).unwrap();
    let collapse = scale.update(true).unwrap_err();
    debug_says(collapse, &["2 consecutive steps overflowed (limit 2)", "try bf16-mixed, a lower learning rate, or gradient clipping"]);
}

#[test]
fn autocast_error() {
    debug_says(AutocastError::NotHalf { dtype: FloatDType::F32 }, &["must be f16 or bf16, got f32"]);
    let unsupported =
        AutocastError::Unsupported { backend: "NdArray".into(), dtype: FloatDType::F16, supported: vec![FloatDType::F32, FloatDType::F64] };
    debug_says(unsupported, &["NdArray does not support f16", "it supports: f32, f64", "use precision 32-true or 64-true"]);
}

#[test]
fn setup_error() {
    let unsupported = SetupError::Unsupported {
        precision: Precision::Mixed16,
        backend: "Wgpu".into(),
        dtype: "f16",
        working: vec![Precision::True32, Precision::MixedBf16],
    };
    debug_says(unsupported, &["16-mixed needs f16", "precisions that work here: 32-true, bf16-mixed", "fallback to bf16-mixed"]);
    let bad_scaler = GradScalerConfig::default().with_growth_interval(0).validate().unwrap_err();
    debug_says(SetupError::Scaler(bad_scaler), &["growth_interval = 0", "must be >= 1"]);
}

#[test]
fn region_error() {
    let err = RegionError::ConflictingScaler { entering: Precision::Mixed16 };
    debug_says(err, &["16-mixed region", "MixedPrecision::with_shared_scaler"]);
}

#[test]
fn data_parallel_error() {
    let devices = || vec!["Cpu".to_owned(), "Cpu".to_owned()];
    let cases = [
        (DataParallelError::NoDevices, vec!["at least one device"]),
        (
            DataParallelError::DuplicateDevice { device: "Cpu".into(), first: 0, second: 1, devices: devices() },
            vec!["positions 0 and 1", "list each once: Cpu, Cpu"],
        ),
        (
            DataParallelError::MixedBackends { device: "Cpu".into(), backend: "Wgpu".into(), expected: "Cuda".into(), devices: devices() },
            vec!["runs on backend Wgpu but the first device runs on Cuda", "same backend"],
        ),
        (
            DataParallelError::Precision {
                device: "Cpu".into(),
                precision: Precision::Mixed16,
                resolved: Ok(Precision::MixedBf16),
                others: Precision::Mixed16,
            },
            vec!["would run precision bf16-mixed (fallback from 16-mixed)", "same dtype"],
        ),
        (
            DataParallelError::ScalerMismatch { replica: 1, has_scaler: false, first_has_scaler: true },
            vec!["replica 1's optimizer has no GradScaler while replica 0's has one", "one shared GradScaler"],
        ),
        (DataParallelError::ReplicaCount { optimizers: 1, devices: 2 }, vec!["1 optimizers for 2 devices", "one optimizer per device"]),
        (
            DataParallelError::ModelDevice { model: vec!["Cpu".into()], first: "Gpu".into() },
            vec!["on Cpu, but the first device of the list is Gpu", "create the model on the first device"],
        ),
    ];
    for (err, needles) in cases {
        debug_says(err, &needles);
    }
}
