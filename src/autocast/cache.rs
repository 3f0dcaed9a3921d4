//! Cast caching: inside autocast, the half copy of an f32 parameter is made once per
//! forward pass and reused, so a weight used in a loop (an RNN cell, a shared embedding,
//! weight tying) costs one cast kernel and one saved half tensor, not one per use.
//!
//! A cached cast must be the *same autodiff node* each time, so the cache keys on the
//! autodiff node id of a leaf that requires grad. Burn exposes no tensor identity for an
//! arbitrary backend, so the key is read from the autodiff tensor of the backends compiled
//! into this crate (`Autodiff<Flex | NdArray | Wgpu | Cuda>`); tensors of any other backend
//! are cast per use, which is correct, only slower.
//!
//! The cache belongs to the thread and is emptied when a forward pass ends (`backward`),
//! when the outermost autocast region closes, and before an optimizer step (after which
//! parameters are new leaves), so it never keeps stale tensors alive for long; it also
//! holds at most `CAPACITY` entries.

use core::any::Any;
use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicBool, Ordering};

#[allow(unused_imports)]
use burn::backend::Autodiff;
use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;

const CAPACITY: usize = 1024;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// A cached cast: the source tensor's key, the target dtype, and the cast tensor.
type Entry = (u64, FloatDType, Box<dyn Any>);

thread_local! {
    static ENTRIES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    static STATS: Cell<CastCacheStats> = const { Cell::new(CastCacheStats { hits: 0, misses: 0 }) };
}

/// Casts served from the cache (`hits`) and made and stored (`misses`) on this thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CastCacheStats {
    /// Casts answered with a tensor cast before.
    pub hits: u64,
    /// Casts made (and stored).
    pub misses: u64,
}

/// Turns cast caching on or off for the whole process (on by default).
pub fn set_cast_cache(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
    if !enabled {
        clear_cast_cache();
    }
}

/// This thread's cache counters since the last [`reset_cast_cache_stats`].
pub fn cast_cache_stats() -> CastCacheStats {
    STATS.with(Cell::get)
}

/// Sets this thread's cache counters to zero.
pub fn reset_cast_cache_stats() {
    STATS.with(|s| s.set(CastCacheStats::default()));
}

/// Empties this thread's cache.
pub fn clear_cast_cache() {
    ENTRIES.with(|e| e.borrow_mut().clear());
}

/// The autodiff node id of `tensor` if it is a leaf that requires grad on one of the
/// autodiff backends this crate knows.
fn leaf_id<B: Backend>(tensor: &FloatTensor<B>) -> Option<u64> {
    let any = tensor as &dyn Any;
    macro_rules! try_backends {
        ($($feature:literal => $backend:ty),*) => {$(
            #[cfg(feature = $feature)]
            if let Some(t) = any.downcast_ref::<FloatTensor<Autodiff<$backend>>>() {
                let leaf = t.node.parents.is_empty();
                return (leaf && <Autodiff<$backend> as burn::tensor::ops::FloatTensorOps<Autodiff<$backend>>>::float_is_require_grad(t)).then_some(t.node.id.value);
            }
        )*};
    }
    try_backends!(
        "flex" => burn::backend::Flex,
        "ndarray" => burn::backend::NdArray,
        "wgpu" => burn::backend::Wgpu,
        "cuda" => burn::backend::Cuda
    );
    let _ = any;
    None
}

/// The host kernel's cast where `B` has one (`crate::kernels`), else `B`'s.
fn cast_uncached<B: Backend>(tensor: FloatTensor<B>, dtype: FloatDType) -> FloatTensor<B> {
    crate::kernels::float_cast::<B>(tensor, dtype).unwrap_or_else(|(tensor, dtype)| B::float_cast(tensor, dtype))
}

/// `B::float_cast(tensor, dtype)`, served from the cache for parameters.
pub(crate) fn cast<B: Backend>(tensor: FloatTensor<B>, dtype: FloatDType) -> FloatTensor<B> {
    let key = match ENABLED.load(Ordering::Relaxed) {
        true => leaf_id::<B>(&tensor),
        false => None,
    };
    let Some(id) = key else {
        return cast_uncached::<B>(tensor, dtype);
    };
    let hit = ENTRIES.with(|e| {
        e.borrow().iter().find(|(i, d, _)| *i == id && *d == dtype).and_then(|(_, _, t)| t.downcast_ref::<FloatTensor<B>>().cloned())
    });
    let stats = cast_cache_stats();
    if let Some(cached) = hit {
        STATS.with(|s| s.set(CastCacheStats { hits: stats.hits + 1, ..stats }));
        return cached;
    }
    let cast = cast_uncached::<B>(tensor, dtype);
    STATS.with(|s| s.set(CastCacheStats { misses: stats.misses + 1, ..stats }));
    ENTRIES.with(|e| {
        let mut entries = e.borrow_mut();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.push((id, dtype, Box::new(cast.clone())));
    });
    cast
}
