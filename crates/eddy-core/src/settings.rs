//! Typed settings resolved from a validated [`crate::config::Config`]: what the runtime, the
//! JobManager and the recovery code read. Parsing and validation live in `config`; this file only
//! names the shapes, so every crate agrees on them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `restart-strategy.type` and its keys, with Flink's meanings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RestartStrategyConfig {
    /// `none` / `off` / `disable`: the first failure fails the job.
    None,
    /// `fixed-delay`: `attempts` restarts (u32::MAX = unlimited), `delay` between them.
    FixedDelay { attempts: u32, delay: Duration },
    /// `failure-rate`: at most `max_failures_per_interval` failures within any `interval`.
    FailureRate {
        max_failures_per_interval: u32,
        interval: Duration,
        delay: Duration,
    },
    /// `exponential-delay`: backoff grows by `multiplier` from `initial_backoff` up to
    /// `max_backoff`, randomised by ± `jitter_factor`; resets after `reset_backoff_threshold` of
    /// failure-free running; fails after `attempts_before_reset` restarts without a reset.
    ExponentialDelay {
        initial_backoff: Duration,
        max_backoff: Duration,
        multiplier: f64,
        reset_backoff_threshold: Duration,
        jitter_factor: f64,
        attempts_before_reset: u32,
    },
}

impl RestartStrategyConfig {
    /// SPEC §2's default rule: with nothing configured, `none` when checkpointing is off and
    /// `fixed-delay` with unlimited attempts (1 s delay, Flink ≤ 1.18) when it is on.
    pub fn effective(
        configured: Option<&RestartStrategyConfig>,
        checkpointing_enabled: bool,
    ) -> Self {
        match configured {
            Some(c) => c.clone(),
            None if checkpointing_enabled => RestartStrategyConfig::FixedDelay {
                attempts: u32::MAX,
                delay: Duration::from_secs(1),
            },
            None => RestartStrategyConfig::None,
        }
    }
}

/// `jobmanager.execution.failover-strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FailoverStrategyKind {
    /// Restart only the pipelined region(s) holding the failed subtask (Flink's default).
    #[default]
    Region,
    /// Restart every task of the job.
    Full,
}

/// `execution.checkpointing.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CheckpointingMode {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

/// `execution.checkpointing.externalized-checkpoint-retention`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ExternalizedCheckpointRetention {
    #[default]
    NoExternalizedCheckpoints,
    DeleteOnCancellation,
    RetainOnCancellation,
}

/// `execution.checkpointing.*` (and `state.checkpoints.num-retained`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointingSettings {
    /// `None` = checkpointing disabled.
    pub interval: Option<Duration>,
    pub mode: CheckpointingMode,
    /// Default 10 min.
    pub timeout: Duration,
    /// Default 0.
    pub min_pause: Duration,
    /// Default 1.
    pub max_concurrent: u32,
    /// Consecutive failed checkpoints tolerated before the job fails over. Default 0.
    pub tolerable_failed: u32,
    /// `state.checkpoints.num-retained`, default 1.
    pub num_retained: u32,
    pub externalized_retention: ExternalizedCheckpointRetention,
}

impl Default for CheckpointingSettings {
    fn default() -> Self {
        CheckpointingSettings {
            interval: None,
            mode: CheckpointingMode::ExactlyOnce,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failed: 0,
            num_retained: 1,
            externalized_retention: ExternalizedCheckpointRetention::NoExternalizedCheckpoints,
        }
    }
}
