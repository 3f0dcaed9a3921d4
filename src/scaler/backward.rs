//! The published loss scale per device, read by `Mixed`'s `AutodiffBackend::backward`.

use burn::tensor::backend::Backend;

use crate::device_map::{DeviceKey, DeviceMap, device_key};

static SCALES: DeviceMap<f32> = DeviceMap::new();

/// Sets (`Some`) or removes (`None`) the scale of every device in `devices`.
pub(crate) fn publish(devices: &[DeviceKey], scale: Option<f32>) {
    SCALES.set(devices, scale);
}

/// The scale a backward pass on `device` must multiply its loss by, if a scaler is
/// attached there. `device` is only computed when some scaler is attached somewhere.
pub(crate) fn active_loss_scale<B: Backend>(device: impl FnOnce() -> B::Device) -> Option<f32> {
    SCALES.get(|| device_key::<B>(&device()))
}
