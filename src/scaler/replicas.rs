//! One loss-scale update per step when several data-parallel replicas share a scaler.
//!
//! Under burn-train's DDP strategy every device thread holds a clone of the optimizer (and
//! so of its `GradScaler`) and steps it once per iteration. Without coordination each clone
//! would update the shared scale on its own: two devices would grow the scale twice as
//! fast, halve it twice on one overflow, and a device that reads `1/scale` after another
//! has already updated it would unscale its gradients by the wrong factor. The devices
//! would then diverge.
//!
//! A [`ReplicaGroup`] turns the N reports of one iteration into one round: every replica
//! reports its own overflow check and waits; the last to arrive (whichever device that is)
//! updates the scale once, from "any replica overflowed", and every replica leaves the
//! round with that same verdict. No replica can start its next backward pass before the
//! round is over, so none can see a scale the others did not use.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{ScalerCollapse, Verdict};

/// How long a replica waits for the others before it gives up: long enough for a slow
/// device's backward pass, short enough that a replica that never reports (a scaler on
/// some devices only) ends the run with a message instead of a silent hang.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub(crate) struct ReplicaGroup {
    round: Mutex<Round>,
    over: Condvar,
}

#[derive(Debug)]
struct Round {
    replicas: usize,
    timeout: Duration,
    /// Rounds completed so far; a waiter leaves when this moves past its own round.
    completed: u64,
    arrived: usize,
    found_inf: bool,
    /// The verdict of the last completed round, read by its waiters. Not overwritten before
    /// every waiter has read it: the next round cannot complete without them.
    outcome: Option<Result<Verdict, ScalerCollapse>>,
}

impl ReplicaGroup {
    pub(crate) fn new() -> Self {
        Self {
            round: Mutex::new(Round { replicas: 1, timeout: DEFAULT_TIMEOUT, completed: 0, arrived: 0, found_inf: false, outcome: None }),
            over: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // Every field is assigned whole; a panic elsewhere cannot leave a torn round.
        self.round.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn replicas(&self) -> usize {
        self.lock().replicas
    }

    /// Sets the number of members (before training: a round in progress keeps waiting
    /// for the new count).
    pub(crate) fn configure(&self, replicas: usize, timeout: Option<Duration>) {
        let mut round = self.lock();
        round.replicas = replicas;
        if let Some(timeout) = timeout {
            round.timeout = timeout;
        }
    }

    /// Reports one replica's overflow check. The last replica of the round calls `update`
    /// (once per round) with whether any replica overflowed; every replica returns its
    /// result. With one replica this is a plain call.
    pub(crate) fn arrive(
        &self,
        found_inf: bool,
        update: impl FnOnce(bool) -> Result<Verdict, ScalerCollapse>,
    ) -> Result<Verdict, ScalerCollapse> {
        let mut round = self.lock();
        let mine = round.completed;
        round.arrived += 1;
        round.found_inf |= found_inf;
        if round.arrived >= round.replicas {
            // The update runs under this lock: no replica can leave the round before the
            // new scale is in place.
            let outcome = update(round.found_inf);
            round.arrived = 0;
            round.found_inf = false;
            round.outcome = Some(outcome.clone());
            round.completed += 1;
            self.over.notify_all();
            return outcome;
        }
        let (timeout, replicas) = (round.timeout, round.replicas);
        let (round, wait) =
            self.over.wait_timeout_while(round, timeout, |r| r.completed == mine).unwrap_or_else(|poisoned| poisoned.into_inner());
        if wait.timed_out() {
            // `Optimizer::step` has no error channel; waiting longer would hang the run.
            panic!(
                "GradScaler: {} of {replicas} data-parallel replicas reported their gradients for this step and the \
                 others did not within {timeout:?}; every device must step an optimizer sharing this scaler once \
                 per iteration (see burn_mixed::data_parallel)",
                round.arrived
            );
        }
        round.outcome.clone().expect("a completed round has an outcome")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread;
    use std::time::Duration;

    use crate::scaler::{GradScaler, GradScalerConfig, Verdict};

    /// Four replicas report three rounds, arriving in a different order each time (a
    /// replica waits `delay[r]` ms before reporting); replica 2 alone overflows in round 1.
    /// Returns each replica's verdicts and the scale after each round, as replica 0 sees it.
    fn rounds(delays: [u64; 4]) -> (Vec<Vec<Verdict>>, Vec<f32>) {
        let scaler =
            GradScaler::new(GradScalerConfig { init_scale: 1024.0, growth_interval: 2, ..Default::default() }).expect("valid settings");
        scaler.set_replicas(4, Some(Duration::from_secs(30)));
        let start = Barrier::new(4);
        let results: Vec<(Vec<Verdict>, Vec<f32>)> = thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|r| {
                    let (scaler, start) = (scaler.clone(), &start);
                    scope.spawn(move || {
                        let (mut verdicts, mut scales) = (Vec::new(), Vec::new());
                        for round in 0..3 {
                            start.wait();
                            thread::sleep(Duration::from_millis(delays[(r + round) % 4]));
                            verdicts.push(scaler.report_replica(round == 1 && r == 2).expect("no collapse"));
                            scales.push(scaler.scale());
                        }
                        (verdicts, scales)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("replica")).collect()
        });
        let scales = results[0].1.clone();
        (results.into_iter().map(|(v, _)| v).collect(), scales)
    }

    #[test]
    fn every_replica_gets_one_verdict_and_the_scale_moves_once_per_round() {
        for delays in [[0, 10, 20, 30], [30, 20, 10, 0], [20, 0, 30, 10]] {
            let (verdicts, scales) = rounds(delays);
            for v in &verdicts {
                assert_eq!(v, &[Verdict::Step, Verdict::Skip, Verdict::Step], "arrival delays {delays:?}");
            }
            // One update per round: halved once by the overflow (not four times), then one
            // finite step of the two before growth; one update per replica would have grown
            // the scale in round 0 already.
            assert_eq!(scales, vec![1024.0, 512.0, 512.0], "arrival delays {delays:?}");
        }
    }

    #[test]
    fn a_replica_that_never_reports_ends_in_a_message_not_a_hang() {
        let scaler = GradScaler::new(GradScalerConfig::default()).expect("valid settings");
        scaler.set_replicas(2, Some(Duration::from_millis(100)));
        let panic = thread::spawn(move || scaler.report_replica(false)).join().expect_err("waits, then panics");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains("1 of 2 data-parallel replicas"), "{message}");
    }
}
