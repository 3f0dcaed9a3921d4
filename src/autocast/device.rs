//! Per-device default autocast dtype: what ops on a device run in outside any region.
//!
//! `MixedPrecision::setup` registers the precision's dtype for the training device, so a
//! user's unchanged forward pass (and burn-train's training step) runs under autocast
//! without opening a region. Regions still win: a disabled region (the optimizer step)
//! turns it off, an enabled one overrides the dtype.

use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;

use crate::device_map::{DeviceMap, device_key};

static DEFAULTS: DeviceMap<FloatDType> = DeviceMap::new();

/// Sets (or with `None` clears) the default autocast dtype of `device`.
///
/// Unchecked: callers check the backend's dtype support first (`check_dtype`).
pub fn set_device_autocast<B: Backend>(device: &B::Device, dtype: Option<FloatDType>) {
    DEFAULTS.set(&[device_key::<B>(device)], dtype);
}

/// The default autocast dtype of `device`, if one was set.
pub fn device_autocast<B: Backend>(device: &B::Device) -> Option<FloatDType> {
    DEFAULTS.get(|| device_key::<B>(device))
}

/// The default of the device `device()` returns; the device is only computed when some
/// device has a default, so the hot path of plain 32-true runs costs one atomic load.
#[inline]
pub(crate) fn lazy_device_autocast<B: Backend>(device: impl FnOnce() -> B::Device) -> Option<FloatDType> {
    DEFAULTS.get(|| device_key::<B>(&device()))
}
