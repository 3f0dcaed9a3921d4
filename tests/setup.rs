//! `MixedPrecision::setup`: what each precision does to the model, the device, the
//! optimizer, and its errors.

mod common;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use burn_mixed::autocast::{AutocastState, autocast_state};
use burn_mixed::{MixedPrecision, Precision};
use common::{Net, Train, data};

/// Every float parameter's dtype.
fn param_dtypes<B: Backend, M: Module<B>>(module: &M) -> Vec<DType> {
    struct Dtypes(Vec<DType>);
    impl<B: Backend> ModuleVisitor<B> for Dtypes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().dtype());
        }
    }
    let mut v = Dtypes(Vec::new());
    module.visit(&mut v);
    v.0
}

#[test]
fn bf16_mixed_keeps_f32_parameters_and_gradients() {
    let device = Default::default();
    let mp = MixedPrecision::new(Precision::MixedBf16);
    let net = Net::<Train>::new(&device, 8, 4);
    let prepared = mp.setup::<Train, _, _>(&device, net, AdamConfig::new().init()).expect("flex has bf16");
    assert_eq!(prepared.precision, Precision::MixedBf16);
    assert!(prepared.scaler.is_none(), "bf16-mixed never scales");
    assert_eq!(prepared.model.precision(), Precision::MixedBf16);

    let net = prepared.model;
    assert!(param_dtypes::<Train, _>(&net).iter().all(|d| *d == DType::F32));
    let (logits, grads) = net
        .run(|model| {
            let logits = model.forward(data(4, 8, 1, &device));
            assert_eq!(autocast_state(), AutocastState::Enabled(FloatDType::BF16));
            let out = mp.output(logits.clone());
            assert_eq!(out.dtype(), DType::F32, "outputs come back in f32");
            let loss = out.powi_scalar(2).mean();
            assert_eq!(loss.dtype(), DType::F32);
            (logits, GradientsParams::from_grads(loss.backward(), model))
        })
        .expect("no other region is open");
    assert_eq!(logits.dtype(), DType::BF16, "linear runs under autocast inside the model's region");
    let weight = grads.get::<<Train as burn::tensor::backend::AutodiffBackend>::InnerBackend, 2>(net.module().hidden.weight.id);
    assert_eq!(weight.expect("hidden weight has a gradient").dtype(), DType::F32);
    assert_eq!(autocast_state(), AutocastState::Outside, "the region ends with the call");
    assert_eq!(net.module().forward(data(4, 8, 1, &device)).dtype(), DType::F32, "outside it, nothing autocasts");

    // The inference model (`valid()`) runs on Mixed<Flex>, under the same precision.
    let valid = net.valid();
    assert_eq!(valid.precision(), Precision::MixedBf16);
    assert_eq!(valid.run(|m| m.forward(data(2, 8, 2, &device)).dtype()), Ok(DType::BF16));
}

#[test]
fn bf16_true_converts_parameters() {
    let device = Default::default();
    let net = Net::<Train>::new(&device, 8, 4);
    let ids: Vec<_> = [net.hidden.weight.id, net.head.weight.id].into();
    // The device default dtype is fixed once per process: leave it to the example's runs.
    let mp = MixedPrecision::new(Precision::TrueBf16).with_device_default_dtype(false);
    let prepared = mp.setup::<Train, _, _>(&device, net, AdamConfig::new().init()).expect("flex has bf16");
    let net = prepared.model;
    assert!(param_dtypes::<Train, _>(&net).iter().all(|d| *d == DType::BF16));
    let net = net.into_module();
    assert_eq!(ids, vec![net.hidden.weight.id, net.head.weight.id], "parameter ids are kept");
    assert!(net.hidden.weight.val().is_require_grad(), "require_grad is kept");
    assert_eq!(Tensor::<Train, 1>::zeros([2], &device).dtype(), DType::F32, "device default untouched");
    let logits = net.forward(mp.input(data(4, 8, 3, &device)));
    assert_eq!(logits.dtype(), DType::BF16);
    let grads = GradientsParams::from_grads(mp.output(logits).sum().backward(), &net);
    let g = grads.get::<<Train as burn::tensor::backend::AutodiffBackend>::InnerBackend, 2>(net.head.weight.id);
    assert_eq!(g.expect("gradient").dtype(), DType::BF16, "half parameters get half gradients");
}

#[test]
fn f64_true_converts_parameters_and_32_true_changes_nothing() {
    let device = Default::default();
    let net = MixedPrecision::new(Precision::True64)
        .with_device_default_dtype(false)
        .setup_module::<Train, _>(&device, Net::new(&device, 8, 4))
        .expect("f64");
    assert_eq!(net.precision(), Precision::True64);
    assert!(param_dtypes::<Train, _>(&net).iter().all(|d| *d == DType::F64));

    let original = Net::<Train>::new(&device, 8, 4);
    let before = common::record_bytes(original.clone().into_record());
    let net = MixedPrecision::new(Precision::True32).setup_module::<Train, _>(&device, original).expect("f32");
    let inside = net.run(|m| m.forward(data(4, 8, 6, &device)).into_data()).expect("no other region is open");
    let bare = net.module().forward(data(4, 8, 6, &device)).into_data();
    assert_eq!(inside.as_bytes(), bare.as_bytes(), "32-true's region changes no result");
    assert_eq!(common::record_bytes(net.into_record()), before, "32-true leaves the model bit-identical");
}

#[test]
fn optimizer_step_runs_without_autocast() {
    /// An optimizer that records the autocast state its step runs in.
    #[derive(Clone)]
    struct Probe(std::sync::Arc<std::sync::Mutex<Option<AutocastState>>>);
    impl<M: AutodiffModule<B>, B: burn::tensor::backend::AutodiffBackend> Optimizer<M, B> for Probe {
        type Record = ();
        fn step(&mut self, _lr: f64, module: M, _grads: GradientsParams) -> M {
            *self.0.lock().unwrap() = Some(autocast_state());
            module
        }
        fn step_multi(&mut self, _lr: f64, module: M, _grads: burn::optim::MultiGradientsParams) -> M {
            module
        }
        fn to_record(&self) {}
        fn load_record(self, _record: ()) -> Self {
            self
        }
    }
    let device = Default::default();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    for precision in [Precision::MixedBf16, Precision::Mixed16] {
        let prepared = MixedPrecision::new(precision)
            .setup::<Train, _, _>(&device, Net::new(&device, 8, 4), Probe(seen.clone()))
            .expect("flex has both halves");
        let mut optim = prepared.optimizer;
        let net = prepared.model;
        let grads = net
            .run(|m| GradientsParams::from_grads(m.forward(data(4, 8, 5, &device)).sum().backward(), m))
            .expect("no other region is open");
        let _ = optim.step(1e-3, net, grads);
        assert_eq!(*seen.lock().unwrap(), Some(AutocastState::Disabled), "{precision}");
    }
}

#[cfg(feature = "ndarray")]
#[test]
fn half_precision_on_ndarray_is_an_error() {
    use burn::backend::{Autodiff, NdArray};
    use burn_mixed::SetupError;
    type Nd = burn_mixed::Mixed<Autodiff<NdArray>>;
    let device = Default::default();
    for precision in [Precision::Mixed16, Precision::MixedBf16, Precision::True16, Precision::TrueBf16] {
        let err = MixedPrecision::new(precision)
            .with_fallback(true)
            .setup_module::<Nd, _>(&device, Net::<Nd>::new(&device, 4, 2))
            .expect_err("ndarray has no half dtype");
        let SetupError::Unsupported { working, .. } = &err else { panic!("unexpected error {err}") };
        assert_eq!(working, &vec![Precision::True32, Precision::True64]);
        let message = err.to_string();
        assert!(message.contains("ndarray") && message.contains(precision.as_str()), "{message}");
        assert!(message.contains("32-true, 64-true"), "{message}");
    }
}

#[test]
fn fallback_is_opt_in() {
    // Flex supports both halves, so the fallback is exercised through `resolve` on an
    // unsupported request only where a backend lacks one (NdArray above, Wgpu in its suite);
    // here: without fallback, a supported request resolves to itself.
    let device = Default::default();
    for p in Precision::ALL {
        assert_eq!(MixedPrecision::new(p).resolve::<Train>(&device), Ok(p));
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn fallback_on_wgpu_resolves_to_f16_and_converts_inputs_for_it() {
    type W = burn_mixed::Mixed<burn::backend::Wgpu>;
    let device = Default::default();
    let refused = MixedPrecision::new(Precision::TrueBf16).resolved::<W>(&device).expect_err("no bf16 on wgpu");
    assert!(refused.to_string().contains("16-true"), "names what works: {refused}");
    let mp = MixedPrecision::new(Precision::TrueBf16).with_fallback(true).resolved::<W>(&device).expect("f16 works");
    assert_eq!(mp.precision(), Precision::True16);
    let x = mp.input(Tensor::<W, 2>::ones([2, 2], &device));
    assert_eq!(x.dtype(), DType::F16, "inputs follow the precision in force");
    let mixed = MixedPrecision::new(Precision::MixedBf16).with_fallback(true).resolved::<W>(&device).expect("f16");
    assert_eq!(mixed.precision(), Precision::Mixed16);
}

/// Warnings logged in this process (a test binary installs one logger at most).
struct Recorder(std::sync::Mutex<Vec<String>>);

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0.lock().expect("recorder").push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

static WARNINGS: Recorder = Recorder(std::sync::Mutex::new(Vec::new()));

/// bf16 on a CPU without AVX-512 (forced here with `MIXED_HOST_LANES=0` in a child
/// process) is no faster than f32, so setting it up says so, once, naming what to pick
/// instead; where the host kernels have AVX-512 it says nothing.
#[test]
fn bf16_setup_warns_where_the_cpu_makes_it_no_faster_than_f32() {
    use burn_mixed::kernels::{HOST_LANES_ENV, HostIsa, host_isa};
    let child = std::env::var(HOST_LANES_ENV).as_deref() == Ok("0");
    if !child {
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["bf16_setup_warns_where_the_cpu_makes_it_no_faster_than_f32", "--exact", "--test-threads=1"])
            .env(HOST_LANES_ENV, "0")
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    log::set_logger(&WARNINGS).expect("the only logger of this binary");
    log::set_max_level(log::LevelFilter::Warn);
    let device = Default::default();
    for precision in [Precision::MixedBf16, Precision::TrueBf16, Precision::Mixed16] {
        let net = Net::<Train>::new(&device, 8, 4);
        MixedPrecision::new(precision).setup::<Train, _, _>(&device, net, AdamConfig::new().init()).expect("flex has both halves");
    }
    let warnings = WARNINGS.0.lock().expect("recorder").clone();
    let slow: Vec<_> = warnings.iter().filter(|w| w.contains("bf16 is no faster than f32")).collect();
    if child {
        assert_eq!(host_isa(), HostIsa::Portable);
        assert_eq!(slow.len(), 1, "once per process: {warnings:?}");
        assert!(slow[0].contains("\"16-mixed\"") && slow[0].contains("avx512f"), "{}", slow[0]);
    } else if host_isa() >= HostIsa::Avx512 {
        assert!(slow.is_empty(), "{warnings:?}");
    }
}
