//! The loss scaler in a training loop on `Mixed<Autodiff<Flex>>`: underflow rescue,
//! skipped steps that change nothing, save/resume, collapse, and bf16 never scaling.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::record::{
    BinFileRecorder, BinGzFileRecorder, FileRecorder, FullPrecisionSettings, JsonGzFileRecorder, NamedMpkFileRecorder,
    NamedMpkGzFileRecorder, PrettyJsonFileRecorder, Record, Recorder, RecorderError,
};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, Tensor};
use burn_mixed::autocast::autocast;
use burn_mixed::scaler::ScalerRecord;
use burn_mixed::{GradScalerConfig, MixedPrecision, Precision, PrecisionModule};
use common::{Net, Train, data, param_state_bytes, record_bytes};

type Inner = <Train as AutodiffBackend>::InnerBackend;

/// The gradients of `loss(model)`, computed as a hand-written loop does: inside the
/// prepared model's region, where `backward` scales the loss under 16-mixed.
fn grads_in_region(model: &PrecisionModule<Net<Train>>, loss: impl FnOnce(&Net<Train>) -> Tensor<Train, 1>) -> GradientsParams {
    model.run(|net| GradientsParams::from_grads(loss(net).backward(), net)).expect("no other region is open")
}

/// Losses of a regression trained for `steps` SGD steps whose loss is multiplied by
/// 1e-7 (and the learning rate by 1e7): in f16, its gradients underflow to zero.
fn tiny_loss_run(mp: MixedPrecision, steps: usize) -> (Vec<f32>, Vec<u8>, Vec<u8>) {
    let device = Default::default();
    let initial = Net::<Train>::new(&device, 8, 1);
    let initial_bytes = record_bytes(initial.clone().into_record());
    let prepared = mp.setup::<Train, _, _>(&device, initial, SgdConfig::new().init()).expect("flex");
    let (mut model, mut optim) = (prepared.model, prepared.optimizer);
    let x = data::<Train>(32, 8, 11, &device);
    let y = x.clone().sum_dim(1) * 0.25;
    let mut losses = Vec::new();
    for _ in 0..steps {
        let grads = grads_in_region(&model, |net| {
            let loss = (net.forward(x.clone()) - y.clone()).powi_scalar(2).mean() * 1e-7;
            losses.push(loss.clone().into_scalar() * 1e7);
            loss
        });
        model = optim.step(2e6, model, grads);
    }
    (losses, initial_bytes, record_bytes(model.into_record()))
}

#[test]
fn scaler_rescues_underflowing_f16_gradients() {
    let steps = 15;
    let (f32_losses, _, _) = tiny_loss_run(MixedPrecision::new(Precision::True32), steps);
    let unscaled = MixedPrecision::new(Precision::Mixed16).with_scaler(GradScalerConfig::default().with_enabled(false));
    let (_, initial, after) = tiny_loss_run(unscaled, steps);
    assert_eq!(initial, after, "without scaling, every f16 gradient underflows: the weights never move");
    let (scaled_losses, _, _) = tiny_loss_run(MixedPrecision::new(Precision::Mixed16), steps);
    assert!(f32_losses[steps - 1] < 0.5 * f32_losses[0], "the f32 run learns: {f32_losses:?}");
    for (i, (m, f)) in scaled_losses.iter().zip(&f32_losses).enumerate() {
        assert!((m - f).abs() <= 0.05 * f, "step {i}: 16-mixed {m} vs f32 {f}");
    }
}

/// Trains with Adam under 16-mixed, poisoning the gradients at the given steps (NaN or
/// inf), and checks each step against the scaler's verdict.
#[test]
fn overflowing_steps_are_skipped_bit_identically() {
    let device = Default::default();
    let prepared = MixedPrecision::new(Precision::Mixed16)
        .setup::<Train, _, _>(&device, Net::new(&device, 8, 4), AdamConfig::new().init())
        .expect("flex has f16");
    let scaler = prepared.scaler.clone().expect("16-mixed scales");
    let (mut model, mut optim) = (prepared.model, prepared.optimizer);
    let x = data::<Train>(16, 8, 5, &device);
    let poison = [(2, f32::NAN), (5, f32::INFINITY), (6, f32::NEG_INFINITY)];
    let mut scales = Vec::new();
    for step in 0..8 {
        let mut grads = grads_in_region(&model, |net| net.forward(x.clone()).powi_scalar(2).mean());
        let poisoned = poison.iter().find(|(s, _)| *s == step).map(|(_, v)| *v);
        if let Some(value) = poisoned {
            let id = model.module().hidden.weight.id;
            let g = grads.remove::<Inner, 2>(id).expect("gradient");
            grads.register::<Inner, 2>(id, g.slice_fill([0..1, 0..1], value));
        }
        // The optimizer's own state (the record's first half; the second is the scaler's,
        // which a skipped step does update).
        let (model_before, optim_before) = (record_bytes(model.clone().into_record()), param_state_bytes(optim.to_record().0));
        model = optim.step(1e-3, model, grads);
        let report = scaler.last_report().expect("one report per step");
        assert_eq!(report.skipped, poisoned.is_some(), "step {step}");
        let unchanged = record_bytes(model.clone().into_record()) == model_before && param_state_bytes(optim.to_record().0) == optim_before;
        assert_eq!(unchanged, poisoned.is_some(), "step {step}: skipped steps and only they change nothing");
        scales.push(report.new_scale);
    }
    assert_eq!(scaler.skipped_steps(), 3);
    let s = 65536.0;
    assert_eq!(scales, vec![s, s, s / 2.0, s / 2.0, s / 2.0, s / 4.0, s / 8.0, s / 8.0]);
}

type AdamOptim = burn::optim::adaptor::OptimizerAdaptor<burn::optim::Adam, Net<Train>, Train>;
type OptimRecord = <burn_mixed::PrecisionOptimizer<AdamOptim> as Optimizer<PrecisionModule<Net<Train>>, Train>>::Record;

/// Trains the global steps `range` (overflowing at steps 1, 4 and 5) from `model` and,
/// when resuming, from a saved optimizer record; returns the scale after each step, the
/// model and the optimizer's record (what burn-train's checkpointer saves).
fn resumable_run(model: Net<Train>, checkpoint: Option<OptimRecord>, range: std::ops::Range<usize>) -> (Vec<f32>, Net<Train>, OptimRecord) {
    let device = Default::default();
    let config = GradScalerConfig::default().with_init_scale(1024.0).with_growth_interval(2);
    let prepared = MixedPrecision::new(Precision::Mixed16)
        .with_scaler(config)
        .setup::<Train, _, _>(&device, model, AdamConfig::new().init())
        .expect("flex has f16");
    let scaler = prepared.scaler.clone().expect("16-mixed scales");
    let mut optim = prepared.optimizer;
    if let Some(record) = checkpoint {
        optim = optim.load_record(record);
    }
    let mut model = prepared.model;
    let x = data::<Train>(16, 8, 9, &device);
    let mut scales = Vec::new();
    for step in range {
        let mut grads = grads_in_region(&model, |net| net.forward(x.clone()).powi_scalar(2).mean());
        if [1, 4, 5].contains(&step) {
            let id = model.module().head.bias.as_ref().expect("bias").id;
            let g = grads.remove::<Inner, 1>(id).expect("gradient");
            grads.register::<Inner, 1>(id, g.mul_scalar(f32::INFINITY));
        }
        model = optim.step(1e-2, model, grads);
        scales.push(scaler.scale());
    }
    (scales, model.into_module(), optim.to_record())
}

#[test]
fn resuming_from_a_checkpoint_continues_the_trajectory() {
    let device = Default::default();
    let start = Net::<Train>::new(&device, 8, 4);
    let fresh = |record| Net::<Train>::new(&device, 8, 4).load_record(record);

    let (all_scales, full_model, _) = resumable_run(start.clone(), None, 0..9);
    let (mut scales, half_model, checkpoint) = resumable_run(start, None, 0..5);
    let saved = checkpoint.1.state.as_ref().expect("the scaler's state is in the optimizer record");
    assert_eq!((saved.steps, saved.skipped_steps, saved.scale), (5, 2, 512.0));
    let (rest, final_model, _) = resumable_run(fresh(half_model.into_record()), Some(checkpoint), 5..9);
    scales.extend(rest);
    assert_eq!(scales, all_scales, "scale trajectory");
    assert_eq!(scales, vec![1024.0, 512.0, 512.0, 1024.0, 512.0, 256.0, 256.0, 512.0, 512.0]);
    assert_eq!(record_bytes(final_model.into_record()), record_bytes(full_model.into_record()), "parameters");
}

/// The inner optimizer's half of [`OptimRecord`].
type AdamRecord = <AdamOptim as Optimizer<Net<Train>, Train>>::Record;

/// A scratch folder for checkpoint files, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("burn-mixed-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("a temp dir");
        Self(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Saves `record` with `recorder` in `dir`, then loads it as the current optimizer record.
fn save_then_load<R: FileRecorder<Train>>(recorder: R, dir: &ScratchDir, record: impl Record<Train>) -> Result<OptimRecord, RecorderError> {
    let path = dir.0.join(std::any::type_name::<R>().replace(['<', '>', ':', ' ', ','], "_"));
    recorder.record(record, path.clone()).expect("the record saves");
    recorder.load(path, &Default::default())
}

/// burn-train's file recorders store the scaler's state as fields: JSON shows them.
#[test]
fn checkpoints_hold_the_scaler_state_as_fields() {
    let device = Default::default();
    let (_, _, checkpoint) = resumable_run(Net::new(&device, 8, 4), None, 0..5);
    let state = checkpoint.1.state.clone().expect("16-mixed");
    let dir = ScratchDir::new("fields");
    let path = dir.0.join("optimizer");
    PrettyJsonFileRecorder::<FullPrecisionSettings>::new().record(checkpoint.clone(), path.clone()).expect("saves");
    let text = std::fs::read_to_string(path.with_extension("json")).expect("the checkpoint file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let scaler = &json["item"][1];
    assert_eq!(scaler["format"], ScalerRecord::FORMAT);
    assert_eq!(scaler["state"]["scale"], 512.0);
    assert_eq!(scaler["state"]["steps"], 5);
    assert_eq!(scaler["state"]["growth_tracker"], u64::from(state.growth_tracker));
    assert_eq!(scaler["state"]["config"]["init_scale"], 1024.0);
    let back = |loaded: Result<OptimRecord, RecorderError>| loaded.expect("loads").1.state;
    assert_eq!(back(save_then_load(NamedMpkFileRecorder::<FullPrecisionSettings>::new(), &dir, checkpoint.clone())), Some(state.clone()));
    assert_eq!(back(save_then_load(BinFileRecorder::<FullPrecisionSettings>::new(), &dir, checkpoint.clone())), Some(state.clone()));
    assert_eq!(back(save_then_load(PrettyJsonFileRecorder::<FullPrecisionSettings>::new(), &dir, checkpoint)), Some(state));
}

/// Checkpoints written before `ScalerRecord` stored the scaler's state as `serde_json`'s
/// string in the optimizer record's second half. Every file recorder's checkpoint of that
/// layout loads, with the same state, and a run resumed from it continues bit for bit.
#[test]
fn checkpoints_of_earlier_versions_load_and_resume() {
    let device = Default::default();
    let start = Net::<Train>::new(&device, 8, 4);
    let (all_scales, full_model, _) = resumable_run(start.clone(), None, 0..9);
    let (mut scales, half_model, (inner, scaler)) = resumable_run(start, None, 0..5);
    let state = scaler.state.expect("16-mixed");
    let legacy: (AdamRecord, String) = (inner, serde_json::to_string(&state).expect("plain data"));
    let dir = ScratchDir::new("legacy");
    let loaded = [
        save_then_load(NamedMpkFileRecorder::<FullPrecisionSettings>::new(), &dir, legacy.clone()),
        save_then_load(NamedMpkGzFileRecorder::<FullPrecisionSettings>::new(), &dir, legacy.clone()),
        save_then_load(BinFileRecorder::<FullPrecisionSettings>::new(), &dir, legacy.clone()),
        save_then_load(BinGzFileRecorder::<FullPrecisionSettings>::new(), &dir, legacy.clone()),
        save_then_load(PrettyJsonFileRecorder::<FullPrecisionSettings>::new(), &dir, legacy.clone()),
        save_then_load(JsonGzFileRecorder::<FullPrecisionSettings>::new(), &dir, legacy),
    ];
    let loaded = loaded.map(|record| record.unwrap_or_else(|err| panic!("an old checkpoint loads: {err}")));
    for (i, record) in loaded.iter().enumerate() {
        assert_eq!(record.1.state.as_ref(), Some(&state), "recorder {i}");
    }
    let fresh = Net::<Train>::new(&device, 8, 4).load_record(half_model.into_record());
    let checkpoint = loaded[0].clone();
    let (rest, final_model, _) = resumable_run(fresh, Some(checkpoint), 5..9);
    scales.extend(rest);
    assert_eq!(scales, all_scales, "scale trajectory");
    assert_eq!(record_bytes(final_model.into_record()), record_bytes(full_model.into_record()), "parameters");

    // Saved without a scaler (any other precision): an empty string, which loads as none.
    let [(inner, _), ..] = loaded;
    let without: (AdamRecord, String) = (inner, String::new());
    let record = save_then_load(BinFileRecorder::<FullPrecisionSettings>::new(), &dir, without).expect("loads");
    assert_eq!(record.1, ScalerRecord::default());
}

/// A damaged old-layout string, or a layout this version does not know, fails the load
/// with a message that says what is wrong and what to do.
#[test]
fn unreadable_scaler_records_are_refused_clearly() {
    let device = Default::default();
    let (_, _, (inner, _)) = resumable_run(Net::new(&device, 8, 4), None, 0..1);
    let dir = ScratchDir::new("refused");
    let cases = [
        (r#"{"config": {"init_scale": "#, ["layout of earlier burn-mixed versions", "ScalerRecord::default()"]),
        ("burn-mixed/scaler-state/9", ["unknown format `burn-mixed/scaler-state/9`", "needs that version"]),
    ];
    for (string, expected) in cases {
        let damaged: (AdamRecord, String) = (inner.clone(), string.to_owned());
        let errors = [
            save_then_load(NamedMpkFileRecorder::<FullPrecisionSettings>::new(), &dir, damaged.clone()),
            save_then_load(BinFileRecorder::<FullPrecisionSettings>::new(), &dir, damaged.clone()),
            save_then_load(PrettyJsonFileRecorder::<FullPrecisionSettings>::new(), &dir, damaged),
        ];
        for error in errors {
            let Err(err) = error else { panic!("{string:?} is refused") };
            let message = err.to_string();
            for part in expected {
                assert!(message.contains(part), "{part:?} missing from: {message}");
            }
        }
    }
}

#[test]
fn collapse_is_a_clear_error() {
    let device = Default::default();
    let config = GradScalerConfig::default().with_max_consecutive_skips(3);
    let prepared = MixedPrecision::new(Precision::Mixed16)
        .with_scaler(config)
        .setup::<Train, _, _>(&device, Net::new(&device, 8, 4), SgdConfig::new().init())
        .expect("flex has f16");
    let scaler = prepared.scaler.clone().expect("scaler");
    let (mut model, mut optim) = (prepared.model, prepared.optimizer);
    let x = data::<Train>(8, 8, 1, &device);
    for step in 0..3 {
        let grads = grads_in_region(&model, |net| net.forward(x.clone()).sum() * f32::INFINITY);
        let result = catch_unwind(AssertUnwindSafe(|| optim.step(1e-3, model.clone(), grads)));
        match step {
            0 | 1 => model = result.expect("first overflows are skipped"),
            _ => {
                let panic = result.expect_err("third consecutive overflow stops training");
                let message = panic.downcast_ref::<String>().expect("message");
                assert!(message.contains("3 consecutive steps overflowed"), "{message}");
                assert!(message.contains("bf16-mixed"), "suggests a way out: {message}");
            }
        }
    }
    assert_eq!(scaler.skipped_steps(), 3, "the third overflow was counted before training stopped");
}

#[test]
fn bf16_mixed_never_scales() {
    let device = Default::default();
    let net = Net::<Train>::new(&device, 8, 4);
    let record = net.clone().into_record();
    let x = data::<Train>(8, 8, 2, &device);
    let grads_of = |net: &Net<Train>| {
        let grads = net.forward(x.clone()).powi_scalar(2).mean().backward();
        net.hidden.weight.grad(&grads).expect("gradient").into_data()
    };
    let manual = autocast::<Train, _>(&device, FloatDType::BF16, || grads_of(&net)).expect("bf16");
    let prepared = MixedPrecision::new(Precision::MixedBf16)
        .setup::<Train, _, _>(&device, Net::<Train>::new(&device, 8, 4).load_record(record), SgdConfig::new().init())
        .expect("flex has bf16");
    assert!(prepared.scaler.is_none() && prepared.optimizer.scaler().is_none());
    let prepared_grads = prepared.model.run(grads_of).expect("no other region is open");
    assert_eq!(prepared_grads.as_bytes(), manual.as_bytes(), "no loss scaling under bf16-mixed");
}

/// Gradient accumulation as burn-train does it: each micro-batch's loss is scaled by the
/// same scale, the scaled gradients are summed, and the one optimizer step at the
/// boundary unscales them once and updates the scale once.
#[test]
fn gradient_accumulation_scales_every_micro_batch_and_steps_once() {
    use burn::optim::GradientsAccumulator;
    let device = Default::default();
    let train = |mp: MixedPrecision| {
        let prepared = mp.setup::<Train, _, _>(&device, Net::new(&device, 8, 4), SgdConfig::new().init()).expect("flex");
        let (model, mut optim) = (prepared.model, prepared.optimizer);
        let mut accumulator = GradientsAccumulator::new();
        for seed in [21, 22, 23] {
            let grads = grads_in_region(&model, |net| net.forward(data::<Train>(8, 8, seed, &device)).powi_scalar(2).mean());
            accumulator.accumulate(&model, grads);
        }
        let model = optim.step(0.1, model, accumulator.grads());
        if let Some(s) = &prepared.scaler {
            assert_eq!(s.state().steps, 1, "one scale update per optimizer step");
            assert_eq!(s.skipped_steps(), 0);
        }
        model.module().hidden.weight.val().into_data().to_vec::<f32>().expect("f32")
    };
    let reference = train(MixedPrecision::new(Precision::True32));
    let mixed = train(MixedPrecision::new(Precision::Mixed16));
    let moved: f32 = reference.iter().zip(&mixed).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(moved < 1e-3, "accumulated, unscaled f16 gradients give the f32 update: max diff {moved}");
    let initial = Net::<Train>::new(&device, 8, 4).hidden.weight.val().into_data().to_vec::<f32>().expect("f32");
    assert_ne!(initial, mixed, "the step was taken");
}

/// Two optimizers (two halves of a model, PyTorch's multi-optimizer recipe) share one
/// scaler: one scale update per iteration, after both have stepped.
#[test]
fn optimizers_sharing_a_scaler_update_it_once_per_iteration() {
    use burn_mixed::GradScaler;
    let device = Default::default();
    let scaler = GradScaler::new(GradScalerConfig::default().with_growth_interval(1)).expect("valid");
    scaler.set_optimizers_per_step(2);
    let mp = MixedPrecision::new(Precision::Mixed16).with_shared_scaler(&scaler);
    let first = mp.setup::<Train, _, _>(&device, Net::new(&device, 8, 4), SgdConfig::new().init()).expect("f16");
    let second = mp.setup::<Train, _, _>(&device, Net::new(&device, 8, 4), SgdConfig::new().init()).expect("f16");
    assert!(first.scaler.as_ref().is_some_and(|s| s.same_as(&scaler)), "setup uses the shared scaler");
    // The second optimizer steps the first model (two optimizers, one model); the model's
    // region has the same scaler, so its backward passes are scaled by the shared scale.
    let (mut model, mut first, mut second) = (first.model, first.optimizer, second.optimizer);
    for iteration in 1..=3u64 {
        let grads = grads_in_region(&model, |net| net.forward(data::<Train>(8, 8, 30, &device)).powi_scalar(2).mean());
        model = first.step(1e-3, model, grads);
        assert_eq!(scaler.state().steps, iteration - 1, "no update after the first optimizer");
        let grads = grads_in_region(&model, |net| net.forward(data::<Train>(8, 8, 31, &device)).powi_scalar(2).mean());
        model = second.step(1e-3, model, grads);
        assert_eq!(scaler.state().steps, iteration, "one update after the second");
    }
    assert_eq!(scaler.scale(), 65536.0 * 8.0, "grew once per iteration (interval 1)");
}
