//! The training loop every process runs: the training example's transformer
//! (`examples/common/transformer.rs`) on its share of each global batch, the gradients averaged over the processes between backward and
//! the optimizer step, under any precision. With one process and no collective it is the
//! reference run on the whole global batch.
//!
//! Every process prints one line per step (loss, loss scale, verdict and a checksum of its
//! parameters' bits), so that any two processes can be compared line by line.

use std::io::Write;
use std::path::PathBuf;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer, SgdConfig};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn::train::checkpoint::{Checkpointer, FileCheckpointer};
use burn_mixed::{GradScalerConfig, MixedPrecision, Precision, Prepared};

use crate::cluster::Collective;
use crate::gradients::{Transfer, all_reduce_mean};
use crate::sequence::{SEQ_LEN, SequenceSpec};
use crate::transformer::{SequenceModel, TransformerSpec};
use crate::{Device, Train};

/// The optimizers a run can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

/// Everything that defines a run's numbers: identical in every process (the handshake
/// compares a checksum of it).
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub precision: Precision,
    pub steps: usize,
    pub global_batch: usize,
    pub seed: u64,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub model: TransformerSpec,
    pub init_scale: Option<f32>,
    pub transfer: Transfer,
    /// Whether a process of the run is told to overflow (`--force-overflow`).
    pub forces_overflow: bool,
}

/// What one process does besides training.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Save a checkpoint (burn-train's `FileCheckpointer`) every this many steps, in this
    /// directory's `rank-R` (each process its own, so that machines need no shared disk).
    pub checkpoints: Option<(PathBuf, usize)>,
    /// Continue from the checkpoint saved after this many steps.
    pub resume_from: Option<usize>,
    /// Write the initial and final parameters (f32, little-endian, module order) into this
    /// directory, as `rank-R-initial.f32` and `rank-R-final.f32`.
    pub dump: Option<PathBuf>,
    /// Test hook: make this process's gradients overflow at this step.
    pub overflow_at: Option<usize>,
}

impl RunSpec {
    /// Refuses settings that cannot run over `nodes` processes, before any process waits.
    pub fn check(&self, nodes: u32) -> Result<(), String> {
        if self.global_batch == 0 || !self.global_batch.is_multiple_of(nodes as usize) {
            return Err(format!("--global-batch {} must be a positive multiple of --nodes {nodes}", self.global_batch));
        }
        if self.forces_overflow && self.precision != Precision::Mixed16 {
            return Err(format!("--force-overflow tests the loss scaler, which only 16-mixed has (not {})", self.precision));
        }
        Ok(())
    }

    /// A checksum of the settings, compared between processes before training.
    pub fn checksum(&self) -> u64 {
        fnv1a(format!("{self:?}").as_bytes())
    }
}

/// FNV-1a, 64 bits: a checksum of bytes that every process computes the same way.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ *byte as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Every float parameter's values, in module order.
fn parameters<M: Module<Train>>(model: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor<Train> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
            self.0.extend(param.val().into_data().convert::<f32>().to_vec::<f32>().expect("f32 values"));
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// A checksum of the parameters' bits.
pub fn parameter_checksum<M: Module<Train>>(model: &M) -> u64 {
    fnv1a(&parameters(model).iter().flat_map(|v| v.to_bits().to_le_bytes()).collect::<Vec<u8>>())
}

type Recorder = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Trains `spec`; `collective` is `None` for the single-process reference.
pub fn train(
    spec: &RunSpec,
    extras: &Extras,
    collective: Option<&Collective>,
    device: &Device,
    out: &mut impl Write,
) -> Result<(), String> {
    match spec.optimizer {
        OptimizerKind::Adam => train_with(spec, extras, collective, device, out, AdamConfig::new().init()),
        OptimizerKind::Sgd => train_with(spec, extras, collective, device, out, SgdConfig::new().init()),
    }
}

fn train_with<O: Optimizer<SequenceModel<Train>, Train>>(
    spec: &RunSpec,
    extras: &Extras,
    collective: Option<&Collective>,
    device: &Device,
    out: &mut impl Write,
    optimizer: O,
) -> Result<(), String> {
    let (nodes, rank) = collective.map_or((1, 0), |c| (c.nodes as usize, c.rank as usize));
    spec.check(nodes as u32)?;
    // The same seed gives every process the same initial f32 parameters.
    Train::seed(device, spec.seed);
    let model = spec.model.init::<Train>(device);
    let mut mp = MixedPrecision::new(spec.precision);
    if let Some(scale) = spec.init_scale {
        mp = mp.with_scaler(GradScalerConfig::default().with_init_scale(scale));
    }
    let Prepared { model, optimizer, precision, scaler } = mp.setup::<Train, _, _>(device, model, optimizer).map_err(|e| e.to_string())?;
    let mut model = model.map_module(|m| m.with_precision(MixedPrecision::new(precision)));
    let mut optimizer = optimizer;

    let checkpointer = |dir: &PathBuf| {
        let dir = dir.join(format!("rank-{rank}"));
        (FileCheckpointer::new(Recorder::new(), &dir, "model"), FileCheckpointer::new(Recorder::new(), &dir, "optimizer"))
    };
    let dump = |name: &str, model: &SequenceModel<Train>| -> Result<(), String> {
        let Some(dir) = &extras.dump else { return Ok(()) };
        let path = dir.join(format!("rank-{rank}-{name}.f32"));
        let bytes: Vec<u8> = parameters(model).iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, bytes))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let first_step = match extras.resume_from {
        None => 0,
        Some(step) => {
            let (dir, _) = extras.checkpoints.as_ref().ok_or("resuming needs --checkpoint-dir")?;
            let (models, optimizers) = checkpointer(dir);
            let record = Checkpointer::<_, Train>::restore(&models, step, device)
                .map_err(|e| format!("cannot restore the model checkpoint of step {step} from {}: {e:?}", dir.display()))?;
            model = model.map_module(|m| m.load_record(record));
            let record = Checkpointer::<_, Train>::restore(&optimizers, step, device)
                .map_err(|e| format!("cannot restore the optimizer checkpoint of step {step} from {}: {e:?}", dir.display()))?;
            optimizer = optimizer.load_record(record);
            step
        }
    };
    if first_step > spec.steps {
        return Err(format!("--resume-from {first_step} is past --steps {}", spec.steps));
    }
    if let Some(collective) = collective {
        collective.handshake(spec.checksum(), parameter_checksum(model.module()), device)?;
    }
    dump("initial", model.module())?;
    writeln!(out, "start step {first_step} params {:016x}", parameter_checksum(model.module())).map_err(|e| e.to_string())?;

    let local = spec.global_batch / nodes;
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    for step in first_step..spec.steps {
        // This process's rows of the step's global batch, which depends on the seed and the
        // step alone (so a resumed run trains on the same rows).
        let batch_seed = spec.seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let items = SequenceSpec::new(batch_seed, spec.global_batch).train()?;
        let rows = &items[rank * local..(rank + 1) * local];
        let tokens: Vec<i64> = rows.iter().flat_map(|s| s.tokens.map(i64::from)).collect();
        let targets: Vec<i64> = rows.iter().flat_map(|s| s.targets.map(i64::from)).collect();
        let tokens = Tensor::<Train, 2, Int>::from_data(TensorData::new(tokens, [local, SEQ_LEN]), device);
        let targets = Tensor::<Train, 1, Int>::from_data(TensorData::new(targets, [local * SEQ_LEN]), device);

        let (loss, mut grads) = model
            .run(|net| {
                let loss = loss_fn.forward(net.forward_f32(tokens), targets);
                let value = loss.clone().into_scalar();
                (value, GradientsParams::from_grads(loss.backward(), net))
            })
            .map_err(|e| e.to_string())?;
        if extras.overflow_at == Some(step) {
            grads = overflow(model.module(), grads);
        }
        let mut all_reduces = 0;
        if let Some(collective) = collective {
            (grads, all_reduces) = all_reduce_mean(collective, spec.transfer, model.module(), grads, device, step)?;
        }
        model = optimizer.step(spec.lr, model, grads);

        let (scale, skipped) = match &scaler {
            Some(s) => (s.scale(), s.last_report().is_some_and(|r| r.skipped)),
            None => (1.0, false),
        };
        let params = parameter_checksum(model.module());
        writeln!(out, "step {step} loss {loss:.6} scale {scale} skipped {skipped} all-reduces {all_reduces} params {params:016x}")
            .map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;

        if let Some((dir, every)) = &extras.checkpoints
            && (step + 1) % every == 0
        {
            let (models, optimizers) = checkpointer(dir);
            Checkpointer::<_, Train>::save(&models, step + 1, model.module().clone().into_record())
                .map_err(|e| format!("cannot save the model checkpoint in {}: {e:?}", dir.display()))?;
            Checkpointer::<_, Train>::save(&optimizers, step + 1, optimizer.to_record())
                .map_err(|e| format!("cannot save the optimizer checkpoint in {}: {e:?}", dir.display()))?;
        }
    }
    dump("final", model.module())
}

/// The test hook behind `--overflow-at`: this process's first gradient becomes +inf, as an
/// f16 overflow in its backward pass would make it.
fn overflow<M: AutodiffModule<Train>>(model: &M, mut grads: GradientsParams) -> GradientsParams {
    struct First<'a>(&'a mut GradientsParams, bool);
    impl ModuleVisitor<Train> for First<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Train, D>>) {
            if !self.1
                && let Some(g) = self.0.remove::<crate::Inner, D>(param.id)
            {
                self.0.register::<crate::Inner, D>(param.id, g.add_scalar(f32::INFINITY));
                self.1 = true;
            }
        }
    }
    model.visit(&mut First(&mut grads, false));
    grads
}
