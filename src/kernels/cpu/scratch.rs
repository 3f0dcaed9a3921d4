//! Buffers a thread keeps from one kernel call to the next: a fresh allocation per call
//! costs its zeroing and page faults (a tenth of a small CNN's bf16 step). Each user
//! declares its own `thread_local!` buffers and borrows them through [`with_scratch`].

use std::cell::RefCell;
use std::thread::LocalKey;

/// Bytes a buffer keeps between calls; a larger one is freed after its call.
const KEEP_BYTES: usize = 4 << 20;

/// Runs `f` with this thread's buffer of `key`, or a fresh one while that one is in use
/// further up this thread's stack (a kernel waiting for its threads may run another).
/// What the buffer holds is left from earlier calls.
pub(crate) fn with_scratch<T, R>(key: &'static LocalKey<RefCell<Vec<T>>>, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let result = f(&mut buf);
            if buf.capacity() * size_of::<T>() > KEEP_BYTES {
                *buf = Vec::new();
            }
            result
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// The first `len` elements of `buf`, which grows to hold them (new elements as `fill`).
pub(crate) fn prefix<T: Copy>(buf: &mut Vec<T>, len: usize, fill: T) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, fill);
    }
    &mut buf[..len]
}
