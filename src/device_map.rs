//! A small process-wide map from devices to a setting, read on hot paths.
//!
//! Used for the per-device autocast default and the per-device loss scale. Process-wide
//! because burn-train may run training steps on worker threads; keyed by the device's type
//! and id so that `Mixed<Autodiff<B>>` and `Mixed<B>` on one device share an entry.

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use burn::tensor::backend::{Backend, DeviceId, DeviceOps};

/// A device, as the maps key it.
pub(crate) type DeviceKey = (&'static str, DeviceId);

pub(crate) fn device_key<B: Backend>(device: &B::Device) -> DeviceKey {
    (core::any::type_name::<B::Device>(), device.id())
}

pub(crate) struct DeviceMap<T: Copy> {
    /// Lets readers skip the lock (and computing a key) while the map is empty.
    any: AtomicBool,
    entries: RwLock<Vec<(DeviceKey, T)>>,
}

impl<T: Copy> DeviceMap<T> {
    pub(crate) const fn new() -> Self {
        Self { any: AtomicBool::new(false), entries: RwLock::new(Vec::new()) }
    }

    /// Sets (`Some`) or removes (`None`) the value of every device in `keys`.
    pub(crate) fn set(&self, keys: &[DeviceKey], value: Option<T>) {
        // Writes are whole-entry replacements, so a poisoned lock still holds valid data.
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|(k, _)| !keys.contains(k));
        if let Some(value) = value {
            entries.extend(keys.iter().map(|k| (*k, value)));
        }
        self.any.store(!entries.is_empty(), Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// The value for the device `key()` names; `key` runs only when the map is not empty.
    #[inline]
    pub(crate) fn get(&self, key: impl FnOnce() -> DeviceKey) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        let key = key();
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}
