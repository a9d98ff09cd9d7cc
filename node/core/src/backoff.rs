//! Reconnecting with backoff, the one rule every link follows (a node's origin link, its peer
//! links): wait a little after a failure, twice as long after each further one up to a
//! ceiling, and start afresh after a session that lasted. Each wait is drawn at random between
//! half the step and the step ("equal jitter"), so a fleet whose origin restarts does not come
//! back in lockstep, every node knocking at the same instant.

use std::time::Duration;

/// The first wait, the ceiling, and how long a session must last to count as healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The wait after the first failure; each further failure doubles it.
    pub first: Duration,
    /// The ceiling the doubling wait stops at.
    pub max: Duration,
    /// How long a session must last for the next wait to start again from `first`.
    pub healthy_after: Duration,
}

impl BackoffPolicy {
    /// What the cluster links use: 100 ms, doubling up to 5 s, afresh after 10 s up.
    pub const LINKS: BackoffPolicy = BackoffPolicy {
        first: Duration::from_millis(100),
        max: Duration::from_secs(5),
        healthy_after: Duration::from_secs(10),
    };
}

/// One link's backoff state.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    step: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A fresh backoff under `policy`, starting at `policy.first`, with system-seeded randomness.
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff {
            policy,
            step: policy.first,
            rng: fastrand::Rng::new(),
        }
    }

    /// The same, with its randomness from `seed` (for tests and simulations).
    pub fn with_seed(policy: BackoffPolicy, seed: u64) -> Backoff {
        Backoff {
            rng: fastrand::Rng::with_seed(seed),
            ..Backoff::new(policy)
        }
    }

    /// How long to wait after a session (or an attempt) that lasted `lasted`.
    pub fn next_wait(&mut self, lasted: Duration) -> Duration {
        if lasted >= self.policy.healthy_after {
            self.step = self.policy.first;
        }
        let step = self.step;
        self.step = (self.step * 2).min(self.policy.max);
        let half = step / 2;
        half + Duration::from_nanos(self.rng.u64(0..=(step - half).as_nanos() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BackoffPolicy = BackoffPolicy::LINKS;

    #[test]
    fn waits_double_up_to_the_ceiling_each_between_half_and_the_step() {
        let mut backoff = Backoff::with_seed(POLICY, 7);
        let mut step = POLICY.first;
        for _ in 0..12 {
            let wait = backoff.next_wait(Duration::ZERO);
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} for a step of {step:?}"
            );
            step = (step * 2).min(POLICY.max);
        }
        assert_eq!(step, POLICY.max);
    }

    #[test]
    fn a_healthy_session_starts_the_backoff_afresh() {
        let mut backoff = Backoff::with_seed(POLICY, 7);
        for _ in 0..10 {
            backoff.next_wait(Duration::ZERO);
        }
        assert!(backoff.next_wait(POLICY.healthy_after) <= POLICY.first);
    }

    #[test]
    fn a_fleet_does_not_reconnect_in_lockstep() {
        // A thousand nodes that lost the origin at the same instant, after a few failures each.
        let mut waits: Vec<Duration> = (0..1000)
            .map(|node| {
                let mut backoff = Backoff::with_seed(POLICY, node);
                (0..4)
                    .map(|_| backoff.next_wait(Duration::ZERO))
                    .last()
                    .unwrap()
            })
            .collect();
        waits.sort();
        waits.dedup();
        assert!(waits.len() > 900, "only {} distinct waits", waits.len());
        let spread = *waits.last().unwrap() - waits[0];
        assert!(
            spread >= Duration::from_millis(300),
            "spread over {spread:?}"
        );
    }
}
