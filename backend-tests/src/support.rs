//! Helpers shared by the equivalence and autocast suites.
//!
//! - Exact comparison: [`assert_bitwise_eq`] checks dtype, shape and the raw bytes, so a
//!   difference of one ulp, a NaN payload or a changed dtype all fail.
//! - Deterministic inputs: [`uniform`], [`ints`] and [`bools`] build [`TensorData`] from a
//!   fixed seed with a small local generator, so every backend (and every run) gets the
//!   same values without depending on any backend's RNG.
//! - Scenarios: a test body written once as a function generic over the backend records
//!   its results in an [`Outputs`]; [`assert_equivalent`] runs it on `B` and on
//!   `Mixed<B>` and compares every recorded output: bitwise, or, where the bare backend is
//!   not deterministic run to run, within the bare runs' own spread.
//! - Backend RNG: backends keep one global seed, and tests run on parallel threads, so
//!   any code that seeds and then draws must hold [`rng_lock`] for both steps.

use std::sync::{Mutex, MutexGuard};

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{BasicOps, Bool, DType, FloatDType, Int, IntDType, Tensor, TensorData, TensorPrimitive};
use burn_mixed::Mixed;

/// Asserts that `got` and `want` have the same dtype, shape and bytes.
///
/// `what` names the output in the failure message. On a value mismatch the message shows
/// the first differing element, decoded when the dtype is f32 or f64.
pub fn assert_bitwise_eq(what: &str, got: TensorData, want: TensorData) {
    if let Err(difference) = bitwise_diff(&got, &want) {
        panic!("{what}: {difference}");
    }
}

/// `Ok` when `got` and `want` have the same dtype, shape and bytes; otherwise what differs.
pub fn bitwise_diff(got: &TensorData, want: &TensorData) -> Result<(), String> {
    if got.dtype != want.dtype {
        return Err(format!("dtypes differ: {:?} vs {:?}", got.dtype, want.dtype));
    }
    if got.shape != want.shape {
        return Err(format!("shapes differ: {:?} vs {:?}", got.shape, want.shape));
    }
    let (g, w) = (got.as_bytes(), want.as_bytes());
    if g.len() != w.len() {
        return Err(format!("byte lengths differ: {} vs {}", g.len(), w.len()));
    }
    let Some(byte) = g.iter().zip(w).position(|(a, b)| a != b) else {
        return Ok(());
    };
    let index = byte / (g.len() / got.num_elements().max(1)).max(1);
    let decoded = match got.dtype {
        DType::F32 => format!(" ({} vs {})", got.as_slice::<f32>().unwrap()[index], want.as_slice::<f32>().unwrap()[index]),
        DType::F64 => format!(" ({} vs {})", got.as_slice::<f64>().unwrap()[index], want.as_slice::<f64>().unwrap()[index]),
        _ => String::new(),
    };
    Err(format!("values differ, first at element {index}{decoded}"))
}

/// Asserts that two tensors, possibly on different backends, have the same dtype, shape
/// and bytes. Reads both back.
pub fn assert_tensors_eq<B1, B2, const D: usize, K1, K2>(what: &str, got: Tensor<B1, D, K1>, want: Tensor<B2, D, K2>)
where
    B1: Backend,
    B2: Backend,
    K1: BasicOps<B1>,
    K2: BasicOps<B2>,
{
    assert_bitwise_eq(what, got.into_data(), want.into_data());
}

/// SplitMix64: tiny, fast, and good enough to spread test inputs; fixed so inputs never
/// change between runs or Burn versions.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, 1)` with 24 random bits (exactly representable in f32).
    pub fn next_unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// f32 data of `shape` drawn uniformly from `[low, high)`, fixed by `seed`.
pub fn uniform<const D: usize>(shape: [usize; D], seed: u64, low: f32, high: f32) -> TensorData {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| low + (high - low) * rng.next_unit()).collect();
    TensorData::new(values, shape)
}

/// i64 data of `shape` drawn uniformly from `low..high`, fixed by `seed`.
///
/// `Tensor::from_data` converts it to the backend's int dtype.
pub fn ints<const D: usize>(shape: [usize; D], seed: u64, low: i64, high: i64) -> TensorData {
    assert!(low < high, "empty range {low}..{high}");
    let mut rng = SplitMix64::new(seed);
    let span = (high - low) as u64;
    let n = shape.iter().product();
    let values: Vec<i64> = (0..n).map(|_| low + (rng.next_u64() % span) as i64).collect();
    TensorData::new(values, shape)
}

/// Bool data of `shape`, each element true with probability one half, fixed by `seed`.
pub fn bools<const D: usize>(shape: [usize; D], seed: u64) -> TensorData {
    let mut rng = SplitMix64::new(seed);
    let n = shape.iter().product();
    let values: Vec<bool> = (0..n).map(|_| rng.next_u64() & 1 == 1).collect();
    TensorData::new(values, shape)
}

/// A float tensor on `B` with [`uniform`] values, in the device's default float dtype.
pub fn float_tensor<B: Backend, const D: usize>(device: &B::Device, shape: [usize; D], seed: u64, low: f32, high: f32) -> Tensor<B, D> {
    Tensor::from_data(uniform(shape, seed, low, high), device)
}

/// An int tensor on `B` with [`ints`] values, in the device's default int dtype.
pub fn int_tensor<B: Backend, const D: usize>(device: &B::Device, shape: [usize; D], seed: u64, low: i64, high: i64) -> Tensor<B, D, Int> {
    Tensor::from_data(ints(shape, seed, low, high), device)
}

/// A bool tensor on `B` with [`bools`] values.
pub fn bool_tensor<B: Backend, const D: usize>(device: &B::Device, shape: [usize; D], seed: u64) -> Tensor<B, D, Bool> {
    Tensor::from_data(bools(shape, seed), device)
}

/// Moves a tensor from `B` to `Mixed<B>` through its data, on the same device and in the
/// same dtype; the result holds exactly the same bytes.
pub fn to_mixed<B, const D: usize, K>(tensor: Tensor<B, D, K>) -> Tensor<Mixed<B>, D, K>
where
    B: Backend,
    K: BasicOps<B> + BasicOps<Mixed<B>>,
{
    let device = tensor.device();
    let data = tensor.into_data();
    let dtype = data.dtype;
    Tensor::from_data(data, (&device, dtype))
}

/// Moves a tensor from `Mixed<B>` back to `B`; see [`to_mixed`].
pub fn from_mixed<B, const D: usize, K>(tensor: Tensor<Mixed<B>, D, K>) -> Tensor<B, D, K>
where
    B: Backend,
    K: BasicOps<B> + BasicOps<Mixed<B>>,
{
    let device = tensor.device();
    let data = tensor.into_data();
    let dtype = data.dtype;
    Tensor::from_data(data, (&device, dtype))
}

/// The backend primitive of a float tensor, to call a backend op directly (one the
/// `Tensor` API does not reach, such as `float_powi` with an int exponent).
pub fn float_primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// Wraps a float primitive returned by a backend op back into a `Tensor`.
pub fn from_float_primitive<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

static RNG_LOCK: Mutex<()> = Mutex::new(());

/// Serialises use of the backends' global RNG across test threads.
///
/// Hold the guard from `B::seed` until the last random draw that must follow from that
/// seed (random tensors, module initialisers, dropout). A test that panicked while holding
/// it does not poison it for the others.
pub fn rng_lock() -> MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Labelled results of one run of a scenario, in the order they were recorded.
#[derive(Debug, Default)]
pub struct Outputs {
    entries: Vec<(String, TensorData)>,
}

impl Outputs {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `tensor` back and records it under `label`.
    pub fn push<B: Backend, const D: usize, K: BasicOps<B>>(&mut self, label: impl Into<String>, tensor: Tensor<B, D, K>) {
        self.push_data(label, tensor.into_data());
    }

    /// Records already-read data under `label`.
    pub fn push_data(&mut self, label: impl Into<String>, data: TensorData) {
        self.entries.push((label.into(), data));
    }

    /// Records a plain value (a flag, a count) as a one-element tensor, so that it is
    /// compared like any other output.
    pub fn push_value(&mut self, label: impl Into<String>, value: i64) {
        self.push_data(label, TensorData::new(vec![value], [1]));
    }

    /// How many outputs were recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The recorded labels, in order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(label, _)| label.as_str())
    }
}

/// Asserts that two runs recorded the same labels in the same order, and bitwise-equal
/// data under each.
pub fn assert_outputs_eq(got: Outputs, want: Outputs) {
    assert_same_labels(&got, &want);
    for ((label, g), (_, w)) in got.entries.into_iter().zip(want.entries) {
        assert_bitwise_eq(&label, g, w);
    }
}

fn assert_same_labels(got: &Outputs, want: &Outputs) {
    let got_labels: Vec<_> = got.labels().collect();
    let want_labels: Vec<_> = want.labels().collect();
    assert_eq!(got_labels, want_labels, "the two runs recorded different outputs");
}

/// [`assert_equivalent`] for the usual case: `equivalent!(family, device, run::<B>(args))`
/// runs `run::<B>(device, out, args)` and `run::<Mixed<B>>(device, out, args)` and compares
/// them. Scenarios that compose several runs, or compare other layerings, call
/// [`assert_equivalent`] with their own closures.
macro_rules! equivalent {
    ($family:expr, $device:expr, $run:ident::<$bare:ty>($($arg:expr),* $(,)?)) => {
        $crate::support::assert_equivalent::<$bare>(
            $family,
            $device,
            |device, out| $run::<$bare>(device, out $(, $arg)*),
            |device, out| $run::<burn_mixed::Mixed<$bare>>(device, out $(, $arg)*),
        )
    };
}
pub(crate) use equivalent;

/// At most how many extra runs of the bare scenario [`assert_equivalent`] makes, on a
/// mismatch, to tell a forwarding bug from a kernel that is not deterministic run to run.
const BARE_RERUNS: usize = 12;

/// How many bare runs in all (the first and its reruns) measure a nondeterministic output's
/// run-to-run spread before `Mixed` is judged against it.
const SPREAD_RUNS: usize = 5;

/// At most how many runs of the `Mixed` scenario [`assert_equivalent`] judges, for an
/// output that differs from every bare run.
const MIXED_RUNS: usize = 4;

/// The values of a float output, widened to f64 (for the spread of nondeterministic
/// kernels); `None` for int and bool outputs, which are only ever compared bitwise.
fn float_values(data: &TensorData) -> Option<Vec<f64>> {
    matches!(data.dtype, DType::F64 | DType::F32 | DType::Flex32 | DType::F16 | DType::BF16)
        .then(|| data.clone().convert::<f64>().to_vec::<f64>().expect("float data converts to f64"))
}

/// How one output of `Mixed` compares with the bare backend's runs of it.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Bitwise equal to one of the bare runs.
    Bitwise,
    /// The bare runs differ among themselves by up to `spread` (the largest elementwise
    /// difference between two of them), and `Mixed` lies within `spread` of their range
    /// (at most `distance` outside it) everywhere.
    WithinSpread { spread: f64, distance: f64 },
    /// Not equivalent: what differs.
    Differs(String),
}

/// Judges `got` against the bare runs `bare` (at least one) of the same output.
fn judge(got: &TensorData, bare: &[TensorData]) -> Verdict {
    if bare.iter().any(|b| bitwise_diff(got, b).is_ok()) {
        return Verdict::Bitwise;
    }
    let deterministic = bare.iter().all(|b| bitwise_diff(b, &bare[0]).is_ok());
    let bitwise = || bitwise_diff(got, &bare[0]).expect_err("checked above");
    if deterministic {
        return Verdict::Differs(format!("{} (every one of {} bare runs gave the same bytes)", bitwise(), bare.len()));
    }
    if got.dtype != bare[0].dtype || got.shape != bare[0].shape {
        return Verdict::Differs(bitwise());
    }
    let (Some(got), Some(runs)) = (float_values(got), bare.iter().map(float_values).collect::<Option<Vec<_>>>()) else {
        return Verdict::Differs(format!("{} (a non-float output that changes run to run)", bitwise()));
    };
    let mut spread = 0f64;
    let mut distance = 0f64;
    for (i, value) in got.iter().enumerate() {
        let column = runs.iter().map(|run| run[i]);
        let nan = column.clone().filter(|v| v.is_nan()).count();
        if nan > 0 || value.is_nan() {
            // NaN where every bare run has one is the same result; anywhere else it is not.
            if nan == runs.len() && value.is_nan() {
                continue;
            }
            return Verdict::Differs(format!("NaN at element {i} in only some of the runs ({}, bare runs)", value));
        }
        let (low, high) = column.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        spread = spread.max(high - low);
        distance = distance.max(low - value).max(value - high);
    }
    match distance <= spread {
        true => Verdict::WithinSpread { spread, distance },
        false => Verdict::Differs(format!(
            "{}: {distance:e} outside the range of {} bare runs, whose own run-to-run spread is {spread:e}",
            bitwise(),
            runs.len()
        )),
    }
}

/// Runs a scenario (test code written once as a function generic over the backend, which
/// records its results in an [`Outputs`]) on the bare backend and on `Mixed`, asserts that
/// every output is equivalent, and returns how many outputs were compared.
///
/// Pass the same function instantiated twice, `run::<B>` and `run::<Mixed<B>>` (or two
/// closures calling them; [`equivalent!`] writes that pair). `family` names the test in the
/// summary line printed on success.
///
/// Equivalent means bitwise equal, except where the bare backend itself is not
/// deterministic (float atomics accumulate in whatever order the threads run, e.g. Wgpu's
/// deform_conv2d input gradient). So on a mismatch the bare scenario runs again, up to
/// [`BARE_RERUNS`] times, and each differing output is judged against all its bare runs:
/// - bitwise equal to one of them: equivalent;
/// - every bare run gave the same bytes (the bare backend is deterministic there) and
///   `Mixed`'s differ in each of up to [`MIXED_RUNS`] runs: the test fails, however small
///   the difference;
/// - the bare runs differ among themselves (measured over at least [`SPREAD_RUNS`] runs,
///   and on while `Mixed` lies outside their spread): `Mixed` is equivalent when no element
///   of it lies further outside the bare runs' range than their run-to-run spread (the
///   largest elementwise difference between two bare runs), in one of up to [`MIXED_RUNS`]
///   runs of its own, and the test fails otherwise.
pub fn assert_equivalent<B: Backend>(
    family: &str,
    device: &B::Device,
    bare: impl Fn(&B::Device, &mut Outputs),
    mixed: impl Fn(&B::Device, &mut Outputs),
) -> usize {
    let name = B::name(device);
    let mut want = Outputs::new();
    bare(device, &mut want);
    let mut got = Outputs::new();
    mixed(device, &mut got);
    assert!(!want.is_empty(), "{family}: the scenario recorded nothing");
    assert_same_labels(&got, &want);

    // The bare runs of each output that differs from Mixed's, first run first.
    let mut differing: Vec<(usize, Vec<TensorData>)> = (0..want.len())
        .filter(|&i| bitwise_diff(&got.entries[i].1, &want.entries[i].1).is_err())
        .map(|i| (i, vec![want.entries[i].1.clone()]))
        .collect();
    // Rerun while an output is unresolved: not matched by a bare run, and either not yet
    // measured over SPREAD_RUNS runs or still outside the bare runs' spread (a spread seen
    // over a few runs understates a kernel whose float atomics add in a different order
    // each run: observed once in 8 runs on Wgpu's deform_conv2d input gradient).
    let unresolved = |(i, runs): &(usize, Vec<TensorData>)| match judge(&got.entries[*i].1, runs) {
        Verdict::Bitwise => false,
        Verdict::WithinSpread { .. } => runs.len() < SPREAD_RUNS,
        Verdict::Differs(_) => true,
    };
    for _ in 0..BARE_RERUNS {
        if !differing.iter().any(unresolved) {
            break;
        }
        let mut again = Outputs::new();
        bare(device, &mut again);
        assert_same_labels(&again, &want);
        for (i, runs) in &mut differing {
            runs.push(again.entries[*i].1.clone());
        }
    }
    // Mixed runs the same kernels: a nondeterministic one can land, in one sample, in a tail
    // the bare samples did not reach (seen on Wgpu's deform_conv2d input gradient: 2 ulps
    // outside 13 varying bare runs, and once differing from 13 bare runs that happened to
    // agree). So an output still judged different is computed by Mixed again, up to
    // MIXED_RUNS times in all, and judged on its latest sample by the same rules; a
    // forwarding bug differs in every sample and still fails.
    for _ in 1..MIXED_RUNS {
        let outside: Vec<usize> =
            differing.iter().filter(|(i, runs)| matches!(judge(&got.entries[*i].1, runs), Verdict::Differs(_))).map(|(i, _)| *i).collect();
        if outside.is_empty() {
            break;
        }
        let mut again = Outputs::new();
        mixed(device, &mut again);
        assert_same_labels(&again, &want);
        for i in outside {
            got.entries[i].1 = again.entries[i].1.clone();
        }
    }
    let mut within_spread = 0;
    for (i, runs) in differing {
        let label = &want.entries[i].0;
        match judge(&got.entries[i].1, &runs) {
            Verdict::Bitwise => {}
            Verdict::WithinSpread { spread, distance } => {
                println!(
                    "{family} on {name}: `{label}` within the bare backend's run-to-run spread ({spread:e} over {} \
                     runs; Mixed {distance:e} outside their range)",
                    runs.len()
                );
                within_spread += 1;
            }
            Verdict::Differs(why) => panic!("{family} on {name}: `{label}`: {why}"),
        }
    }
    let count = want.len();
    println!(
        "{family} on {name}: {count} outputs equivalent ({} bitwise equal, {within_spread} within the bare spread)",
        count - within_spread
    );
    count
}

/// The float dtypes `B` computes in on `device` (storage and arithmetic), widest first.
pub fn supported_float_dtypes<B: Backend>(device: &B::Device) -> Vec<FloatDType> {
    [FloatDType::F64, FloatDType::F32, FloatDType::F16, FloatDType::BF16]
        .into_iter()
        .filter(|dtype| B::supports_dtype(device, DType::from(*dtype)))
        .collect()
}

/// The int dtypes `B` computes in on `device`, widest first.
pub fn supported_int_dtypes<B: Backend>(device: &B::Device) -> Vec<IntDType> {
    [IntDType::I64, IntDType::I32, IntDType::I16, IntDType::I8, IntDType::U8]
        .into_iter()
        .filter(|dtype| B::supports_dtype(device, DType::from(*dtype)))
        .collect()
}

/// Runs `f` and reports whether it panicked, with the panic message. Meant for probing
/// the *bare* backend for an unsupported feature before testing `Mixed` on it.
pub fn probe<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "non-string panic payload".to_owned())
    })
}

/// Whether the *bare* backend runs `op` without panicking. Use it, before a comparison,
/// for an op some backends leave unimplemented; when it panics, this prints why the op is
/// skipped on this backend and returns false.
pub fn bare_supports<B: Backend, R>(device: &B::Device, op: &str, run: impl FnOnce() -> R) -> bool {
    match probe(run) {
        Ok(_) => true,
        Err(reason) => {
            println!("skipping {op} on {}: the bare backend panics: {reason}", B::name(device));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_in_range() {
        assert_eq!(uniform([3, 4], 9, -1.0, 1.0), uniform([3, 4], 9, -1.0, 1.0));
        assert_ne!(uniform([3, 4], 9, -1.0, 1.0), uniform([3, 4], 10, -1.0, 1.0));
        let values = uniform([64], 1, -2.0, 3.0).to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| (-2.0..3.0).contains(v)));
        let values = ints([64], 1, -3, 4).to_vec::<i64>().unwrap();
        assert!(values.iter().all(|v| (-3..4).contains(v)));
        assert!(values.contains(&-3) && values.contains(&3));
        let flags = bools([64], 2).to_vec::<bool>().unwrap();
        assert!(flags.contains(&true) && flags.contains(&false));
    }

    /// A scenario that records one value per run, taken from `values` in turn.
    fn replay(values: &[f32]) -> impl Fn(&(), &mut Outputs) + '_ {
        let run = std::cell::Cell::new(0);
        move |_: &(), out: &mut Outputs| {
            let value = values[run.get().min(values.len() - 1)];
            run.set(run.get() + 1);
            out.push_data("value", TensorData::new(vec![value], [1]));
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn equivalence_tells_forwarding_bugs_from_nondeterministic_kernels() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let equivalent = |bare: &[f32], mixed: f32| {
            let bare = replay(bare);
            probe(|| assert_equivalent::<B>("replay", &device, |_, out| bare(&(), out), |_, out| replay(&[mixed])(&(), out)))
        };
        let ulp = |v: f32, n: u32| f32::from_bits(v.to_bits() + n);
        assert_eq!(equivalent(&[1.0], 1.0), Ok(1), "identical");
        assert!(equivalent(&[1.0], ulp(1.0, 1)).is_err(), "deterministic bare, Mixed one ulp off");
        assert_eq!(equivalent(&[1.0, 2.0], 2.0), Ok(1), "Mixed matches a bare rerun");
        // Bare runs 1.0 and 2.0 (spread 1.0): 3.0 is 1.0 outside their range, 3.5 is 1.5.
        assert_eq!(equivalent(&[1.0, 2.0], 3.0), Ok(1), "within the bare spread");
        assert!(equivalent(&[1.0, 2.0], 3.5).is_err(), "beyond the bare spread");
        // A kernel that looks deterministic for a few runs is rerun until it shows it is not.
        let late = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, ulp(1.0, 1)];
        assert_eq!(equivalent(&late, ulp(1.0, 2)), Ok(1), "nondeterminism seen on the 7th run");
        assert!(equivalent(&late, ulp(1.0, 3)).is_err(), "two ulps outside a one-ulp spread");
    }

    #[test]
    fn judging_nondeterministic_outputs() {
        let data = |v: &[f32]| TensorData::new(v.to_vec(), [v.len()]);
        let runs = [data(&[1.0, 10.0]), data(&[1.5, 10.0])];
        // The spread is the largest elementwise difference among bare runs (0.5, element 0),
        // and it applies to every element.
        assert_eq!(judge(&data(&[1.0, 10.5]), &runs), Verdict::WithinSpread { spread: 0.5, distance: 0.5 });
        assert!(matches!(judge(&data(&[1.0, 10.6]), &runs), Verdict::Differs(_)));
        assert!(matches!(judge(&data(&[f32::NAN, 10.0]), &runs), Verdict::Differs(_)));
        let f64_runs = [TensorData::new(vec![1.0f64], [1]), TensorData::new(vec![2.0f64], [1])];
        assert!(matches!(judge(&data(&[1.0]), &f64_runs), Verdict::Differs(_)), "dtype changed");
        let ints = [TensorData::new(vec![1i64], [1]), TensorData::new(vec![2i64], [1])];
        assert!(matches!(judge(&TensorData::new(vec![3i64], [1]), &ints), Verdict::Differs(_)), "ints are bitwise only");
    }

    #[test]
    fn bitwise_comparison_catches_one_ulp_and_dtype() {
        let a = TensorData::new(vec![1.0f32, 2.0], [2]);
        assert_bitwise_eq("same", a.clone(), a.clone());
        let b = TensorData::new(vec![1.0f32, f32::from_bits(2.0f32.to_bits() + 1)], [2]);
        assert!(probe(|| assert_bitwise_eq("ulp", a.clone(), b)).is_err());
        let c = TensorData::new(vec![1.0f64, 2.0], [2]);
        assert!(probe(|| assert_bitwise_eq("dtype", a.clone(), c)).is_err());
        let d = TensorData::new(vec![1.0f32, 2.0], [1, 2]);
        assert!(probe(|| assert_bitwise_eq("shape", a, d)).is_err());
    }
}
