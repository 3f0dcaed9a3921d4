//! Data parallelism written by hand, as burn-train's DDP strategy runs it: one replica of
//! the prepared model per device, each with its own clone of the prepared optimizer (so
//! one shared loss scaler), gradients all-reduced between the backward pass and the step,
//! and every replica stepping on its own thread. On two Wgpu devices (see `dp/mod.rs`).

#![cfg(feature = "wgpu")]

mod dp;

use std::thread;
use std::time::Duration;

use burn::backend::wgpu::WgpuDevice;
use burn::module::list_param_ids;
use burn::module::{Module, ParamId};
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_mixed::data_parallel::{CommDtype, DataParallel, DataParallelError, ReduceOp, all_reduce, replicate};
use burn_mixed::{MixedPrecision, Precision, PrecisionModule};
use dp::{Inner, Mlp, Train, bits, devices, max_rel_diff, params, rows};

const LR: f64 = 0.01;
/// Rows per replica per step.
const ROWS: usize = 8;

type Model = PrecisionModule<Mlp<Train>>;

/// What to do to the run, for the tests.
#[derive(Clone, Copy, Default)]
struct Options {
    comm: CommDtype,
    /// `(step, replica)`: that replica's reduced gradients get an inf after the all-reduce.
    poison: Option<(usize, usize)>,
    /// Which replica reports its step first (the other waits 50 ms before stepping).
    first: usize,
    /// Loss scale to start from (16-mixed): the default 65536 overflows f16 on this model.
    init_scale: Option<f32>,
    /// After this step, save every replica's model and optimizer (scaler included) as bytes,
    /// build everything anew from a fresh `setup` and those records, and go on.
    resume_after: Option<usize>,
}

/// One run's outcome.
struct Run {
    /// Each replica's parameters after each step.
    params: Vec<Vec<Vec<Vec<f32>>>>,
    /// Each replica's optimizer record (bytes) after each step.
    optim: Vec<Vec<Vec<u8>>>,
    /// The scale after each step (16-mixed), and each step's skip flag.
    scales: Vec<(f32, bool)>,
    bytes_moved: u64,
}

/// The inner optimizer's record (Adam's moments and step counts) as bytes, parameter by
/// parameter in the module's order (the record is a hash map keyed by parameter ids, which
/// differ between runs). The scaler's state, the other half of `PrecisionOptimizer`'s
/// record, is compared through `Run::scales`.
fn record_bytes<O, R>(optimizer: &O, module: &Mlp<Train>) -> Vec<u8>
where
    O: Optimizer<Mlp<Train>, Train>,
    O::Record: IntoIterator<Item = (ParamId, R)>,
    R: Record<Train>,
{
    let mut entries: std::collections::HashMap<u64, R> = optimizer.to_record().into_iter().map(|(id, r)| (id.val(), r)).collect();
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let mut bytes = Vec::new();
    for id in list_param_ids(module) {
        if let Some(record) = entries.remove(&id.val()) {
            bytes.extend(recorder.record(record, ()).expect("an optimizer record serialises"));
        }
    }
    assert!(entries.is_empty(), "every record belongs to a parameter of the module");
    bytes
}

fn setup(precision: Precision, options: Options) -> MixedPrecision {
    let setup = MixedPrecision::new(precision);
    match options.init_scale {
        Some(scale) => setup.with_scaler(burn_mixed::GradScalerConfig { init_scale: scale, ..Default::default() }),
        None => setup,
    }
}

/// `steps` data-parallel steps over `devices.len()` replicas, replica `r` training on rows
/// `(step * replicas + r) * ROWS ..` of the data; Adam, mean all-reduce.
fn data_parallel<O, R>(precision: Precision, steps: usize, devices: &[WgpuDevice], options: Options, optimizer: O) -> Run
where
    O: Optimizer<Mlp<Train>, Train> + Clone + Send,
    O::Record: IntoIterator<Item = (ParamId, R)>,
    R: Record<Train>,
{
    let plan = DataParallel::<Train>::new(devices.to_vec()).expect("distinct Wgpu devices");
    let setup = setup(precision, options);
    assert_eq!(plan.check_precision(&setup), Ok(precision));
    let prepared = setup.setup::<Train, _, _>(&devices[0], Mlp::new(&devices[0]), optimizer).expect("lavapipe runs f16");
    let mut models: Vec<Model> = devices.iter().map(|d| replicate(prepared.model.clone(), d)).collect();
    let mut optims: Vec<_> = devices.iter().map(|_| prepared.optimizer.clone()).collect();
    plan.replicas(&optims).expect("clones of one prepared optimizer");
    let n = devices.len();
    let mut run = Run { params: vec![Vec::new(); n], optim: vec![Vec::new(); n], scales: Vec::new(), bytes_moved: 0 };
    for step in 0..steps {
        let grads: Vec<GradientsParams> = models
            .iter()
            .enumerate()
            .map(|(r, model)| {
                let start = (step * n + r) * ROWS;
                let (x, y) = rows::<Train>(start..start + ROWS, &devices[r]);
                model.run(|net| GradientsParams::from_grads(net.loss(x, y).backward(), net)).expect("no other region")
            })
            .collect();
        let (mut reduced, report) = all_reduce(models[0].module(), grads, devices, ReduceOp::Mean, options.comm);
        run.bytes_moved += report.bytes_moved;
        if let Some((_, r)) = options.poison.filter(|(s, _)| *s == step) {
            let id = models[r].module().first.weight.id;
            let grad = reduced[r].remove::<Inner, 2>(id).expect("a gradient");
            reduced[r].register::<Inner, 2>(id, grad.add_scalar(f32::INFINITY));
        }
        let stepped: Vec<(Model, _)> = thread::scope(|scope| {
            let handles: Vec<_> = models
                .drain(..)
                .zip(optims.drain(..))
                .zip(reduced)
                .enumerate()
                .map(|(r, ((model, mut optim), grads))| {
                    scope.spawn(move || {
                        if r != options.first {
                            thread::sleep(Duration::from_millis(50));
                        }
                        let model = optim.step(LR, model, grads);
                        // CubeCL gives each thread its own stream: without this sync, a read
                        // of these parameters from the test's thread can see them before
                        // the step (observed on lavapipe: SGD's in-place update "lost").
                        <Train as Backend>::sync(&devices[r]).expect("the device runs");
                        (model, optim)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("replica step")).collect()
        });
        for (r, (model, optim)) in stepped.into_iter().enumerate() {
            run.params[r].push(params(model.module()));
            run.optim[r].push(record_bytes(optim.inner(), model.module()));
            models.push(model);
            optims.push(optim);
        }
        if let Some(scaler) = optims[0].scaler() {
            let report = scaler.last_report().expect("a step was reported");
            run.scales.push((scaler.scale(), report.skipped));
        }
        if options.resume_after == Some(step) {
            let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
            let saved: Vec<(Vec<u8>, Vec<u8>)> = models
                .iter()
                .zip(&optims)
                .map(|(model, optim)| {
                    let model = recorder.record(model.clone().into_record(), ()).expect("a module record serialises");
                    (model, recorder.record(optim.to_record(), ()).expect("an optimizer record serialises"))
                })
                .collect();
            // A new process: fresh weights and a fresh scaler, then the records.
            let fresh = setup.setup::<Train, _, _>(&devices[0], Mlp::new(&devices[0]), prepared.optimizer.inner().clone());
            let fresh = fresh.expect("lavapipe runs f16");
            (models, optims) = saved
                .into_iter()
                .enumerate()
                .map(|(r, (model, optim))| {
                    let on = &devices[r];
                    let model = replicate(fresh.model.clone(), on).load_record(recorder.load(model, on).expect("module record"));
                    let optim = fresh.optimizer.clone().load_record(recorder.load(optim, on).expect("optimizer record"));
                    (model, optim)
                })
                .unzip();
            plan.replicas(&optims).expect("clones of one prepared optimizer");
        }
    }
    run
}

/// The same steps on one device over each step's global batch (all replicas' rows):
/// the gradient of the mean loss over the global batch, which the mean all-reduce gives.
fn one_device<O: Optimizer<Mlp<Train>, Train>>(
    precision: Precision,
    steps: usize,
    replicas: usize,
    options: Options,
    optimizer: O,
) -> Vec<Vec<Vec<f32>>> {
    let device = WgpuDevice::Cpu;
    let prepared = setup(precision, options).setup::<Train, _, _>(&device, Mlp::new(&device), optimizer).expect("lavapipe runs f16");
    let (mut model, mut optim) = (prepared.model, prepared.optimizer);
    let mut out = Vec::new();
    for step in 0..steps {
        let start = step * replicas * ROWS;
        let (x, y) = rows::<Train>(start..start + replicas * ROWS, &device);
        let grads = model.run(|net| GradientsParams::from_grads(net.loss(x, y).backward(), net)).expect("no region");
        model = optim.step(LR, model, grads);
        out.push(params(model.module()));
    }
    out
}

const STEPS: usize = 4;

#[test]
fn replicas_stay_identical_and_match_one_device_over_the_global_batch() {
    for precision in [Precision::True32, Precision::Mixed16] {
        let options = Options { init_scale: Some(1024.0), ..Default::default() };
        let run = data_parallel(precision, STEPS, &devices(), options, AdamConfig::new().init());
        for step in 0..STEPS {
            assert_eq!(bits(&run.params[0][step]), bits(&run.params[1][step]), "{precision}: step {step}");
            assert!(run.optim[0][step] == run.optim[1][step], "{precision}: optimizer state differs, step {step}");
        }
        // Against one device, with SGD: Adam divides by the root of the squared gradient, so
        // a parameter whose gradient is rounding noise (a unit ReLU switched off for this
        // batch) takes a full step of either sign and the comparison says nothing. Not
        // bitwise: each replica's mean over 8 rows, averaged, rounds differently from one
        // mean over 16 rows, and under 16-mixed each replica's f16 products round on their
        // own rows.
        let sgd = || SgdConfig::new().init::<Train, Mlp<Train>>();
        let run = data_parallel(precision, STEPS, &devices(), options, sgd());
        let reference = one_device(precision, STEPS, 2, options, sgd());
        // Measured on what training changed (final minus initial parameters), relative to
        // the largest change: the parameters themselves would hide any difference.
        let init = params(&Mlp::<Train>::new(&WgpuDevice::Cpu));
        let moved =
            |p: &[Vec<f32>]| -> Vec<Vec<f32>> { p.iter().zip(&init).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect()).collect() };
        let diff = max_rel_diff(&moved(&run.params[0][STEPS - 1]), &moved(&reference[STEPS - 1]));
        let tolerance = if precision == Precision::True32 { 1e-5 } else { 2e-3 };
        eprintln!("{precision}: replicas vs one device over the global batch, max difference {diff:e} of the largest update");
        assert!(diff <= tolerance, "{precision}: {diff:e} > {tolerance:e}");
        if precision == Precision::Mixed16 {
            assert!(run.scales.iter().all(|(_, skipped)| !skipped), "no overflow at scale 1024: {:?}", run.scales);
        }
    }
}

#[test]
fn resuming_every_replica_from_its_records_continues_bit_for_bit() {
    // 2^20 overflows f16 in this model's backward pass: the steps before the checkpoint skip
    // and back off, so the restored scale is not the initial one.
    let base = Options { init_scale: Some(1048576.0), ..Default::default() };
    let steps = 6;
    let straight = data_parallel(Precision::Mixed16, steps, &devices(), base, AdamConfig::new().init());
    let resumed = data_parallel(Precision::Mixed16, steps, &devices(), Options { resume_after: Some(2), ..base }, AdamConfig::new().init());
    assert!(straight.scales[..3].iter().any(|(_, skipped)| *skipped), "a skip before the checkpoint: {:?}", straight.scales);
    assert!(straight.scales[..3].iter().any(|(_, skipped)| !*skipped), "a step before the checkpoint: {:?}", straight.scales);
    assert_eq!(resumed.scales, straight.scales, "the scale and every verdict after resuming");
    for r in 0..2 {
        for step in 0..steps {
            assert_eq!(bits(&resumed.params[r][step]), bits(&straight.params[r][step]), "replica {r}, step {step}");
            assert!(resumed.optim[r][step] == straight.optim[r][step], "replica {r}'s Adam state, step {step}");
        }
    }
}

#[test]
fn an_overflow_on_one_replica_skips_the_step_on_every_replica() {
    let base = Options { init_scale: Some(1024.0), ..Default::default() };
    for (poisoned, first) in [(1, 0), (1, 1), (0, 1)] {
        let options = Options { poison: Some((2, poisoned)), first, ..base };
        let run = data_parallel(Precision::Mixed16, STEPS, &devices(), options, AdamConfig::new().init());
        for r in 0..2 {
            // Step 2 left parameters and optimizer state bit-identical, on both replicas.
            assert_eq!(bits(&run.params[r][2]), bits(&run.params[r][1]), "replica {r} stepped (poisoned {poisoned})");
            assert!(run.optim[r][2] == run.optim[r][1], "replica {r}'s optimizer state changed (poisoned {poisoned})");
            assert_ne!(bits(&run.params[r][3]), bits(&run.params[r][2]), "replica {r} trains on after the skip");
        }
        assert_eq!(bits(&run.params[0][3]), bits(&run.params[1][3]));
        // One update per step, not one per replica: 1024 grows never (interval 2000), halves once.
        let expected = vec![(1024.0, false), (1024.0, false), (512.0, true), (512.0, false)];
        assert_eq!(run.scales, expected, "poisoned replica {poisoned}, replica {first} reported first");
    }
}

#[test]
fn the_outcome_does_not_depend_on_which_replica_reports_first() {
    let options = Options { poison: Some((1, 0)), init_scale: Some(1024.0), ..Default::default() };
    let a = data_parallel(Precision::Mixed16, 3, &devices(), Options { first: 0, ..options }, AdamConfig::new().init());
    let b = data_parallel(Precision::Mixed16, 3, &devices(), Options { first: 1, ..options }, AdamConfig::new().init());
    assert_eq!(a.scales, b.scales);
    for r in 0..2 {
        assert_eq!(a.params[r].iter().map(|p| bits(p)).collect::<Vec<_>>(), b.params[r].iter().map(|p| bits(p)).collect::<Vec<_>>());
        assert!(a.optim[r] == b.optim[r], "replica {r}'s optimizer state depends on the order");
    }
}

/// Each replica's gradients of one step under 32-true, all-reduced with `comm`: the
/// reduced values of every parameter (on each device) and the report.
fn reduced(comm: CommDtype) -> (Vec<Vec<Vec<f32>>>, burn_mixed::data_parallel::AllReduceReport) {
    let devices = devices();
    let prepared = MixedPrecision::new(Precision::True32)
        .setup::<Train, _, _>(&devices[0], Mlp::new(&devices[0]), AdamConfig::new().init())
        .expect("32-true runs anywhere");
    let models: Vec<Model> = devices.iter().map(|d| replicate(prepared.model.clone(), d)).collect();
    let grads: Vec<GradientsParams> = models
        .iter()
        .enumerate()
        .map(|(r, model)| {
            let (x, y) = rows::<Train>(r * ROWS..(r + 1) * ROWS, &devices[r]);
            model.run(|net| GradientsParams::from_grads(net.loss(x, y).backward(), net)).expect("no region")
        })
        .collect();
    let module = models[0].module();
    let (mut out, report) = all_reduce(module, grads, &devices, ReduceOp::Mean, comm);
    let ids = [module.first.weight.id, module.second.weight.id];
    let values = out
        .iter_mut()
        .map(|g| {
            ids.iter()
                .map(|id| {
                    let t: Tensor<Inner, 2> = g.remove(*id).expect("a gradient");
                    assert_eq!(t.dtype(), burn::tensor::DType::F32, "gradients come back in f32");
                    t.into_data().to_vec::<f32>().expect("f32")
                })
                .collect()
        })
        .collect();
    (values, report)
}

#[test]
fn half_precision_all_reduce_moves_half_the_bytes_within_f16_rounding() {
    let (exact, exact_report) = reduced(CommDtype::Native);
    let (half, half_report) = reduced(CommDtype::F16);
    // 4 parameters (16x32 + 32 + 32x4 + 4 = 676 values), each sent to device 0 and back
    // (8 transfers, 2 x 676 values): the bytes of the host buffers, 4 per value in f32,
    // 2 in f16.
    assert_eq!(exact_report.parameters, 4);
    assert_eq!((exact_report.transfers, half_report.transfers), (8, 8));
    assert_eq!(exact_report.bytes_moved, 2 * 676 * 4);
    assert_eq!(half_report.bytes_moved, 2 * 676 * 2);
    for replica in [&half[0], &half[1]] {
        assert_eq!(bits(replica), bits(&half[0]), "every device holds the same bits");
    }
    // Three f16 roundings between a gradient and its reduced value (each replica's half
    // out, the f32 sum's half back): each at most 2^-11 relative, so within 3 * 2^-11 of
    // the largest gradient (subnormal-range values lose more, relative to themselves).
    let bound = 3.0 * 2f32.powi(-11);
    let diff = max_rel_diff(&half[0], &exact[0]);
    eprintln!("f16 all-reduce vs f32: max difference {diff:e} of the largest gradient (bound {bound:e})");
    assert!(diff <= bound, "{diff:e} > {bound:e}");
    assert!(diff > 0.0, "f16 transfers must round something");
}

#[test]
fn training_with_half_precision_all_reduce_stays_close_to_f32_all_reduce() {
    let options = Options { init_scale: Some(1024.0), ..Default::default() };
    let exact = data_parallel(Precision::Mixed16, STEPS, &devices(), options, AdamConfig::new().init());
    let half = data_parallel(Precision::Mixed16, STEPS, &devices(), Options { comm: CommDtype::F16, ..options }, AdamConfig::new().init());
    assert_eq!(half.bytes_moved * 2, exact.bytes_moved);
    assert_eq!(bits(&half.params[0][STEPS - 1]), bits(&half.params[1][STEPS - 1]));
    let diff = max_rel_diff(&half.params[0][STEPS - 1], &exact.params[0][STEPS - 1]);
    eprintln!("16-mixed, {STEPS} Adam steps: f16 vs f32 all-reduce, max relative parameter difference {diff:e}");
    assert!(diff <= 5e-4, "{diff:e}");
}

#[test]
fn bad_device_lists_and_replicas_are_refused_before_training() {
    let err = DataParallel::<Train>::new(vec![]).unwrap_err();
    assert_eq!(err, DataParallelError::NoDevices);
    let err = DataParallel::<Train>::new(vec![WgpuDevice::Cpu, WgpuDevice::DefaultDevice, WgpuDevice::Cpu]).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DataParallelError::DuplicateDevice { first: 0, second: 2, .. }), "{err:?}");
    assert!(message.contains("Cpu") && message.contains("DefaultDevice") && message.contains("positions 0 and 2"), "{message}");

    let plan = DataParallel::<Train>::new(devices()).expect("two devices");
    // Wgpu has no bf16: refused on the first device, named.
    let err = plan.check_precision(&MixedPrecision::new(Precision::MixedBf16)).unwrap_err();
    assert!(err.to_string().contains("Cpu") && err.to_string().contains("bf16"), "{err}");

    let device = WgpuDevice::Cpu;
    let prepare = |precision| {
        MixedPrecision::new(precision)
            .setup::<Train, _, _>(&device, Mlp::new(&device), AdamConfig::new().init())
            .expect("lavapipe runs f16")
            .optimizer
    };
    let (a, b, plain) = (prepare(Precision::Mixed16), prepare(Precision::Mixed16), prepare(Precision::True32));
    let err = plan.replicas(&[a.clone(), b]).unwrap_err();
    assert_eq!(err, DataParallelError::ScalerMismatch { replica: 1, has_scaler: true, first_has_scaler: true });
    assert!(err.to_string().contains("different GradScaler"), "{err}");
    let err = plan.replicas(&[a.clone(), plain.clone()]).unwrap_err();
    assert!(err.to_string().contains("replica 1's optimizer has no GradScaler"), "{err}");
    let err = plan.replicas(std::slice::from_ref(&a)).unwrap_err();
    assert_eq!(err.to_string(), "1 optimizers for 2 devices; a data-parallel loop steps one optimizer per device");
    assert_eq!(a.scaler().expect("16-mixed").replicas(), 1, "nothing configured by a refused plan");
    plan.replicas(&[a.clone(), a.clone()]).expect("clones share one scaler");
    assert_eq!(a.scaler().expect("16-mixed").replicas(), 2);
    plan.replicas(&[plain.clone(), plain]).expect("no scaler anywhere is fine");
}
