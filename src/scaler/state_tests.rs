//! Tests of the loss-scale state machine: exact trajectories, limits, errors, resume.
use super::*;

fn cfg() -> GradScalerConfig {
    GradScalerConfig::default()
}

fn scaler(config: GradScalerConfig) -> LossScale {
    LossScale::new(config).expect("valid config")
}

/// Runs `pattern` (1 = overflow) and returns the reports; panics on a collapse error.
fn run(ls: &mut LossScale, pattern: &[u8]) -> Vec<StepReport> {
    pattern.iter().map(|&inf| ls.update(inf == 1).expect("no collapse")).collect()
}

fn new_scales(reports: &[StepReport]) -> Vec<f32> {
    reports.iter().map(|r| r.new_scale).collect()
}

#[test]
fn reference_trajectory() {
    let mut ls = scaler(cfg().with_growth_interval(3));
    let reports = run(&mut ls, &[0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    let expected = [
        65536.0, 65536.0, 32768.0, 32768.0, 32768.0, 65536.0, 32768.0, 16384.0, 16384.0, 16384.0, 32768.0, 32768.0, 32768.0, 65536.0,
        65536.0,
    ];
    assert_eq!(new_scales(&reports), expected);
    // scale_used is the scale before each update.
    assert_eq!(reports[0].scale_used, 65536.0);
    for (r, prev) in reports[1..].iter().zip(&expected) {
        assert_eq!(r.scale_used, *prev);
    }
    let skipped: Vec<usize> = (1..=15).filter(|&i| reports[i - 1].skipped).collect();
    assert_eq!(skipped, [3, 7, 8]);
    assert_eq!((ls.skipped_steps(), ls.steps()), (3, 15));
    assert_eq!(ls.scale(), 65536.0);
    assert_eq!(ls.inv_scale(), 1.0 / 65536.0);
}

#[test]
fn halves_on_every_overflow_without_floor() {
    let config = cfg().with_init_scale(16.0).with_growth_interval(2).with_max_consecutive_skips(None);
    let mut ls = scaler(config);
    let pattern: Vec<u8> = [0; 5].into_iter().chain([1; 20]).chain([0; 5]).collect();
    let reports = run(&mut ls, &pattern);
    let mut expected = vec![16.0, 32.0, 32.0, 64.0, 64.0];
    expected.extend((1..=20).map(|k| 64.0 * 0.5f32.powi(k)));
    let low = 64.0 * 0.5f32.powi(20);
    expected.extend([low, low * 2.0, low * 2.0, low * 4.0, low * 4.0]);
    assert_eq!(new_scales(&reports), expected);
    assert_eq!(ls.scale(), 2.0f32.powi(-12));
    assert_eq!(ls.skipped_steps(), 20);
    assert!(reports[5..25].iter().all(|r| r.skipped));
    assert_eq!(reports[24].consecutive_skips, 20);
    assert_eq!(reports[25].consecutive_skips, 0);
}

#[test]
fn floor_cap_and_f32_overflow() {
    let floor = |min: f32| cfg().with_init_scale(8.0).with_min_scale(min);
    let mut ls = scaler(floor(2.0));
    assert_eq!(new_scales(&run(&mut ls, &[1, 1, 1, 1])), [4.0, 2.0, 2.0, 2.0]);
    // A floor that is not a power-of-two step away is hit exactly.
    let mut ls = scaler(floor(3.0));
    assert_eq!(new_scales(&run(&mut ls, &[1, 1, 1])), [4.0, 3.0, 3.0]);

    let cap = cfg().with_init_scale(8.0).with_growth_interval(1).with_max_scale(20.0);
    let mut ls = scaler(cap);
    assert_eq!(new_scales(&run(&mut ls, &[0, 0, 0])), [16.0, 20.0, 20.0]);

    let big = f32::MAX / 1.5;
    let mut ls = scaler(cfg().with_init_scale(big).with_growth_interval(1));
    let reports = run(&mut ls, &[0, 0, 1]);
    assert_eq!(new_scales(&reports), [big, big, big * 0.5]);
    assert_eq!(reports[1].growth_tracker, 0);
}

#[test]
fn no_floor_never_reaches_zero() {
    let config = cfg().with_init_scale(1.0).with_max_consecutive_skips(None);
    let mut ls = scaler(config);
    run(&mut ls, &[1; 200]);
    assert_eq!(ls.scale(), f32::from_bits(1)); // smallest positive subnormal
    assert!(ls.inv_scale().is_finite());
}

#[test]
fn hysteresis_delays_only_the_backoff() {
    let config = cfg().with_init_scale(1024.0).with_hysteresis(2);
    let mut ls = scaler(config);
    let reports = run(&mut ls, &[1, 0, 1, 1, 1, 0, 1]);
    // Isolated overflow: skipped, scale kept. Two in a row: one backoff. Past the
    // tolerance every consecutive overflow backs off; a finite step refills it.
    assert_eq!(new_scales(&reports), [1024.0, 1024.0, 1024.0, 512.0, 256.0, 256.0, 256.0]);
    let skipped: Vec<bool> = reports.iter().map(|r| r.skipped).collect();
    assert_eq!(skipped, [true, false, true, true, true, false, true]);
    assert_eq!(reports[6].growth_tracker, 0);
    assert_eq!(ls.skipped_steps(), 5);
}

#[test]
fn collapse_error_after_consecutive_skips() {
    let config = cfg().with_init_scale(1024.0).with_max_consecutive_skips(3);
    let mut ls = scaler(config);
    run(&mut ls, &[0, 1, 1]);
    let err = ls.update(true).unwrap_err();
    assert_eq!(err, ScalerCollapse { step: 4, scale: 128.0, consecutive_skips: 3, skip_limit: Some(3), threshold: None });
    let msg = err.to_string();
    for part in [
        "loss scale collapsed at step 4",
        "3 consecutive steps overflowed (limit 3)",
        "loss scale is now 128",
        "gradients are inf/NaN at every step: the model or learning rate diverged, or f16 overflows",
        "try bf16-mixed, a lower learning rate, or gradient clipping",
    ] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
    // The state moved before the check; the error repeats while the condition holds.
    assert_eq!((ls.scale(), ls.skipped_steps()), (128.0, 3));
    assert_eq!(ls.update(true).unwrap_err().consecutive_skips, 4);
    let report = ls.update(false).unwrap();
    assert_eq!((report.consecutive_skips, report.new_scale), (0, 64.0));
}

#[test]
fn collapse_warn_once_per_episode() {
    let config = cfg().with_max_consecutive_skips(2).with_on_collapse(CollapseAction::Warn);
    let mut ls = scaler(config);
    let reports = run(&mut ls, &[1, 1, 1, 0, 1, 1]);
    let warned: Vec<bool> = reports.iter().map(|r| r.collapse_warning.is_some()).collect();
    assert_eq!(warned, [false, true, false, false, false, true]);
    let msg = reports[1].collapse_warning.as_deref().unwrap();
    assert!(msg.contains("2 consecutive steps overflowed (limit 2)"), "{msg}");
    assert!(msg.contains("gradient clipping"), "{msg}");
    assert_eq!(reports[2].new_scale, 8192.0);
}

#[test]
fn collapse_threshold() {
    let config = cfg().with_init_scale(64.0).with_collapse_threshold(10.0).with_max_consecutive_skips(None);
    let mut ls = scaler(config);
    run(&mut ls, &[1, 1]);
    let err = ls.update(true).unwrap_err();
    assert_eq!((err.scale, err.threshold, err.skip_limit), (8.0, Some(10.0), None));
    let msg = err.to_string();
    assert!(msg.contains("3 consecutive overflowing steps, loss scale is now 8 (below collapse_threshold 10)"), "{msg}");
    assert!(msg.contains("try bf16-mixed"), "{msg}");
}

#[test]
fn disabled_is_a_no_op() {
    let config = cfg().with_enabled(false).with_growth_interval(1);
    let mut ls = scaler(config);
    let before = ls.state();
    for r in run(&mut ls, &[1, 1, 0, 1, 0, 0]) {
        assert!(!r.skipped);
        assert_eq!((r.scale_used, r.new_scale, r.collapse_warning), (1.0, 1.0, None));
    }
    assert_eq!((ls.scale(), ls.inv_scale(), ls.steps(), ls.skipped_steps()), (1.0, 1.0, 0, 0));
    assert!(!ls.is_enabled());
    assert_eq!(ls.state(), before);
}

#[test]
fn invalid_settings_are_rejected_with_exact_messages() {
    let d = cfg;
    #[rustfmt::skip]
    let cases = [
        (d().with_init_scale(0.0), "init_scale = 0: must be finite and > 0"),
        (d().with_init_scale(-1.0), "init_scale = -1: must be finite and > 0"),
        (d().with_init_scale(f32::INFINITY), "init_scale = inf: must be finite and > 0"),
        (d().with_init_scale(f32::NAN), "init_scale = NaN: must be finite and > 0"),
        (d().with_growth_factor(1.0), "growth_factor = 1: must be finite and > 1"),
        (d().with_growth_factor(f32::INFINITY), "growth_factor = inf: must be finite and > 1"),
        (d().with_backoff_factor(1.5), "backoff_factor = 1.5: must be in (0, 1)"),
        (d().with_backoff_factor(1.0), "backoff_factor = 1: must be in (0, 1)"),
        (d().with_backoff_factor(0.0), "backoff_factor = 0: must be in (0, 1)"),
        (d().with_backoff_factor(f32::NAN), "backoff_factor = NaN: must be in (0, 1)"),
        (d().with_growth_interval(0), "growth_interval = 0: must be >= 1"),
        (d().with_hysteresis(0), "hysteresis = 0: must be >= 1"),
        (d().with_min_scale(0.0), "min_scale = 0: must be finite and in (0, init_scale = 65536]"),
        (d().with_min_scale(1e6), "min_scale = 1000000: must be finite and in (0, init_scale = 65536]"),
        (d().with_max_scale(1024.0), "max_scale = 1024: must be finite and >= init_scale = 65536"),
        (d().with_max_scale(f32::INFINITY), "max_scale = inf: must be finite and >= init_scale = 65536"),
        (d().with_max_consecutive_skips(0), "max_consecutive_skips = 0: must be >= 1"),
        (d().with_collapse_threshold(0.0), "collapse_threshold = 0: must be finite and in (0, init_scale = 65536]"),
        (d().with_collapse_threshold(1e5), "collapse_threshold = 100000: must be finite and in (0, init_scale = 65536]"),
    ];
    for (config, tail) in cases {
        let expected = format!("invalid GradScaler setting {tail}");
        assert_eq!(config.validate().unwrap_err().to_string(), expected);
        assert_eq!(LossScale::new(config).unwrap_err().to_string(), expected);
    }
    let e = d().with_backoff_factor(1.5).validate().unwrap_err();
    assert_eq!((e.field(), e.value(), e.requirement()), ("backoff_factor", "1.5", "in (0, 1)"));

    let edges = [
        d(),
        d().with_min_scale(65536.0).with_max_scale(65536.0),
        d().with_init_scale(f32::MIN_POSITIVE).with_min_scale(f32::MIN_POSITIVE),
        d().with_init_scale(f32::MAX).with_max_scale(f32::MAX),
        d().with_growth_factor(1.0001).with_backoff_factor(1e-30).with_growth_interval(1),
        d().with_hysteresis(u32::MAX).with_max_consecutive_skips(1),
        d().with_collapse_threshold(65536.0).with_max_consecutive_skips(None),
        d().with_enabled(false),
    ];
    for config in edges {
        assert_eq!(config.validate(), Ok(()), "{config:?}");
    }
}

#[test]
fn save_and_resume_reproduce_the_trajectory() {
    let config = cfg()
        .with_init_scale(1024.0)
        .with_growth_interval(2)
        .with_hysteresis(2)
        .with_min_scale(64.0)
        .with_on_collapse(CollapseAction::Warn)
        .with_max_consecutive_skips(3);
    let pattern = [0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0];
    let mut whole = scaler(config);
    let expected = run(&mut whole, &pattern);

    let mut first = scaler(config);
    let mut got = run(&mut first, &pattern[..7]);
    let json = serde_json::to_string(&first.state()).unwrap();
    let mut resumed = LossScale::from_state(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(resumed, first);
    got.extend(run(&mut resumed, &pattern[7..]));
    assert_eq!(got, expected);
    assert_eq!(resumed.state(), whole.state());
    assert!(expected.iter().any(|r| r.collapse_warning.is_some()));
}

#[test]
fn config_serde_defaults_and_bad_states() {
    let config: GradScalerConfig = serde_json::from_str(r#"{"init_scale": 1024.0, "on_collapse": "warn", "min_scale": 1.0}"#).unwrap();
    let expected = cfg().with_init_scale(1024.0).with_on_collapse(CollapseAction::Warn).with_min_scale(1.0);
    assert_eq!(config, expected);

    let good = scaler(expected).state();
    let bad = |f: fn(&mut ScalerState)| {
        let mut s = good.clone();
        f(&mut s);
        LossScale::from_state(s).unwrap_err().to_string()
    };
    assert_eq!(bad(|s| s.scale = 0.5), "invalid GradScaler state field scale = 0.5: must be finite, > 0 and within [min_scale, max_scale]");
    assert_eq!(bad(|s| s.growth_tracker = 2000), "invalid GradScaler state field growth_tracker = 2000: must be < growth_interval");
    assert_eq!(bad(|s| s.hysteresis_left = 1), "invalid GradScaler state field hysteresis_left = 1: must be < hysteresis");
    assert_eq!(bad(|s| s.config.growth_interval = 0), "invalid GradScaler setting growth_interval = 0: must be >= 1");
}
