//! Whether the host fast path runs (a process-wide switch, a scoped one per thread, and the
//! environment), and how many times each kernel ran: for comparison, debugging and tests.

use core::cell::Cell;
use core::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that turns the host fast path off when set to `0`.
pub const HOST_KERNELS_ENV: &str = "MIXED_HOST_KERNELS";
/// The environment variable that, set to `0`, keeps the host fast path but runs its
/// element-wise loops without AVX-512 (as on a CPU without it); set to `avx512`, with
/// AVX-512 but without its bf16 conversion instruction; set to `avx512bf16`, without AMX's
/// tiles for bf16 products (read once per process; see `HostIsa`).
pub const HOST_LANES_ENV: &str = "MIXED_HOST_LANES";

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

static SWITCH: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    /// A scoped override on this thread ([`with_host_kernels`]); `UNSET` defers to the
    /// process-wide switch.
    static THREAD_SWITCH: Cell<u8> = const { Cell::new(UNSET) };
}

/// Turns the host fast path on or off for the whole process (overrides the environment).
pub fn set_host_kernels(enabled: bool) {
    SWITCH.store(if enabled { ON } else { OFF }, Ordering::Relaxed);
}

/// Runs `f` with the host fast path on or off on this thread only, whatever the process
/// setting (e.g. to compare both paths side by side in one process).
pub fn with_host_kernels<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_SWITCH.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(THREAD_SWITCH.with(|s| s.replace(if enabled { ON } else { OFF })));
    f()
}

/// Whether the host fast path is on for this thread: [`with_host_kernels`], else
/// [`set_host_kernels`], else `MIXED_HOST_KERNELS` (`0` turns it off), else on.
pub fn host_kernels_enabled() -> bool {
    match THREAD_SWITCH.with(Cell::get) {
        ON => return true,
        OFF => return false,
        _ => {}
    }
    match SWITCH.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let enabled = std::env::var(HOST_KERNELS_ENV).map_or(true, |v| v.trim() != "0");
            // A racing `set_host_kernels` wins: only replace the unset state.
            let _ = SWITCH.compare_exchange(UNSET, if enabled { ON } else { OFF }, Ordering::Relaxed, Ordering::Relaxed);
            host_kernels_enabled()
        }
    }
}

/// How many times each host kernel ran on this thread (forward and backward passes alike)
/// since the last [`reset_host_kernel_calls`]: to check that a model takes the fast path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostKernelCalls {
    /// Products, batched or not (a linear layer's gradients included).
    pub matmul: u64,
    /// Linear layers' forward products (bias fused).
    pub linear: u64,
    /// Products (of `matmul` and `linear`) that ran on AMX tiles, where
    /// [`host_isa`](crate::kernels::host_isa) is `Amx`: bf16, and f16 split into bf16
    /// pairs unless an operand holds an infinity or NaN.
    pub tile_products: u64,
    /// Column sums: a linear layer's bias gradient.
    pub sum_to_last: u64,
    /// Relu forward.
    pub relu: u64,
    /// Relu backward.
    pub relu_backward: u64,
    /// Gelu forward.
    pub gelu: u64,
    /// Gelu backward.
    pub gelu_backward: u64,
    /// 2-d convolutions' forward.
    pub conv2d: u64,
    /// 2-d convolutions' input and weight gradients.
    pub conv2d_backward: u64,
    /// 2-d convolutions (forward, input or weight gradient) that ran on AMX tiles: bf16,
    /// and f16 split into bf16 pairs unless an operand holds an infinity or NaN; groups of
    /// 1, where [`host_isa`](crate::kernels::host_isa) is `Amx`.
    pub tile_convs: u64,
    /// 2-d average poolings' forward and backward.
    pub avg_pool2d: u64,
    /// Casts between f32 and f16/bf16.
    pub cast: u64,
    /// Element-wise add and mul.
    pub binary: u64,
    /// Attention's softmax (f32 scores to half probabilities).
    pub softmax: u64,
    /// Attention's softmax backward.
    pub softmax_backward: u64,
    /// Layer norm forward (under the -true precisions).
    pub layer_norm: u64,
    /// Layer norm backward.
    pub layer_norm_backward: u64,
}

thread_local! {
    static CALLS: Cell<HostKernelCalls> = const {
        Cell::new(HostKernelCalls {
            matmul: 0, linear: 0, tile_products: 0, sum_to_last: 0, relu: 0, relu_backward: 0, gelu: 0, gelu_backward: 0, conv2d: 0,
            conv2d_backward: 0, tile_convs: 0, avg_pool2d: 0, cast: 0, binary: 0, softmax: 0, softmax_backward: 0,
            layer_norm: 0, layer_norm_backward: 0,
        })
    };
}

/// This thread's kernel call counts.
pub fn host_kernel_calls() -> HostKernelCalls {
    CALLS.with(Cell::get)
}

/// Sets this thread's kernel call counts to zero.
pub fn reset_host_kernel_calls() {
    CALLS.with(|c| c.set(HostKernelCalls::default()));
}

/// Counts one run of a kernel (called by the backend implementations when they take a
/// case).
#[cfg(feature = "flex")]
pub(crate) fn count(which: impl FnOnce(&mut HostKernelCalls) -> &mut u64) {
    // Every kernel that runs passes here: the one place that keeps the pool awake between
    // kernels.
    crate::kernels::cpu::threads::keep_pool_awake();
    CALLS.with(|c| {
        let mut calls = c.get();
        *which(&mut calls) += 1;
        c.set(calls);
    });
}

/// What a bf16 step on this CPU's host kernels loses to 32-true, if it does: without
/// AVX-512 there are no bf16 instructions, its products run on f32 copies of the operands,
/// and the MLP step of `benches/step.rs` measured 1.00-1.04x 32-true's time (with
/// `MIXED_HOST_LANES=0 GEMMKIT_REQUIRE_ISA=fma`, 2026-12-05). With AVX-512 and no bf16
/// instructions it measured 0.66-0.69x, with AVX512-BF16 0.72x and with AMX 0.18-0.21x.
#[cfg(feature = "flex")]
pub(crate) fn bf16_slowdown(isa: crate::kernels::HostIsa) -> Option<String> {
    (isa < crate::kernels::HostIsa::Avx512).then(|| {
        format!(
            "bf16 is no faster than f32 on this CPU's host kernels (instruction set: {isa}; missing: AVX-512 \
             (avx512f, avx512bw, avx512vl) and AVX512-BF16, or {HOST_LANES_ENV} caps them): its bf16 \
             products run on f32 copies of the operands (the MLP step measured 1.00-1.04x 32-true's time). \
             Pick \"32-true\" for speed, or \"16-mixed\" to halve activation memory"
        )
    })
}

/// Logs [`bf16_slowdown`] for this process's CPU as a warning, once per process (setting
/// up a bf16 precision on Flex calls it).
#[cfg(feature = "flex")]
pub(crate) fn warn_if_bf16_is_slow() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if let Some(warning) = bf16_slowdown(crate::kernels::host_isa()) {
        ONCE.call_once(|| log::warn!("{warning}"));
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::bf16_slowdown;
    use crate::kernels::HostIsa;

    #[test]
    fn bf16_is_called_no_faster_only_without_avx512() {
        let warning = bf16_slowdown(HostIsa::Portable).expect("no AVX-512: no faster than f32");
        for part in ["portable", "avx512f", "AVX512-BF16", "MIXED_HOST_LANES", "\"16-mixed\"", "\"32-true\"", "1.00-1.04x"] {
            assert!(warning.contains(part), "{part:?} missing from: {warning}");
        }
        for isa in [HostIsa::Avx512, HostIsa::Avx512Bf16, HostIsa::Amx] {
            assert_eq!(bf16_slowdown(isa), None, "{isa}");
        }
    }
}
