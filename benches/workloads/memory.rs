//! Peak memory of a closure, as the backend's allocator sees it.
//!
//! Flex keeps tensors in host memory: a counting global allocator
//! (`support/counting_alloc.rs`, shared with the training example and installed by each
//! bench binary that includes this module) tracks live bytes and their high-water mark.
//! CubeCL backends (Wgpu, Cuda) allocate from device memory pools: their runtime reports the bytes
//! it has reserved. Pools keep freed pages until a cleanup, so after an explicit cleanup
//! the reservation grows to the step's high-water mark (rounded up to the pool's page
//! sizes) and stays there until the next cleanup.

#[path = "../../support/counting_alloc.rs"]
mod counting_alloc;

pub use counting_alloc::CountingAlloc;

/// Host bytes allocated by `f` at its peak, above what was live when it started.
pub fn host_peak(f: impl FnOnce()) -> u64 {
    CountingAlloc::peak_during(f).1 as u64
}

/// Device bytes reserved by `f` at its peak, above the reservation after a cleanup.
/// `sync` must wait for the device to finish `f`'s work.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn device_peak<R: burn::cubecl::Runtime>(device: &R::Device, sync: impl Fn(), f: impl FnOnce()) -> u64 {
    let reserved = || {
        sync();
        R::client(device).memory_usage().expect("the runtime reports its memory").bytes_reserved
    };
    R::client(device).memory_cleanup();
    let base = reserved();
    f();
    reserved().saturating_sub(base)
}
