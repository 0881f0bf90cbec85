//! What Eddy does today with each key of `keys.rs`, and the refusal of values that would ask for
//! behaviour Eddy does not have yet. No key is accepted and ignored: a key either works, is
//! accepted with a documented meaning (the memory keys), or only the values equal to today's
//! behaviour are accepted and any other is a one-line error naming the key, the value, why, and
//! what is allowed. docs/configuration.md's "Status of every key" table mirrors this file; unit
//! tests keep the two and `keys.rs` in sync. This file must never read files or parse values
//! (it sees values already parsed by `values.rs`).

use super::error::{one_line, ConfigError};
use super::values::Value;

/// What Eddy does with one key.
#[derive(Clone, Copy, Debug)]
pub enum Support {
    /// Does what docs/configuration.md says, end to end.
    Works,
    /// Accepted, validated and shown in `/jobmanager/config`, with the meaning documented in
    /// docs/configuration.md (which is not Flink's: e.g. memory keys reserve nothing).
    Documented,
    /// Only values for which `accepts` is true are allowed (today's behaviour); any other value is
    /// refused on load with [`ConfigError::Unsupported`].
    Limited {
        accepts: fn(&Value) -> bool,
        /// What is allowed, phrased to follow "allowed: ".
        allowed: &'static str,
        /// Why, phrased to follow "is not supported " (e.g. "yet (issue 12: ...)").
        reason: &'static str,
    },
}

/// Savepoints (trigger, stop-with-savepoint, resume with `-s`) are built by issue 11.
pub const SAVEPOINTS_ISSUE: &str = "yet (savepoints and resuming from them arrive with issue 11)";
const S3_ISSUE: &str =
    "yet (HA metadata on S3 is not built; checkpoints and savepoints can be on S3)";
const UNSET: &str = "leave the key unset";
const HIGH_PRIO_POOL: &str = "(the RocksDB 7.8 C API Eddy links has no high-priority pool in its LRU cache: index and filter blocks share the slot's block cache with data blocks; docs/state-backends.md)";
const PEM_NOT_JKS: &str = "(Eddy reads PEM files, not Java keystores: security.ssl.{internal,rest}.{cert,key,trust-cert}; docs/security.md)";
const CLAIM_REFUSED: &str = "(LEGACY is Flink's deprecated mode; NO_CLAIM never deletes the restored snapshot, CLAIM takes ownership and deletes it once subsumed)";

fn never(_: &Value) -> bool {
    false
}
fn is_no_claim_or_claim(v: &Value) -> bool {
    *v == Value::Enum("NO_CLAIM") || *v == Value::Enum("CLAIM")
}
fn not_s3(v: &Value) -> bool {
    match v {
        Value::Path(p) => !p.to_string_lossy().starts_with("s3://"),
        _ => true,
    }
}

const fn limited(
    accepts: fn(&Value) -> bool,
    allowed: &'static str,
    reason: &'static str,
) -> Support {
    Support::Limited {
        accepts,
        allowed,
        reason,
    }
}

/// One row per key of `keys::KEYS` (canonical names), in the same order.
#[rustfmt::skip]
pub static SUPPORT: &[(&str, Support)] = &[
    ("jobmanager.rpc.address", Support::Works),
    ("jobmanager.rpc.port", Support::Works),
    ("jobmanager.memory.process.size", Support::Documented),
    ("taskmanager.memory.process.size", Support::Documented),
    ("taskmanager.memory.managed.size", Support::Works),
    ("taskmanager.memory.managed.fraction", Support::Works),
    ("taskmanager.numberOfTaskSlots", Support::Works),
    ("taskmanager.host", Support::Works),
    ("taskmanager.data.port", Support::Works),
    ("taskmanager.registration.timeout", limited(never, UNSET, "(a TaskManager retries its registration until it is stopped)")),
    ("parallelism.default", Support::Works),
    ("pipeline.max-parallelism", Support::Works),
    ("resourcemanager.mode", Support::Works),
    ("resourcemanager.active.taskmanagers", Support::Works),
    ("cluster.jobmanager.restart-attempts", Support::Works),
    ("env.log.dir", Support::Works),
    ("high-availability.type", Support::Works),
    ("high-availability.storageDir", limited(not_s3, "a local or shared path, or a file:// URI", S3_ISSUE)),
    ("high-availability.cluster-id", Support::Works),
    ("high-availability.zookeeper.quorum", Support::Works),
    ("high-availability.zookeeper.path.root", Support::Works),
    ("high-availability.zookeeper.client.session-timeout", Support::Works),
    ("high-availability.zookeeper.client.connection-timeout", Support::Works),
    ("high-availability.zookeeper.client.retry-wait", limited(never, UNSET, "(Eddy's ZooKeeper client retries with its own back-off, see docs/ha.md)")),
    ("high-availability.zookeeper.client.max-retry-attempts", limited(never, UNSET, "(Eddy's ZooKeeper client retries with its own back-off, see docs/ha.md)")),
    ("high-availability.zookeeper.client.tolerate-suspended-connections", Support::Works),
    ("high-availability.jobmanager.port", Support::Works),
    ("state.backend.type", Support::Works),
    ("state.backend.rocksdb.memory.managed", Support::Works),
    ("state.backend.rocksdb.memory.fixed-per-slot", Support::Works),
    ("state.backend.rocksdb.memory.write-buffer-ratio", Support::Works),
    ("state.backend.rocksdb.memory.high-prio-pool-ratio", limited(never, UNSET, HIGH_PRIO_POOL)),
    ("execution.checkpointing.dir", Support::Works),
    ("execution.checkpointing.savepoint-dir", Support::Works),
    ("execution.checkpointing.incremental", Support::Works),
    ("execution.checkpointing.num-retained", Support::Works),
    ("execution.state-recovery.from-local", Support::Works),
    ("execution.checkpointing.local-backup.dirs", Support::Works),
    ("execution.state-recovery.path", Support::Works),
    ("execution.state-recovery.ignore-unclaimed-state", Support::Works),
    ("execution.state-recovery.claim-mode", limited(is_no_claim_or_claim, "NO_CLAIM, CLAIM", CLAIM_REFUSED)),
    ("s3.endpoint", Support::Works),
    ("s3.region", Support::Works),
    ("s3.access-key", Support::Works),
    ("s3.secret-key", Support::Works),
    ("s3.path.style.access", Support::Works),
    ("jobmanager.execution.failover-strategy", Support::Works),
    ("restart-strategy.type", Support::Works),
    ("restart-strategy.fixed-delay.attempts", Support::Works),
    ("restart-strategy.fixed-delay.delay", Support::Works),
    ("restart-strategy.failure-rate.max-failures-per-interval", Support::Works),
    ("restart-strategy.failure-rate.failure-rate-interval", Support::Works),
    ("restart-strategy.failure-rate.delay", Support::Works),
    ("restart-strategy.exponential-delay.initial-backoff", Support::Works),
    ("restart-strategy.exponential-delay.max-backoff", Support::Works),
    ("restart-strategy.exponential-delay.backoff-multiplier", Support::Works),
    ("restart-strategy.exponential-delay.reset-backoff-threshold", Support::Works),
    ("restart-strategy.exponential-delay.jitter-factor", Support::Works),
    ("restart-strategy.exponential-delay.attempts-before-reset-backoff", Support::Works),
    ("execution.checkpointing.interval", Support::Works),
    ("execution.checkpointing.mode", Support::Works),
    ("execution.checkpointing.timeout", Support::Works),
    ("execution.checkpointing.max-concurrent-checkpoints", Support::Works),
    ("execution.checkpointing.min-pause", Support::Works),
    ("execution.checkpointing.tolerable-failed-checkpoints", Support::Works),
    ("execution.checkpointing.externalized-checkpoint-retention", Support::Works),
    ("pekko.framesize", Support::Works),
    ("heartbeat.interval", Support::Works),
    ("heartbeat.timeout", Support::Works),
    ("taskmanager.slot.timeout", limited(never, UNSET, "(a TaskManager cancels the tasks of a disconnected JobMaster and frees their slots at once)")),
    ("slot.request.timeout", Support::Works),
    ("jobstore.max-capacity", Support::Works),
    ("jobstore.expiration-time", Support::Works),
    ("web.exception-history-size", Support::Works),
    ("rest.address", Support::Works),
    ("rest.port", Support::Works),
    ("metrics.reporter.prom.port", Support::Works),
    ("rest.bind-address", Support::Works),
    ("rest.server.max-content-length", Support::Works),
    ("web.submit.enable", Support::Works),
    ("web.cancel.enable", Support::Works),
    ("eddy.rest.auth.token-file", Support::Works),
    ("security.ssl.internal.enabled", Support::Works),
    ("security.ssl.internal.cert", Support::Works),
    ("security.ssl.internal.key", Support::Works),
    ("security.ssl.internal.trust-cert", Support::Works),
    ("security.ssl.rest.enabled", Support::Works),
    ("security.ssl.rest.cert", Support::Works),
    ("security.ssl.rest.key", Support::Works),
    ("security.ssl.rest.trust-cert", Support::Works),
    ("security.ssl.internal.keystore", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.internal.truststore", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.internal.keystore-password", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.internal.key-password", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.internal.truststore-password", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.rest.keystore", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.rest.truststore", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.rest.keystore-password", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.rest.key-password", limited(never, UNSET, PEM_NOT_JKS)),
    ("security.ssl.rest.truststore-password", limited(never, UNSET, PEM_NOT_JKS)),
    ("eddy.test-hooks.enabled", Support::Works),
    ("execution.buffer-timeout", Support::Works),
    ("taskmanager.network.max-frame-size", Support::Works),
    ("taskmanager.memory.network.fraction", Support::Works),
    ("taskmanager.memory.network.min", Support::Works),
    ("taskmanager.memory.network.max", Support::Works),
    ("taskmanager.memory.segment-size", Support::Works),
    ("taskmanager.network.memory.buffers-per-channel", Support::Works),
    ("taskmanager.network.memory.floating-buffers-per-gate", Support::Works),
];

/// The support row of a canonical key name.
pub fn support_of(canonical: &str) -> Option<Support> {
    SUPPORT
        .iter()
        .find(|(k, _)| *k == canonical)
        .map(|(_, s)| *s)
}

/// Refuses `value` (already parsed for `canonical`) when Eddy cannot do what it asks; the error
/// names the key as the user wrote it and the value as written.
pub(crate) fn check_supported(
    canonical: &str,
    written_key: &str,
    raw: &str,
    value: &Value,
) -> Result<(), ConfigError> {
    match support_of(canonical) {
        Some(Support::Limited {
            accepts,
            allowed,
            reason,
        }) if !accepts(value) => Err(ConfigError::Unsupported {
            key: one_line(written_key),
            value: one_line(raw.trim()),
            reason: reason.to_string(),
            allowed: allowed.to_string(),
        }),
        _ => Ok(()),
    }
}
