//! How the loops split their work across rayon's threads, and the calling thread's place
//! among them ([`join_host_pool`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The smallest share of work one thread takes.
const BLOCK: usize = 1024;
/// Below this many elements one thread does it all.
const PARALLEL_FROM: usize = 1 << 15;

/// How many of `len` elements each thread takes.
pub(crate) fn chunk_len(len: usize) -> usize {
    if len >= PARALLEL_FROM { len.div_ceil(rayon::current_num_threads()).max(BLOCK) } else { len.max(1) }
}

/// Rows of `n` elements each thread takes: an equal share, at least about 2^14 elements
/// (row kernels: softmax, layer norm).
pub(crate) fn rows_per_task(rows: usize, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows.div_ceil(threads).max((1 << 14) / n.max(1)).max(1)
}

/// Whether a reduction over `elements` values is worth splitting into bands across threads.
pub(crate) fn splits(elements: usize) -> bool {
    elements >= PARALLEL_FROM
}

/// Why [`join_host_pool`] could not make the calling thread one of the pool's.
#[derive(Debug)]
pub struct HostPoolError(rayon::ThreadPoolBuildError);

impl std::fmt::Display for HostPoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rayon's global thread pool is already running ({}): join_host_pool must be called before the first \
             tensor op or rayon call of the process (first thing in main); the ops run as before",
            self.0
        )
    }
}

impl std::error::Error for HostPoolError {}

/// Makes the calling thread the first thread of rayon's global pool, the pool Flex and the
/// host kernels split their work on (`RAYON_NUM_THREADS`, by default one thread per
/// core, this one included), and keeps the pool's other threads awake between the host
/// kernels.
///
/// A parallel op called from a thread outside the pool hands all of its work to the pool
/// and sleeps until the pool is done; and rayon's threads go to sleep as soon as they
/// find no work, so each op also waits for one to wake. Each wake-up takes tens of
/// microseconds, and an op of a training step hundreds. After this call:
///
/// - an op called from this thread starts at once, and the other threads join in (the
///   threading of PyTorch's OpenMP, whose calling thread is thread 0);
/// - after each host kernel, the other threads wait for the next op spinning, for up to
///   [`AWAKE_FOR`] without work, before they go back to rayon's sleep (OpenMP's active
///   wait): while a training step runs, every core stays busy.
///
/// Results do not change: the work is split the same way.
///
/// Call it once, first thing in `main`, on the thread that runs the training loop (with
/// burn-train, the thread that calls `launch` on one device).
///
/// # Errors
/// [`HostPoolError`] when rayon's global pool has already started (an earlier op, or
/// an earlier call). Nothing changes then: the ops keep running on that pool.
pub fn join_host_pool() -> Result<(), HostPoolError> {
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global().map_err(HostPoolError)?;
    KEEP_AWAKE.store(true, Ordering::Release);
    Ok(())
}

/// How long the pool's other threads spin without work after a host kernel
/// ([`join_host_pool`]). The gaps between a step's kernels are tens of microseconds;
/// longer or shorter (0.1 to 2 ms) made no difference to the steps of `benches/step.rs`.
pub const AWAKE_FOR: Duration = Duration::from_micros(500);

/// Whether the pool's other threads are kept awake ([`join_host_pool`] succeeded).
static KEEP_AWAKE: AtomicBool = AtomicBool::new(false);
/// How many of them are in [`serve_until_idle`] now.
static AWAKE: AtomicUsize = AtomicUsize::new(0);

/// After a host kernel: wakes the pool's other threads into [`serve_until_idle`] unless
/// they are still in it, where [`join_host_pool`] asked for it.
pub(crate) fn keep_pool_awake() {
    // Every host kernel passes here: without `join_host_pool`, one atomic load.
    if !KEEP_AWAKE.load(Ordering::Acquire) {
        return;
    }
    let others = rayon::current_num_threads() - 1;
    if others == 0 || AWAKE.compare_exchange(0, others, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    // A broadcast job waits in each thread's own queue (the calling thread, index 0,
    // cannot take another's) and starts at once on an idle thread. None is sent while one
    // runs: a thread in `serve_until_idle` would run the next one inside it.
    rayon::spawn_broadcast(|context| {
        if context.index() != 0 {
            serve_until_idle(AWAKE_FOR);
            AWAKE.fetch_sub(1, Ordering::AcqRel);
        }
    });
}

/// Runs the pool's pending jobs (its threads' queues and the global one) as they come,
/// spinning in between, until none came for `idle`; returns how many ran.
fn serve_until_idle(idle: Duration) -> usize {
    let (mut ran, mut idle_since) = (0, Instant::now());
    loop {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => {
                ran += 1;
                idle_since = Instant::now();
            }
            _ if idle_since.elapsed() >= idle => return ran,
            _ => std::hint::spin_loop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_a_running_pool_is_an_error_that_says_when_to_call() {
        // Starts the global pool if no other test has yet.
        rayon::join(|| (), || ());
        let message = join_host_pool().expect_err("the pool is running").to_string();
        assert!(message.starts_with("rayon's global thread pool is already running ("), "{message}");
        assert!(message.contains("before the first tensor op or rayon call"), "{message}");
        // The ops keep running on the pool as it is.
        let (a, b) = rayon::join(|| 1, || 2);
        assert_eq!((a, b), (1, 2));
    }

    #[test]
    fn an_awake_thread_runs_the_jobs_of_the_calling_thread_then_stops_when_idle() {
        // A pool of its own, with this thread as its first (the global one is shared with
        // the other tests).
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).use_current_thread().build().expect("a local pool");
        let (sender, ran) = std::sync::mpsc::channel();
        pool.spawn_broadcast(move |context| {
            if context.index() == 1 {
                sender.send(serve_until_idle(Duration::from_millis(100))).expect("the test waits");
            }
        });
        // While this thread sleeps, the other half of the join waits in its queue: only the
        // awake thread can run it, and does, on thread 1.
        let (_, other) = pool.install(|| rayon::join(|| std::thread::sleep(Duration::from_millis(50)), rayon::current_thread_index));
        assert_eq!(other, Some(1));
        let ran = ran.recv_timeout(Duration::from_secs(30)).expect("the awake thread stops after 100 ms without work");
        assert!(ran >= 1, "the awake thread ran {ran} jobs");
    }
}
