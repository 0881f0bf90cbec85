//! Restart strategies (`restart-strategy.type`): after a failure, may the job restart, and after
//! which delay? Flink's `RestartBackoffTimeStrategy` family, as a sans-IO value: time is the
//! `now_ms` argument (monotonic milliseconds from the shell), jitter comes from a seeded RNG.
//! It never sleeps, never reads a clock, never schedules anything: the JobMaster waits `delay`.
//!
//! Semantics (Flink 1.19+):
//! - `none`: the first failure fails the job.
//! - `fixed-delay`: `attempts` restarts are allowed; failure number `attempts + 1` fails the job.
//!   `u32::MAX` means unlimited.
//! - `failure-rate`: fails when more than `max_failures_per_interval` failures fall within one
//!   sliding `interval` (the newest failure and the `max`-th failure before it are at most
//!   `interval` apart).
//! - `exponential-delay`: the n-th restart since the last reset waits
//!   `initial * multiplier^(n-1)`, ± `jitter_factor` of that, clamped to `[initial, max]`. The
//!   backoff resets when the job ran failure-free for `reset_backoff_threshold`, measured from the
//!   moment it was restarted after the last failure (last failure + its backoff), as Flink does.
//!   Failures that arrive before the pending restart happened are merged into that restart (one
//!   attempt, FLIP-364). Fails after `attempts_before_reset` restarts since the last reset.

use eddy_core::settings::RestartStrategyConfig;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;

/// What the JobMaster does about a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the tasks chosen by the failover strategy after `delay`.
    Restart { delay: Duration },
    /// The job becomes FAILED; `reason` names the strategy and the limit that was hit.
    Fail { reason: String },
}

impl RestartDecision {
    pub fn is_restart(&self) -> bool {
        matches!(self, RestartDecision::Restart { .. })
    }
}

/// A restart strategy with its bookkeeping. Build one per job (a JobMaster failover builds a new
/// one, as Flink does).
#[derive(Debug)]
pub struct RestartBackoff {
    strategy: Strategy,
    restarts: u64,
}

#[derive(Debug)]
enum Strategy {
    None,
    FixedDelay {
        attempts: u32,
        delay: Duration,
        used: u64,
    },
    FailureRate {
        max_failures: u32,
        interval_ms: u64,
        delay: Duration,
        /// The last `max_failures + 1` failure times, oldest first.
        failures: VecDeque<u64>,
    },
    ExponentialDelay {
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
        reset_threshold_ms: u64,
        jitter_factor: f64,
        attempts_before_reset: u32,
        /// Restarts since the last reset.
        attempt: u64,
        /// When the restart for the last counted failure is (was) due; `None` before any failure.
        next_restart_ms: Option<u64>,
        rng: SmallRng,
    },
}

impl RestartBackoff {
    /// `seed` drives the exponential-delay jitter (use a random one in production, a fixed one in
    /// tests). Out-of-range exponential parameters are clamped (multiplier ≥ 1, jitter in
    /// `[0, 1]`, max ≥ initial); validating them for the user is the config layer's job.
    pub fn new(config: &RestartStrategyConfig, seed: u64) -> Self {
        let strategy = match *config {
            RestartStrategyConfig::None => Strategy::None,
            RestartStrategyConfig::FixedDelay { attempts, delay } => Strategy::FixedDelay {
                attempts,
                delay,
                used: 0,
            },
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval,
                interval,
                delay,
            } => Strategy::FailureRate {
                max_failures: max_failures_per_interval,
                interval_ms: millis(interval),
                delay,
                failures: VecDeque::new(),
            },
            RestartStrategyConfig::ExponentialDelay {
                initial_backoff,
                max_backoff,
                multiplier,
                reset_backoff_threshold,
                jitter_factor,
                attempts_before_reset,
            } => {
                let initial_ms = millis(initial_backoff);
                Strategy::ExponentialDelay {
                    initial_ms,
                    max_ms: millis(max_backoff).max(initial_ms),
                    multiplier: if multiplier.is_finite() {
                        multiplier.max(1.0)
                    } else {
                        1.0
                    },
                    reset_threshold_ms: millis(reset_backoff_threshold),
                    jitter_factor: if jitter_factor.is_finite() {
                        jitter_factor.clamp(0.0, 1.0)
                    } else {
                        0.0
                    },
                    attempts_before_reset,
                    attempt: 0,
                    next_restart_ms: None,
                    rng: SmallRng::seed_from_u64(seed),
                }
            }
        };
        RestartBackoff {
            strategy,
            restarts: 0,
        }
    }

    /// The strategy's name as in `restart-strategy.type`.
    pub fn strategy_name(&self) -> &'static str {
        match self.strategy {
            Strategy::None => "none",
            Strategy::FixedDelay { .. } => "fixed-delay",
            Strategy::FailureRate { .. } => "failure-rate",
            Strategy::ExponentialDelay { .. } => "exponential-delay",
        }
    }

    /// Restarts granted so far (Flink's `numRestarts` metric). Merged failures do not count.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// A failure (task failure or global failover) happened at `now_ms`. Call once per failure
    /// event; failures that belong to one failover may be reported one by one.
    pub fn on_failure(&mut self, now_ms: u64) -> RestartDecision {
        let decision = match &mut self.strategy {
            Strategy::None => RestartDecision::Fail {
                reason: "restart strategy none allows no restarts: 0 of 0 attempts".to_string(),
            },
            Strategy::FixedDelay {
                attempts,
                delay,
                used,
            } => {
                *used += 1;
                if *attempts == u32::MAX || *used <= u64::from(*attempts) {
                    RestartDecision::Restart { delay: *delay }
                } else {
                    RestartDecision::Fail {
                        reason: format!(
                            "restart strategy fixed-delay exhausted: {attempts} of {attempts} attempts used"
                        ),
                    }
                }
            }
            Strategy::FailureRate {
                max_failures,
                interval_ms,
                delay,
                failures,
            } => {
                failures.push_back(now_ms);
                while failures.len() > *max_failures as usize + 1 {
                    failures.pop_front();
                }
                let full = failures.len() > *max_failures as usize;
                let oldest = failures.front().copied().unwrap_or(now_ms);
                if full && now_ms.saturating_sub(oldest) <= *interval_ms {
                    RestartDecision::Fail {
                        reason: format!(
                            "restart strategy failure-rate exceeded: {} failures within {} ms, at most {} allowed per {} ms interval",
                            failures.len(),
                            now_ms.saturating_sub(oldest),
                            max_failures,
                            interval_ms
                        ),
                    }
                } else {
                    RestartDecision::Restart { delay: *delay }
                }
            }
            Strategy::ExponentialDelay {
                initial_ms,
                max_ms,
                multiplier,
                reset_threshold_ms,
                jitter_factor,
                attempts_before_reset,
                attempt,
                next_restart_ms,
                rng,
            } => {
                if let Some(due) = *next_restart_ms {
                    if now_ms <= due {
                        // The restart for an earlier failure has not happened yet: same attempt.
                        return RestartDecision::Restart {
                            delay: Duration::from_millis(due - now_ms),
                        };
                    }
                    if now_ms - due >= *reset_threshold_ms {
                        *attempt = 0;
                    }
                }
                if *attempts_before_reset != u32::MAX
                    && *attempt >= u64::from(*attempts_before_reset)
                {
                    RestartDecision::Fail {
                        reason: format!(
                            "restart strategy exponential-delay exhausted: {attempts_before_reset} of {attempts_before_reset} attempts used since the last backoff reset"
                        ),
                    }
                } else {
                    let base = (*initial_ms as f64) * multiplier.powf(*attempt as f64);
                    let base = base.min(*max_ms as f64) as u64;
                    let jitter = if *jitter_factor > 0.0 {
                        let offset = (base as f64 * *jitter_factor) as i64;
                        rng.gen_range(-offset..=offset)
                    } else {
                        0
                    };
                    let backoff = (base as i64)
                        .saturating_add(jitter)
                        .clamp(*initial_ms as i64, *max_ms as i64)
                        as u64;
                    *attempt += 1;
                    *next_restart_ms = Some(now_ms.saturating_add(backoff));
                    RestartDecision::Restart {
                        delay: Duration::from_millis(backoff),
                    }
                }
            }
        };
        // A merged exponential-delay failure returned above: it is not a new restart.
        if decision.is_restart() {
            self.restarts += 1;
        }
        decision
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    fn fixed(attempts: u32, delay_ms: u64) -> RestartBackoff {
        RestartBackoff::new(
            &RestartStrategyConfig::FixedDelay {
                attempts,
                delay: Duration::from_millis(delay_ms),
            },
            1,
        )
    }

    fn rate(max: u32, interval_ms: u64) -> RestartBackoff {
        RestartBackoff::new(
            &RestartStrategyConfig::FailureRate {
                max_failures_per_interval: max,
                interval: Duration::from_millis(interval_ms),
                delay: Duration::from_millis(10),
            },
            1,
        )
    }

    fn expo(jitter: f64, attempts: u32, seed: u64) -> RestartBackoff {
        RestartBackoff::new(
            &RestartStrategyConfig::ExponentialDelay {
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10),
                multiplier: 2.0,
                reset_backoff_threshold: Duration::from_secs(60),
                jitter_factor: jitter,
                attempts_before_reset: attempts,
            },
            seed,
        )
    }

    fn delay_ms(d: RestartDecision) -> u64 {
        match d {
            RestartDecision::Restart { delay } => delay.as_millis() as u64,
            RestartDecision::Fail { reason } => panic!("expected a restart, got: {reason}"),
        }
    }

    fn fail_reason(d: RestartDecision) -> String {
        match d {
            RestartDecision::Fail { reason } => reason,
            RestartDecision::Restart { delay } => {
                panic!("expected a failure, got a restart after {delay:?}")
            }
        }
    }

    #[test]
    fn none_fails_at_once() {
        let mut r = RestartBackoff::new(&RestartStrategyConfig::None, 0);
        let reason = fail_reason(r.on_failure(0));
        assert!(reason.contains("none"), "{reason}");
        assert_eq!(r.restarts(), 0);
    }

    #[test]
    fn fixed_delay_restarts_with_the_configured_delay() {
        let mut r = fixed(3, 250);
        assert_eq!(
            r.on_failure(0),
            RestartDecision::Restart {
                delay: Duration::from_millis(250)
            }
        );
    }

    #[test]
    fn fixed_delay_fails_after_n_attempts() {
        let mut r = fixed(3, 10);
        for t in 0..3 {
            assert!(
                r.on_failure(t * S).is_restart(),
                "failure {} must restart",
                t + 1
            );
        }
        let reason = fail_reason(r.on_failure(10 * S));
        assert_eq!(
            reason,
            "restart strategy fixed-delay exhausted: 3 of 3 attempts used"
        );
        assert_eq!(r.restarts(), 3);
    }

    #[test]
    fn fixed_delay_with_zero_attempts_fails_on_first_failure() {
        let mut r = fixed(0, 10);
        assert!(!r.on_failure(0).is_restart());
    }

    #[test]
    fn fixed_delay_u32_max_attempts_is_unlimited() {
        let mut r = fixed(u32::MAX, 0);
        for t in 0..10_000 {
            assert!(r.on_failure(t).is_restart());
        }
    }

    #[test]
    fn failure_rate_allows_max_failures_within_interval() {
        let mut r = rate(2, 60 * S);
        assert_eq!(delay_ms(r.on_failure(0)), 10);
        assert_eq!(delay_ms(r.on_failure(S)), 10);
    }

    #[test]
    fn failure_rate_fails_when_more_than_max_failures_within_interval() {
        let mut r = rate(2, 60 * S);
        r.on_failure(0);
        r.on_failure(10 * S);
        let reason = fail_reason(r.on_failure(60 * S));
        assert!(
            reason.starts_with("restart strategy failure-rate exceeded"),
            "{reason}"
        );
        assert!(reason.contains("at most 2"), "{reason}");
    }

    #[test]
    fn failure_rate_window_slides() {
        let mut r = rate(2, 60 * S);
        r.on_failure(0);
        r.on_failure(30 * S);
        // The first failure is now more than the interval ago: only 2 within the window.
        assert!(r.on_failure(60 * S + 1).is_restart());
        // 30 s, 60.001 s and 70 s are within 60 s of each other: 3 > 2.
        assert!(!r.on_failure(70 * S).is_restart());
    }

    #[test]
    fn exponential_delay_grows_by_multiplier_and_caps_at_max() {
        let mut r = expo(0.0, u32::MAX, 1);
        let mut t = 0;
        let mut delays = vec![];
        for _ in 0..6 {
            let d = delay_ms(r.on_failure(t));
            delays.push(d);
            t += d + 1; // fail right after each restart
        }
        assert_eq!(delays, vec![1000, 2000, 4000, 8000, 10_000, 10_000]);
    }

    #[test]
    fn exponential_delay_jitter_stays_within_factor_and_is_seeded() {
        let run = |seed| {
            let mut r = expo(0.5, u32::MAX, seed);
            let mut t = 0;
            let mut v = vec![];
            for _ in 0..4 {
                let d = delay_ms(r.on_failure(t));
                v.push(d);
                t += d + 1;
            }
            v
        };
        let a = run(7);
        assert_eq!(a, run(7), "same seed, same delays");
        let bases = [1000u64, 2000, 4000, 8000];
        for (d, b) in a.iter().zip(bases) {
            assert!(*d >= b / 2 && *d <= b + b / 2, "{d} not within ±50% of {b}");
            assert!(*d >= 1000 && *d <= 10_000, "{d} outside [initial, max]");
        }
        assert!(
            (0..20)
                .map(run)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1,
            "jitter varies"
        );
    }

    #[test]
    fn exponential_delay_resets_after_threshold_failure_free() {
        let mut r = expo(0.0, u32::MAX, 1);
        assert_eq!(delay_ms(r.on_failure(0)), 1000);
        assert_eq!(delay_ms(r.on_failure(2 * S)), 2000); // restarted at 4 s
                                                         // Ran from 4 s to 63 s: 59 s < 60 s threshold, no reset.
        assert_eq!(delay_ms(r.on_failure(63 * S)), 4000); // restarted at 67 s
                                                          // Ran from 67 s to 127 s: 60 s, reset.
        assert_eq!(delay_ms(r.on_failure(127 * S)), 1000);
    }

    #[test]
    fn exponential_delay_merges_failures_before_the_pending_restart() {
        let mut r = expo(0.0, 2, 1);
        assert_eq!(delay_ms(r.on_failure(0)), 1000);
        // Another task of the same failover fails 300 ms later: same attempt, remaining delay.
        assert_eq!(delay_ms(r.on_failure(300)), 700);
        assert_eq!(r.restarts(), 1);
        assert_eq!(delay_ms(r.on_failure(1001)), 2000);
    }

    #[test]
    fn exponential_delay_fails_after_attempts_before_reset() {
        let mut r = expo(0.0, 2, 1);
        r.on_failure(0);
        r.on_failure(5 * S);
        let reason = fail_reason(r.on_failure(10 * S));
        assert_eq!(
            reason,
            "restart strategy exponential-delay exhausted: 2 of 2 attempts used since the last backoff reset"
        );
        // After a failure-free threshold the budget is back.
        assert!(r.on_failure(10 * S + 70 * S).is_restart());
    }
}
