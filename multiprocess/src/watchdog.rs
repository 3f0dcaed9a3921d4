//! A deadline on every wait for other processes. burn-collective waits without a limit: a
//! registration whose peers never come, or an all-reduce whose peer died, would block this
//! process forever. A thread watches the wait in progress and ends the process, with a
//! message naming the wait, when it passes its deadline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit status of a process ended by the watchdog.
pub const EXIT_TIMED_OUT: i32 = 3;

/// The wait in progress, if any: when it must end and what it is.
type Pending = Arc<Mutex<Option<(Instant, Duration, String)>>>;

pub struct Watchdog {
    pending: Pending,
}

impl Watchdog {
    /// Starts the watching thread; `who` prefixes its message (e.g. "node 1").
    pub fn start(who: String) -> Self {
        let pending: Pending = Arc::default();
        let watched = pending.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if let Some((deadline, limit, what)) = watched.lock().unwrap().as_ref()
                    && Instant::now() > *deadline
                {
                    eprintln!(
                        "{who}: {what} did not finish within {} s: a peer process has exited, hangs or cannot be reached; exiting",
                        limit.as_secs_f64()
                    );
                    std::process::exit(EXIT_TIMED_OUT);
                }
            }
        });
        Self { pending }
    }

    /// Runs `wait`, ending the process if it takes longer than `limit`.
    pub fn guard<R>(&self, what: impl Into<String>, limit: Duration, wait: impl FnOnce() -> R) -> R {
        *self.pending.lock().unwrap() = Some((Instant::now() + limit, limit, what.into()));
        let out = wait();
        *self.pending.lock().unwrap() = None;
        out
    }
}
