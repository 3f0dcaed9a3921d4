//! Whether a GPU backend has a device here, asked before anything else touches it: Wgpu
//! and Cuda panic (on a runtime thread, then on the caller's) when they find no adapter or
//! driver. The training example turns a missing one into exit code 2 and a message; the
//! inference example falls back to the CPU.

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

/// `Ok` when `B` runs a tensor op on `device`; otherwise why not, in the backend's words.
/// The panics are caught, and kept off stderr (panic messages and the runtime's log lines
/// alike) while the probe runs.
pub fn probe<B: Backend>(device: &B::Device) -> Result<(), String> {
    let quiet_panics = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let log_level = log::max_level();
    log::set_max_level(log::LevelFilter::Off);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Tensor::<B, 1>::from_floats([1.0, 2.0], device).sum().into_scalar().elem::<f32>()
    }));
    log::set_max_level(log_level);
    std::panic::set_hook(quiet_panics);
    match result {
        Ok(3.0) => Ok(()),
        Ok(sum) => Err(format!("a test sum gave {sum} instead of 3")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "device creation panicked".into())),
    }
}

/// What to do about a failed [`probe`] of `backend` (the `--backend` value).
pub fn advice(backend: &str) -> &'static str {
    match backend {
        "wgpu" => {
            "wgpu found no GPU adapter (no GPU, or no Vulkan driver for it). Without a GPU, install \
             Mesa's software Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`), or \
             train on the CPU with --backend flex"
        }
        "cuda" => {
            "cuda found no usable NVIDIA GPU (no GPU, or no NVIDIA driver: libcuda.so). Install the \
             NVIDIA driver, or use --backend wgpu (any GPU with Vulkan) or --backend flex (the CPU)"
        }
        _ => "use --backend flex (the CPU)",
    }
}

/// [`probe`], as the message a user sees when it fails.
pub fn check<B: Backend>(backend: &str, device: &B::Device) -> Result<(), String> {
    probe::<B>(device).map_err(|why| format!("backend {backend}: {}.\n  ({backend} said: {})", advice(backend), why.trim()))
}
