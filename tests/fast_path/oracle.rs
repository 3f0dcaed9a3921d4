//! The differential oracle: one case computed on the fast path, on Flex's own kernels (the
//! fast path switched off) and in f64, in both autodiff layerings and both half dtypes.
//!
//! Per case, per dtype and layering, the fast path must
//! - panic exactly where Flex's kernels panic;
//! - give every output and gradient the shape and dtype Flex gives it, and the same set
//!   of gradients;
//! - give values within the case's allowance of roundings of the half dtype from the f64
//!   reference (computed on `Autodiff<Flex>` in f64 from the same half-rounded inputs), or
//!   no farther from it than Flex's own value, element by element, or else as a whole
//!   (RMS and largest error within a quarter of Flex's); outputs marked exact must equal
//!   Flex's bit for bit, and casts must round every element correctly.
//!
//! Elements far below the output's typical magnitude (cancellation) are measured against
//! one rounding at a sixteenth of the output's RMS, as the kernel tests do.

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use burn_mixed::Mixed;
use burn_mixed::kernels::{HostKernelCalls, host_kernel_calls, reset_host_kernel_calls, with_host_kernels};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use crate::kernels_support::{HALVES, round_to, ulp, values};

/// The seed of every property in CI (`PROPTEST_RNG_SEED` overrides it).
const SEED: u64 = 0x5eed_f00d;

/// How a case builds its tensors: the half dtype under test (every input is rounded to it)
/// and the dtype the computation runs in (that half dtype, or f64 for the reference).
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub half: FloatDType,
    pub compute: FloatDType,
}

impl Ctx {
    pub fn is_reference(&self) -> bool {
        self.compute == FloatDType::F64
    }

    /// The dtype of f32 values in the case (a parameter before autocast, the loss): f64
    /// in the reference.
    pub fn wide(&self) -> FloatDType {
        if self.is_reference() { FloatDType::F64 } else { FloatDType::F32 }
    }

    /// `values` rounded to the half dtype, as a tensor of the compute dtype.
    pub fn input<B: Backend, const D: usize>(&self, values: &[f64], shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
        self.tensor(values, shape, self.compute, device)
    }

    /// `values` rounded to the half dtype, as an f32 tensor (f64 in the reference).
    pub fn wide_input<B: Backend, const D: usize>(&self, values: &[f64], shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
        self.tensor(values, shape, self.wide(), device)
    }

    fn tensor<B: Backend, const D: usize>(&self, values: &[f64], shape: [usize; D], dtype: FloatDType, device: &B::Device) -> Tensor<B, D> {
        let rounded = round_to(values.to_vec(), self.half);
        if dtype == FloatDType::F64 {
            return Tensor::from_data(TensorData::new(rounded, shape), (device, DType::F64));
        }
        let data: Vec<f32> = rounded.into_iter().map(|v| v as f32).collect();
        let t = Tensor::<B, D>::from_data(TensorData::new(data, shape), (device, DType::F32));
        if dtype == FloatDType::F32 { t } else { t.cast(dtype) }
    }

    /// `out` reduced to a scalar loss, `sum(out * probe)` in f32 (f64 in the reference),
    /// and its gradients: the output's gradient is the probe, deterministic values from
    /// `seed` rounded to the half dtype (so that casting it back to the output's dtype is
    /// exact).
    pub fn backward<B: AutodiffBackend, const D: usize>(&self, out: Tensor<B, D>, seed: u64) -> B::Gradients {
        let device = out.device();
        let dims = out.dims();
        let probe = self.wide_input::<B, D>(&values(dims.iter().product(), seed, FloatDType::F32), dims, &device);
        (out.cast(self.wide()) * probe).sum().backward()
    }
}

/// One tensor a case hands the oracle: an output, a gradient, or an input read back after
/// the op (to see that it was not overwritten).
#[derive(Clone, Debug)]
pub struct Observed {
    pub label: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub values: Vec<f64>,
    /// The raw encoding, for the exact comparison.
    pub bytes: Vec<u8>,
    /// How many roundings of the half dtype the value may be from the f64 reference.
    pub roundings: f64,
    /// Designed to equal Flex's result bit for bit.
    pub exact: bool,
    /// Designed to be the reference rounded once to the half dtype (to nearest, ties to
    /// even), element by element: a cast.
    pub correctly_rounded: bool,
    /// The magnitude below which an element's error is measured in roundings at that
    /// magnitude: a sixteenth of the reference's RMS unless the case knows the size of the
    /// terms the element sums (a weighted mean's values).
    pub scale: Option<f64>,
}

impl Observed {
    pub fn new<B: Backend, const D: usize>(label: impl Into<String>, t: Tensor<B, D>) -> Self {
        let data = t.into_data();
        Self {
            label: label.into(),
            shape: data.shape.to_vec(),
            dtype: data.dtype,
            values: data.iter::<f64>().collect(),
            bytes: data.as_bytes().to_vec(),
            roundings: 1.0,
            exact: false,
            correctly_rounded: false,
            scale: None,
        }
    }

    /// The gradient of `leaf`, or an entry that says it has none.
    pub fn grad<B: AutodiffBackend, const D: usize>(label: &str, leaf: &Tensor<B, D>, grads: &B::Gradients) -> Self {
        match leaf.grad(grads) {
            Some(g) => Self::new(label, g),
            None => Self {
                label: format!("{label} (none)"),
                shape: vec![],
                dtype: DType::U8,
                values: vec![],
                bytes: vec![],
                roundings: 1.0,
                exact: true,
                correctly_rounded: false,
                scale: None,
            },
        }
    }

    pub fn within(mut self, roundings: f64) -> Self {
        self.roundings = roundings;
        self
    }

    pub fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    /// Errors measured in roundings at `magnitude` at least (see [`Observed::scale`]).
    pub fn at_scale(mut self, magnitude: f64) -> Self {
        self.scale = Some(magnitude);
        self
    }

    /// Errors measured in roundings at the tensor's largest magnitude (a normwise bound).
    pub fn normwise(self) -> Self {
        let max = self.values.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
        self.at_scale(max)
    }

    pub fn correctly_rounded(mut self) -> Self {
        self.correctly_rounded = true;
        self
    }
}

/// A computation the oracle runs: builds its inputs from `ctx`, runs the op (and usually a
/// backward pass) on `B`, and hands back what it observed.
pub trait Case: Debug {
    fn run<B: AutodiffBackend>(&self, ctx: Ctx, device: &B::Device) -> Vec<Observed>;
}

/// What a run gave: its observations, or the panic's message.
type Outcome = Result<Vec<Observed>, String>;

thread_local! {
    /// Set while [`catch`] runs a case: its panics are outcomes, not failures to print.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the panics [`catch`] expects on its own thread off the output; every other panic
/// is printed as usual.
fn quiet_expected_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(std::cell::Cell::get) {
                default(info);
            }
        }));
    });
}

fn catch(f: impl FnOnce() -> Vec<Observed>) -> Outcome {
    quiet_expected_panics();
    CATCHING.with(|c| c.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    outcome.map_err(|e| e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
}

/// The per-op tallies a property prints: cases, and cases the fast path took.
#[derive(Default, Debug, Clone, Copy)]
pub struct Tally {
    pub runs: u64,
    pub taken: u64,
}

/// Runs `case` through the oracle in both layerings and both half dtypes. `taken` reads the
/// kernel counters of a fast run: nonzero when the fast path ran the case's op.
pub fn check<C: Case>(case: &C, taken: fn(&HostKernelCalls) -> u64, tally: &mut Tally) -> Result<(), TestCaseError> {
    let device = Default::default();
    if std::env::var_os("FAST_PATH_TRACE").is_some() {
        // A crash (not a panic) cannot be shrunk: this names the case that caused it.
        eprintln!("case: {case:?}");
    }
    for half in HALVES {
        let reference = catch(|| case.run::<Autodiff<Flex>>(Ctx { half, compute: FloatDType::F64 }, &device));
        let ctx = Ctx { half, compute: half };
        compare_layering::<Mixed<Autodiff<Flex>>, C>(case, ctx, "Mixed<Autodiff<Flex>>", &reference, taken, tally)?;
        compare_layering::<Autodiff<Mixed<Flex>>, C>(case, ctx, "Autodiff<Mixed<Flex>>", &reference, taken, tally)?;
    }
    Ok(())
}

fn compare_layering<B: AutodiffBackend, C: Case>(
    case: &C,
    ctx: Ctx,
    layering: &str,
    reference: &Outcome,
    taken: fn(&HostKernelCalls) -> u64,
    tally: &mut Tally,
) -> Result<(), TestCaseError> {
    let device = Default::default();
    reset_host_kernel_calls();
    let fast = catch(|| case.run::<B>(ctx, &device));
    let calls = host_kernel_calls();
    let flex = with_host_kernels(false, || catch(|| case.run::<B>(ctx, &device)));
    tally.runs += 1;
    tally.taken += u64::from(taken(&calls) > 0);
    let at = format!("{layering}, {:?}", ctx.half);
    let (fast, flex) = match (fast, flex) {
        (Ok(fast), Ok(flex)) => (fast, flex),
        (Err(fast), Ok(_)) => return Err(TestCaseError::fail(format!("{at}: the fast path panics where Flex does not: {fast}"))),
        (Ok(_), Err(flex)) => return Err(TestCaseError::fail(format!("{at}: Flex panics ({flex}) where the fast path does not"))),
        (Err(_), Err(_)) => return Ok(()),
    };
    let reference = reference.as_ref().map_err(|e| TestCaseError::fail(format!("{at}: the f64 reference panics: {e}")))?;
    let labels = |o: &[Observed]| o.iter().map(|o| o.label.clone()).collect::<Vec<_>>();
    if labels(&fast) != labels(&flex) {
        return Err(TestCaseError::fail(format!("{at}: fast path observed {:?}, Flex {:?}", labels(&fast), labels(&flex))));
    }
    for ((fast, flex), want) in fast.iter().zip(&flex).zip(reference) {
        let what = format!("{at}, {}", fast.label);
        if (&fast.shape, fast.dtype) != (&flex.shape, flex.dtype) {
            return Err(TestCaseError::fail(format!(
                "{what}: fast path {:?} {:?}, Flex {:?} {:?}",
                fast.shape, fast.dtype, flex.shape, flex.dtype
            )));
        }
        if fast.exact && fast.bytes != flex.bytes {
            let at = fast.bytes.iter().zip(&flex.bytes).position(|(a, b)| a != b).unwrap_or(0) / fast.dtype.size().max(1);
            return Err(TestCaseError::fail(format!(
                "{what}: not bit-identical to Flex, first at #{at}: {} vs {}",
                fast.values.get(at).copied().unwrap_or(f64::NAN),
                flex.values.get(at).copied().unwrap_or(f64::NAN)
            )));
        }
        if want.shape != fast.shape {
            return Err(TestCaseError::fail(format!("{what}: shape {:?}, the reference's {:?}", fast.shape, want.shape)));
        }
        check_values(&what, fast, flex, want, ctx.half)?;
    }
    Ok(())
}

/// Element by element: within `fast.roundings` roundings of the f64 value, or no farther
/// from it than Flex; NaN where Flex or the reference has NaN; infinities as Flex or as
/// the reference rounds.
/// Where an element is farther than both, the tensor as a whole must be no farther from
/// the reference than Flex's: neither its RMS error nor its largest element error more
/// than a quarter above Flex's (paths that round at the same points err per element on
/// either side of each other).
fn check_values(what: &str, fast: &Observed, flex: &Observed, want: &Observed, half: FloatDType) -> Result<(), TestCaseError> {
    let finite: Vec<f64> = want.values.iter().copied().filter(|v| v.is_finite()).collect();
    let rms = (finite.iter().map(|v| v * v).sum::<f64>() / finite.len().max(1) as f64).sqrt();
    let floor = fast.scale.unwrap_or(rms / 16.0).max(rms / 16.0);
    let mut first_outlier = None;
    for (i, ((&got, &theirs), &exact)) in fast.values.iter().zip(&flex.values).zip(&want.values).enumerate() {
        if fast.correctly_rounded {
            let rounded = round_once(exact, half);
            if got.to_bits() != rounded.to_bits() && !(got.is_nan() && rounded.is_nan()) {
                return Err(TestCaseError::fail(format!("{what} #{i}: {exact:e} rounds to {rounded:e}, the fast path gives {got:e}")));
            }
            continue;
        }
        let fail = || Err(TestCaseError::fail(format!("{what} #{i}: fast path {got:e}, Flex {theirs:e}, f64 {exact:e}")));
        // NaN where Flex or the reference has it; a value where Flex has NaN only when the
        // reference has a value and the fast path is within its allowance of it (Flex's
        // half decompositions overflow where the kernels compute in f32).
        if got.is_nan() || exact.is_nan() {
            if !(got.is_nan() && (theirs.is_nan() || exact.is_nan())) && !(exact.is_nan() && got == theirs) {
                return fail();
            }
            continue;
        }
        if !got.is_finite() || !exact.is_finite() {
            if got != theirs && got != round_once(exact, half) {
                return fail();
            }
            continue;
        }
        let err = (got - exact).abs();
        if err > fast.roundings * ulp(exact.abs().max(floor), half) {
            match theirs.is_nan() {
                true => return fail(),
                false if err > (theirs - exact).abs() => {
                    first_outlier.get_or_insert(i);
                }
                false => {}
            }
        }
    }
    let Some(i) = first_outlier else { return Ok(()) };
    let errors = |o: &Observed| -> (f64, f64) {
        let pairs = o.values.iter().zip(&want.values).filter(|(g, w)| g.is_finite() && w.is_finite());
        let (sum, worst, n) = pairs.fold((0.0, 0.0f64, 0usize), |(s, m, n), (g, w)| (s + (g - w).powi(2), m.max((g - w).abs()), n + 1));
        ((sum / n.max(1) as f64).sqrt(), worst)
    };
    let ((fast_rms, fast_worst), (flex_rms, flex_worst)) = (errors(fast), errors(flex));
    // A quarter of slack: two paths that round at the same points but accumulate in
    // different orders land on either side of each other (Burn's own broadcast backward
    // in `Autodiff<Mixed<Flex>>`: 0.5% apart in RMS over one case); a path that rounds
    // more often than Flex's lands well outside.
    if fast_rms <= 1.25 * flex_rms && fast_worst <= 1.25 * flex_worst {
        return Ok(());
    }
    let (got, theirs, exact) = (fast.values[i], flex.values[i], want.values[i]);
    Err(TestCaseError::fail(format!(
        "{what} #{i}: fast path {got:e}, Flex {theirs:e}, f64 {exact:e} (allowed {} rounding(s) of {half:?}: {:e}); \
         error RMS {fast_rms:e} against Flex's {flex_rms:e}, largest {fast_worst:e} against {flex_worst:e}",
        fast.roundings,
        fast.roundings * ulp(exact.abs().max(floor), half)
    )))
}

/// `value` rounded once to the half dtype, to nearest, ties to even. Through f32, which is
/// exact for the values it is given (f32 inputs, sums of few half products); `half`'s
/// own f64 conversion to bf16 drops the low 32 bits first and misrounds near ties.
fn round_once(value: f64, half: FloatDType) -> f64 {
    let v = value as f32;
    match half {
        FloatDType::BF16 => burn::tensor::bf16::from_f32(v).to_f64(),
        FloatDType::F16 => burn::tensor::f16::from_f32(v).to_f64(),
        _ => value,
    }
}

/// The cases each property runs in CI (`PROPTEST_CASES` overrides it, for a long run).
pub fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var("PROPTEST_CASES").is_err() {
        config.cases = cases;
    }
    if std::env::var("PROPTEST_RNG_SEED").is_err() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config.failure_persistence = None;
    config
}

/// Runs the property `name` over `strategy` with [`check`], `cases` cases in CI; on a
/// failure, panics with the case proptest shrank it to. Prints the tally.
pub fn property<S>(name: &str, cases: u32, strategy: S, taken: fn(&HostKernelCalls) -> u64)
where
    S: proptest::strategy::Strategy,
    S::Value: Case,
{
    let tally = std::cell::Cell::new(Tally::default());
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |case| {
        let mut t = tally.get();
        let outcome = check(&case, taken, &mut t);
        tally.set(t);
        outcome
    });
    let Tally { runs, taken } = tally.get();
    println!("{name}: {} cases, {runs} fast runs, {taken} on the host kernels", runner.config().cases);
    match result {
        Ok(()) => assert!(taken > 0, "{name}: no case took the host kernels"),
        Err(TestError::Fail(reason, minimal)) => panic!("{name}: {reason}\nminimal case: {minimal:#?}"),
        Err(TestError::Abort(reason)) => panic!("{name}: aborted: {reason}"),
    }
}
