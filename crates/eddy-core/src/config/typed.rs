//! Typed getters on [`Config`]: each key resolved to the type the runtime uses (including the shared
//! shapes in `crate::settings`), with the table's default when unset. Values were validated on
//! load; a value that is somehow invalid (e.g. a config deserialized without validation) falls
//! back to the default. Must never return errors or panic.

use super::keys;
use super::values::Value;
use super::Config;
use crate::settings::{
    CheckpointingMode, CheckpointingSettings, ExternalizedCheckpointRetention,
    FailoverStrategyKind, RestartStrategyConfig,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Where the REST server binds when `rest.bind-address` is unset: loopback only.
pub const DEFAULT_REST_BIND_ADDRESS: &str = "127.0.0.1";
/// The base of `taskmanager.memory.managed.fraction` when `taskmanager.memory.process.size` is
/// unset: Flink's default total Flink memory of a TaskManager (1728m process size), so the
/// default managed memory is Flink's 512 MiB.
pub const DEFAULT_TOTAL_MEMORY: u64 = 1280 << 20;

/// `high-availability.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaMode {
    /// Fixed addresses, no standby JobManagers, no HA stores.
    #[default]
    None,
    /// Leader election and HA stores in ZooKeeper + `high-availability.storageDir`.
    ZooKeeper,
}

/// `state.backend.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateBackendKind {
    /// Heap state, full snapshots.
    #[default]
    HashMap,
    /// On-disk state, incremental snapshots possible.
    RocksDb,
}

/// `resourcemanager.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceManagerMode {
    /// TaskManagers are started by someone else (`eddy cluster`, scripts, an orchestrator).
    #[default]
    Standalone,
    /// The ResourceManager starts a replacement TaskManager process when one dies.
    Active,
}

impl Config {
    /// The parsed value of `key` (canonical or alias): configured if valid, else the default;
    /// `None` for unknown keys and for keys without default that are unset.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        let spec = keys::lookup(key)?;
        self.get(spec.key)
            .and_then(|raw| spec.ty.parse(raw))
            .or_else(|| spec.default.and_then(|d| spec.ty.parse(d)))
    }

    /// A duration-typed key's value (configured or default).
    pub fn get_duration(&self, key: &str) -> Option<Duration> {
        match self.get_value(key)? {
            Value::Duration(d) => Some(d),
            _ => None,
        }
    }

    /// A bool-typed key's value (configured or default).
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get_value(key)? {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// An integer- or count-typed key's value (configured or default; unlimited = `u32::MAX`).
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        match self.get_value(key)? {
            Value::Int(n) => Some(u32::try_from(n.max(0)).unwrap_or(u32::MAX)),
            Value::Count(n) => Some(n),
            Value::Port(p) => Some(u32::from(p)),
            _ => None,
        }
    }

    /// A size-typed key's value in bytes (configured or default).
    pub fn get_size(&self, key: &str) -> Option<u64> {
        match self.get_value(key)? {
            Value::Size(n) => Some(n),
            _ => None,
        }
    }

    fn duration(&self, key: &str) -> Duration {
        self.get_duration(key).unwrap_or_default()
    }
    fn flag(&self, key: &str) -> bool {
        self.get_bool(key).unwrap_or_default()
    }
    fn number(&self, key: &str) -> u32 {
        self.get_u32(key).unwrap_or(1)
    }
    fn float(&self, key: &str) -> f64 {
        match self.get_value(key) {
            Some(Value::Float(f)) => f,
            _ => 0.0,
        }
    }
    /// `metrics.reporter.prom.port`: the TaskManager's metrics port range, and whether it was
    /// set (a default range that is all taken is not an error).
    pub fn metrics_port_range(&self) -> ((u16, u16), bool) {
        let set = self.get("metrics.reporter.prom.port").is_some();
        match self.get_value("metrics.reporter.prom.port") {
            Some(Value::PortRange(a, b)) => ((a, b), set),
            _ => ((9250, 9299), set),
        }
    }

    fn port(&self, key: &str) -> u16 {
        match self.get_value(key) {
            Some(Value::Port(p)) => p,
            _ => 0,
        }
    }
    fn text(&self, key: &str) -> Option<String> {
        match self.get_value(key)? {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
    fn word(&self, key: &str) -> Option<&'static str> {
        match self.get_value(key)? {
            Value::Enum(w) => Some(w),
            _ => None,
        }
    }
    fn path(&self, key: &str) -> Option<PathBuf> {
        match self.get_value(key)? {
            Value::Path(p) => Some(p),
            _ => None,
        }
    }

    // --- cluster layout and addresses

    pub fn jobmanager_rpc_address(&self) -> String {
        self.text("jobmanager.rpc.address")
            .unwrap_or_else(|| "localhost".into())
    }
    pub fn jobmanager_rpc_port(&self) -> u16 {
        self.port("jobmanager.rpc.port")
    }
    /// `jobmanager.memory.process.size` in bytes (informational only).
    pub fn jobmanager_memory_process_size(&self) -> Option<u64> {
        self.get_size("jobmanager.memory.process.size")
    }
    /// `taskmanager.memory.process.size` in bytes (informational only).
    pub fn taskmanager_memory_process_size(&self) -> Option<u64> {
        self.get_size("taskmanager.memory.process.size")
    }
    /// The TaskManager's managed memory in bytes (RocksDB's block caches and write buffers, split
    /// over its slots): `taskmanager.memory.managed.size`, else
    /// `taskmanager.memory.managed.fraction` of `taskmanager.memory.process.size`, else of
    /// [`DEFAULT_TOTAL_MEMORY`] (Flink's default total memory, whose 0.4 is 512 MiB).
    pub fn taskmanager_managed_memory(&self) -> u64 {
        if let Some(size) = self.get_size("taskmanager.memory.managed.size") {
            return size;
        }
        let base = self
            .taskmanager_memory_process_size()
            .unwrap_or(DEFAULT_TOTAL_MEMORY);
        (base as f64 * self.float("taskmanager.memory.managed.fraction")) as u64
    }
    pub fn slots_per_taskmanager(&self) -> u32 {
        self.number("taskmanager.numberOfTaskSlots")
    }
    pub fn taskmanager_host(&self) -> String {
        self.text("taskmanager.host")
            .unwrap_or_else(|| "127.0.0.1".into())
    }
    /// 0 = any free port.
    pub fn taskmanager_data_port(&self) -> u16 {
        self.port("taskmanager.data.port")
    }
    pub fn taskmanager_registration_timeout(&self) -> Duration {
        self.duration("taskmanager.registration.timeout")
    }
    pub fn default_parallelism(&self) -> u32 {
        self.number("parallelism.default")
    }
    pub fn max_parallelism(&self) -> u32 {
        self.number("pipeline.max-parallelism")
    }
    pub fn resource_manager_mode(&self) -> ResourceManagerMode {
        match self.word("resourcemanager.mode") {
            Some("active") => ResourceManagerMode::Active,
            _ => ResourceManagerMode::Standalone,
        }
    }
    /// `resourcemanager.active.taskmanagers`: TaskManager processes kept alive in active mode.
    pub fn active_taskmanagers(&self) -> u32 {
        self.get_u32("resourcemanager.active.taskmanagers")
            .unwrap_or(1)
    }
    pub fn jobmanager_restart_attempts(&self) -> u32 {
        self.get_u32("cluster.jobmanager.restart-attempts")
            .unwrap_or(0)
    }
    pub fn log_dir(&self) -> PathBuf {
        self.path("env.log.dir")
            .unwrap_or_else(|| PathBuf::from("./log"))
    }

    // --- high availability

    pub fn ha_mode(&self) -> HaMode {
        match self.word("high-availability.type") {
            Some("zookeeper") => HaMode::ZooKeeper,
            _ => HaMode::None,
        }
    }
    /// `file://` stripped; `s3://` URIs kept verbatim.
    pub fn ha_storage_dir(&self) -> Option<PathBuf> {
        self.path("high-availability.storageDir")
    }
    /// ZooKeeper servers as (host, port); empty when unset. Entries without port get 2181.
    pub fn zk_quorum(&self) -> Vec<(String, u16)> {
        match self.get_value("high-availability.zookeeper.quorum") {
            Some(Value::HostPorts(list)) => list,
            _ => Vec::new(),
        }
    }
    pub fn zk_path_root(&self) -> String {
        self.text("high-availability.zookeeper.path.root")
            .unwrap_or_else(|| "/flink".into())
    }
    pub fn ha_cluster_id(&self) -> String {
        self.text("high-availability.cluster-id")
            .unwrap_or_else(|| "/default".into())
    }
    pub fn zk_session_timeout(&self) -> Duration {
        self.duration("high-availability.zookeeper.client.session-timeout")
    }
    pub fn zk_connection_timeout(&self) -> Duration {
        self.duration("high-availability.zookeeper.client.connection-timeout")
    }
    pub fn zk_retry_wait(&self) -> Duration {
        self.duration("high-availability.zookeeper.client.retry-wait")
    }
    pub fn zk_max_retry_attempts(&self) -> u32 {
        self.get_u32("high-availability.zookeeper.client.max-retry-attempts")
            .unwrap_or(3)
    }
    pub fn zk_tolerate_suspended(&self) -> bool {
        self.flag("high-availability.zookeeper.client.tolerate-suspended-connections")
    }
    /// 0 = any free port.
    pub fn ha_jobmanager_port(&self) -> u16 {
        self.port("high-availability.jobmanager.port")
    }

    // --- state, checkpoint storage, recovery

    pub fn state_backend(&self) -> StateBackendKind {
        match self.word("state.backend.type") {
            Some("rocksdb") => StateBackendKind::RocksDb,
            _ => StateBackendKind::HashMap,
        }
    }
    /// `state.backend.rocksdb.memory.managed`.
    pub fn rocksdb_memory_managed(&self) -> bool {
        self.flag("state.backend.rocksdb.memory.managed")
    }
    /// `state.backend.rocksdb.memory.fixed-per-slot` in bytes, if set.
    pub fn rocksdb_memory_fixed_per_slot(&self) -> Option<u64> {
        self.get_size("state.backend.rocksdb.memory.fixed-per-slot")
    }
    /// `state.backend.rocksdb.memory.write-buffer-ratio`.
    pub fn rocksdb_write_buffer_ratio(&self) -> f64 {
        self.float("state.backend.rocksdb.memory.write-buffer-ratio")
    }
    /// `s3.endpoint`, `s3.region`, `s3.access-key`, `s3.secret-key`, `s3.path.style.access`.
    pub fn s3_endpoint(&self) -> Option<String> {
        self.text("s3.endpoint")
    }
    pub fn s3_region(&self) -> Option<String> {
        self.text("s3.region")
    }
    pub fn s3_access_key(&self) -> Option<String> {
        self.text("s3.access-key")
    }
    pub fn s3_secret_key(&self) -> Option<String> {
        self.text("s3.secret-key")
    }
    pub fn s3_path_style(&self) -> Option<bool> {
        self.get_bool("s3.path.style.access")
    }
    /// `file://` stripped; `s3://` URIs kept verbatim.
    pub fn checkpoints_dir(&self) -> Option<PathBuf> {
        self.path("execution.checkpointing.dir")
    }
    /// `file://` stripped; `s3://` URIs kept verbatim.
    pub fn savepoints_dir(&self) -> Option<PathBuf> {
        self.path("execution.checkpointing.savepoint-dir")
    }
    pub fn incremental(&self) -> bool {
        self.flag("execution.checkpointing.incremental")
    }
    pub fn num_retained(&self) -> u32 {
        self.number("execution.checkpointing.num-retained")
    }
    pub fn local_recovery(&self) -> bool {
        self.flag("execution.state-recovery.from-local")
    }
    /// Configured roots, else `<system temp dir>/eddy-local-state`. A TaskManager should add its
    /// own subdirectory (e.g. its id) so several TaskManagers on one host do not collide.
    pub fn local_state_dirs(&self) -> Vec<PathBuf> {
        match self.get_value("execution.checkpointing.local-backup.dirs") {
            Some(Value::Paths(dirs)) => dirs,
            _ => vec![std::env::temp_dir().join("eddy-local-state")],
        }
    }
    /// `execution.state-recovery.path`: what a submitted job restores from.
    pub fn savepoint_restore_path(&self) -> Option<PathBuf> {
        self.path("execution.state-recovery.path")
    }
    /// `execution.state-recovery.claim-mode: CLAIM` (`--claimMode CLAIM`): the job owns the
    /// snapshot it restores from and deletes it once its own checkpoints subsumed it.
    pub fn claims_restored_snapshot(&self) -> bool {
        self.word("execution.state-recovery.claim-mode") == Some("CLAIM")
    }
    /// `execution.state-recovery.ignore-unclaimed-state` (`--allow-non-restored-state`).
    pub fn allow_non_restored_state(&self) -> bool {
        self.flag("execution.state-recovery.ignore-unclaimed-state")
    }

    // --- failover, restart, checkpointing

    pub fn failover_strategy(&self) -> FailoverStrategyKind {
        match self.word("jobmanager.execution.failover-strategy") {
            Some("full") => FailoverStrategyKind::Full,
            _ => FailoverStrategyKind::Region,
        }
    }

    /// The configured restart strategy with its keys; `None` when `restart-strategy.type` is unset.
    pub fn restart_strategy(&self) -> Option<RestartStrategyConfig> {
        let d = |k: &str| self.duration(&format!("restart-strategy.{k}"));
        let n = |k: &str| self.number(&format!("restart-strategy.{k}"));
        let f = |k: &str| self.float(&format!("restart-strategy.{k}"));
        Some(match self.word("restart-strategy.type")? {
            "fixed-delay" => RestartStrategyConfig::FixedDelay {
                attempts: self
                    .get_u32("restart-strategy.fixed-delay.attempts")
                    .unwrap_or(1),
                delay: d("fixed-delay.delay"),
            },
            "failure-rate" => RestartStrategyConfig::FailureRate {
                max_failures_per_interval: n("failure-rate.max-failures-per-interval"),
                interval: d("failure-rate.failure-rate-interval"),
                delay: d("failure-rate.delay"),
            },
            "exponential-delay" => RestartStrategyConfig::ExponentialDelay {
                initial_backoff: d("exponential-delay.initial-backoff"),
                max_backoff: d("exponential-delay.max-backoff"),
                multiplier: f("exponential-delay.backoff-multiplier"),
                reset_backoff_threshold: d("exponential-delay.reset-backoff-threshold"),
                jitter_factor: f("exponential-delay.jitter-factor"),
                attempts_before_reset: n("exponential-delay.attempts-before-reset-backoff"),
            },
            _ => RestartStrategyConfig::None,
        })
    }

    /// The strategy actually applied: the configured one, else SPEC §2's default rule.
    /// The restart strategy in force: the configured one, else SPEC §2's default rule. The
    /// implicit fixed-delay (checkpointing on, no type) takes `restart-strategy.fixed-delay.delay`
    /// when it is set, so setting the delay alone does what a user expects.
    pub fn effective_restart_strategy(&self) -> RestartStrategyConfig {
        match RestartStrategyConfig::effective(
            self.restart_strategy().as_ref(),
            self.checkpointing().interval.is_some(),
        ) {
            RestartStrategyConfig::FixedDelay { attempts, delay }
                if self.restart_strategy().is_none() =>
            {
                RestartStrategyConfig::FixedDelay {
                    attempts,
                    delay: self
                        .get_duration("restart-strategy.fixed-delay.delay")
                        .unwrap_or(delay),
                }
            }
            other => other,
        }
    }

    pub fn checkpointing(&self) -> CheckpointingSettings {
        let c = "execution.checkpointing";
        CheckpointingSettings {
            interval: self.get_duration(&format!("{c}.interval")),
            mode: match self.word(&format!("{c}.mode")) {
                Some("AT_LEAST_ONCE") => CheckpointingMode::AtLeastOnce,
                _ => CheckpointingMode::ExactlyOnce,
            },
            timeout: self.duration(&format!("{c}.timeout")),
            min_pause: self.duration(&format!("{c}.min-pause")),
            max_concurrent: self.number(&format!("{c}.max-concurrent-checkpoints")),
            tolerable_failed: self
                .get_u32(&format!("{c}.tolerable-failed-checkpoints"))
                .unwrap_or(0),
            num_retained: self.num_retained(),
            externalized_retention: match self
                .word(&format!("{c}.externalized-checkpoint-retention"))
            {
                Some("DELETE_ON_CANCELLATION") => {
                    ExternalizedCheckpointRetention::DeleteOnCancellation
                }
                Some("RETAIN_ON_CANCELLATION") => {
                    ExternalizedCheckpointRetention::RetainOnCancellation
                }
                _ => ExternalizedCheckpointRetention::NoExternalizedCheckpoints,
            },
        }
    }

    // --- failure detection and timeouts

    pub fn heartbeat_interval(&self) -> Duration {
        self.duration("heartbeat.interval")
    }
    pub fn heartbeat_timeout(&self) -> Duration {
        self.duration("heartbeat.timeout")
    }
    pub fn slot_timeout(&self) -> Duration {
        self.duration("taskmanager.slot.timeout")
    }
    pub fn slot_request_timeout(&self) -> Duration {
        self.duration("slot.request.timeout")
    }
    /// `jobstore.max-capacity`: ended jobs the JobManager keeps.
    pub fn jobstore_max_capacity(&self) -> usize {
        self.number("jobstore.max-capacity") as usize
    }
    /// `jobstore.expiration-time`: how long an ended job is kept.
    pub fn jobstore_expiration(&self) -> Duration {
        self.duration("jobstore.expiration-time")
    }
    /// `web.exception-history-size`: exceptions kept per job.
    pub fn exception_history_size(&self) -> usize {
        self.number("web.exception-history-size") as usize
    }
    /// `pekko.framesize` in bytes: the largest RPC message (validated to fit a u32).
    pub fn rpc_frame_size(&self) -> u32 {
        self.frame_size("pekko.framesize")
    }

    // --- REST and data plane

    pub fn rest_address(&self) -> String {
        self.text("rest.address")
            .unwrap_or_else(|| "localhost".into())
    }
    pub fn rest_port(&self) -> u16 {
        self.port("rest.port")
    }
    /// `rest.bind-address`, or the loopback address `127.0.0.1` when unset: a REST endpoint
    /// reachable from other machines is opted into, never a default.
    pub fn rest_bind_address(&self) -> String {
        self.text("rest.bind-address")
            .unwrap_or_else(|| DEFAULT_REST_BIND_ADDRESS.into())
    }
    /// `rest.server.max-content-length` in bytes: the largest REST request body read.
    pub fn rest_max_content_length(&self) -> usize {
        self.get_size("rest.server.max-content-length")
            .map_or(1 << 20, |b| usize::try_from(b).unwrap_or(usize::MAX))
    }
    /// `web.submit.enable`: jobs may be submitted over REST.
    pub fn web_submit_enabled(&self) -> bool {
        self.flag("web.submit.enable")
    }
    /// `web.cancel.enable`: jobs may be cancelled over REST.
    pub fn web_cancel_enabled(&self) -> bool {
        self.flag("web.cancel.enable")
    }
    /// `eddy.rest.auth.token-file`: the file holding the REST bearer token, if any.
    pub fn rest_auth_token_file(&self) -> Option<PathBuf> {
        self.path("eddy.rest.auth.token-file")
    }
    /// `security.ssl.rest.enabled`: the REST endpoint speaks HTTPS.
    pub fn ssl_rest_enabled(&self) -> bool {
        self.flag("security.ssl.rest.enabled")
    }
    /// `security.ssl.internal.enabled`: RPC and data connections use mutual TLS.
    pub fn ssl_internal_enabled(&self) -> bool {
        self.flag("security.ssl.internal.enabled")
    }
    /// `security.ssl.<scope>.<file>` (`scope`: `rest` or `internal`; `file`: `cert`, `key` or
    /// `trust-cert`), if set.
    pub fn ssl_file(&self, scope: &str, file: &str) -> Option<PathBuf> {
        self.path(&format!("security.ssl.{scope}.{file}"))
    }
    /// `eddy.test-hooks.enabled`: test hooks (failure and delay job arguments, fault points)
    /// are allowed. Off by default.
    pub fn test_hooks_enabled(&self) -> bool {
        self.flag("eddy.test-hooks.enabled")
    }
    pub fn buffer_timeout(&self) -> Duration {
        self.duration("execution.buffer-timeout")
    }
    /// `taskmanager.network.max-frame-size` in bytes: the largest data-plane frame.
    pub fn network_max_frame_size(&self) -> u32 {
        self.frame_size("taskmanager.network.max-frame-size")
    }
    /// The network buffer pool of a TaskManager in bytes: `taskmanager.memory.network.fraction`
    /// of `taskmanager.memory.process.size` (or [`super::keys::DEFAULT_TM_PROCESS_SIZE`] while it
    /// is unset), clamped to `taskmanager.memory.network.min..=max` (Flink's rule).
    pub fn network_memory_size(&self) -> u64 {
        let total = self
            .taskmanager_memory_process_size()
            .unwrap_or(super::keys::DEFAULT_TM_PROCESS_SIZE);
        let share = (total as f64 * self.float("taskmanager.memory.network.fraction")) as u64;
        let min = self
            .get_size("taskmanager.memory.network.min")
            .unwrap_or(64 << 20);
        let max = self
            .get_size("taskmanager.memory.network.max")
            .unwrap_or(u64::MAX);
        share.max(min).min(max)
    }
    /// `taskmanager.memory.segment-size` in bytes: one network buffer.
    pub fn network_segment_size(&self) -> u32 {
        let bytes = self
            .get_size("taskmanager.memory.segment-size")
            .unwrap_or(32 << 10);
        bytes.clamp(super::keys::MIN_SEGMENT_SIZE, super::keys::MAX_SEGMENT_SIZE) as u32
    }
    /// `taskmanager.network.memory.buffers-per-channel`: exclusive credits per input channel.
    pub fn network_buffers_per_channel(&self) -> u32 {
        self.get_u32("taskmanager.network.memory.buffers-per-channel")
            .unwrap_or(2)
    }
    /// `taskmanager.network.memory.floating-buffers-per-gate`: shared by a task's inputs.
    pub fn network_floating_buffers_per_gate(&self) -> u32 {
        self.get_u32("taskmanager.network.memory.floating-buffers-per-gate")
            .unwrap_or(8)
    }
    fn frame_size(&self, key: &str) -> u32 {
        let bytes = self.get_size(key).unwrap_or(super::keys::MIN_FRAME_SIZE);
        bytes.clamp(super::keys::MIN_FRAME_SIZE, super::keys::MAX_FRAME_SIZE) as u32
    }
}
