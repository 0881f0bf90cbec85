//! The one table of configuration keys Eddy supports: canonical (Flink 2.x) name, older alias
//! names, value type, default and a one-line description, plus name lookup and "did you mean".
//! Adding a key means adding a row here (and a paragraph in docs/configuration.md). This file must
//! never read files or parse values.

use super::values::{ValueType, INT_MAX};

/// One supported key.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    /// Canonical name: what [`super::Config`] stores it under.
    pub key: &'static str,
    /// Older / alternative names, normalised to `key` on load.
    pub aliases: &'static [&'static str],
    pub ty: ValueType,
    /// The default in the same text form a user would write; `None` = unset unless configured.
    pub default: Option<&'static str>,
    pub description: &'static str,
}

const fn spec(
    key: &'static str,
    aliases: &'static [&'static str],
    ty: ValueType,
    default: Option<&'static str>,
    description: &'static str,
) -> KeySpec {
    KeySpec {
        key,
        aliases,
        ty,
        default,
        description,
    }
}

const DUR: ValueType = ValueType::Duration { min_ms: 0 };
const POS_DUR: ValueType = ValueType::Duration { min_ms: 1 };
const POS_INT: ValueType = ValueType::Int {
    min: 1,
    max: INT_MAX,
};
const NONNEG_INT: ValueType = ValueType::Int {
    min: 0,
    max: INT_MAX,
};
const PARALLELISM: ValueType = ValueType::Int { min: 1, max: 32768 };

/// Most slots one TaskManager may offer; the JobManager refuses a registration above it.
pub const MAX_TASK_SLOTS: u32 = 1024;
/// Bounds of the frame-size keys (`pekko.framesize`, `taskmanager.network.max-frame-size`):
/// below 64 KiB ordinary messages do not fit; a length prefix is 32 bits.
pub const MIN_FRAME_SIZE: u64 = 64 << 10;
pub const MAX_FRAME_SIZE: u64 = 1 << 30;
/// Bounds of the network buffer keys (a channel's credits fit the data plane's CREDIT frame check).
pub const MAX_BUFFERS_PER_CHANNEL: u32 = 1024;
pub const MAX_FLOATING_PER_GATE: u32 = 16384;
pub const MIN_SEGMENT_SIZE: u64 = 4 << 10;
pub const MAX_SEGMENT_SIZE: u64 = 16 << 20;
/// The total a TaskManager's network fraction applies to while `taskmanager.memory.process.size`
/// is unset: the value in Flink's default configuration file.
pub const DEFAULT_TM_PROCESS_SIZE: u64 = 1728 << 20;

pub const HA_TYPES: &[&[&str]] = &[&["none", "standalone"], &["zookeeper"]];
pub const STATE_BACKENDS: &[&[&str]] = &[&["hashmap"], &["rocksdb"]];
pub const CLAIM_MODES: &[&[&str]] = &[&["NO_CLAIM"], &["CLAIM"], &["LEGACY"]];
pub const FAILOVER_STRATEGIES: &[&[&str]] = &[&["region"], &["full"]];
pub const RESTART_STRATEGIES: &[&[&str]] = &[
    &["none", "off", "disable"],
    &["fixed-delay", "fixeddelay"],
    &["failure-rate", "failurerate"],
    &["exponential-delay", "exponentialdelay"],
];
pub const CHECKPOINTING_MODES: &[&[&str]] = &[&["EXACTLY_ONCE"], &["AT_LEAST_ONCE"]];
pub const RETENTIONS: &[&[&str]] = &[
    &["NO_EXTERNALIZED_CHECKPOINTS"],
    &["DELETE_ON_CANCELLATION"],
    &["RETAIN_ON_CANCELLATION"],
];
pub const RM_MODES: &[&[&str]] = &[&["standalone"], &["active"]];

/// Every supported key, grouped as in docs/configuration.md (one row per key, hence unformatted).
#[rustfmt::skip]
pub static KEYS: &[KeySpec] = &[
    // --- cluster layout and addresses
    spec("jobmanager.rpc.address", &[], ValueType::Host, Some("localhost"), "Host of the JobManager's RPC endpoint (without HA)."),
    spec("jobmanager.rpc.port", &[], ValueType::Port, Some("6123"), "Port of the JobManager's RPC endpoint (without HA)."),
    spec("jobmanager.memory.process.size", &[], ValueType::Size, None, "Accepted for Flink compatibility and reported; not enforced."),
    spec("taskmanager.memory.process.size", &[], ValueType::Size, None, "Reported, not enforced; the base of taskmanager.memory.network.fraction (1728m when unset) and taskmanager.memory.managed.fraction (1280m when unset)."),
    spec("taskmanager.memory.managed.size", &[], ValueType::Size, None, "Managed memory of a TaskManager: RocksDB's block caches and write buffers, divided equally over its slots (default: fraction x process size)."),
    spec("taskmanager.memory.managed.fraction", &[], ValueType::Float { min: 0.0, max: 1.0 }, Some("0.4"), "Managed memory as a fraction of taskmanager.memory.process.size (1280m when unset) when managed.size is unset."),
    spec("taskmanager.numberOfTaskSlots", &[], ValueType::Int { min: 1, max: MAX_TASK_SLOTS as i64 }, Some("1"), "Slots each TaskManager offers."),
    spec("taskmanager.host", &[], ValueType::Host, Some("127.0.0.1"), "Address a TaskManager binds and advertises."),
    spec("taskmanager.data.port", &[], ValueType::Port, Some("0"), "TaskManager data-exchange port (0 = any free port)."),
    spec("taskmanager.registration.timeout", &[], POS_DUR, Some("5 min"), "Flink: a TaskManager that cannot register within this time exits. Refused (support.rs)."),
    spec("parallelism.default", &[], PARALLELISM, Some("1"), "Parallelism of jobs submitted without -p."),
    spec("pipeline.max-parallelism", &[], PARALLELISM, Some("128"), "Number of key groups: upper bound for rescaling keyed state."),
    spec("resourcemanager.mode", &[], ValueType::Enum(RM_MODES), Some("standalone"), "standalone: TaskManagers are started externally; active: the ResourceManager starts replacements."),
    spec("resourcemanager.active.taskmanagers", &[], POS_INT, Some("1"), "Active mode: how many TaskManager processes the leader's ResourceManager keeps running in the cluster."),
    spec("cluster.jobmanager.restart-attempts", &[], NONNEG_INT, Some("0"), "How often `eddy cluster` restarts a dead JobManager process (like yarn.application-attempts)."),
    spec("env.log.dir", &[], ValueType::LocalPath, Some("./log"), "Directory for log and pid files of background processes."),
    // --- high availability
    spec("high-availability.type", &["high-availability", "recovery.mode"], ValueType::Enum(HA_TYPES), Some("none"), "HA services: none (fixed addresses) or zookeeper (leader election, standby JobManagers)."),
    spec("high-availability.storageDir", &["high-availability.zookeeper.storageDir"], ValueType::StoragePath, None, "Where HA metadata (JobGraphs, checkpoint pointers) is stored; required for zookeeper."),
    spec("high-availability.cluster-id", &["high-availability.zookeeper.path.namespace"], ValueType::Text, Some("/default"), "Namespace separating clusters sharing one ZooKeeper / storageDir."),
    spec("high-availability.zookeeper.quorum", &[], ValueType::HostPortList, None, "ZooKeeper servers; required for zookeeper."),
    spec("high-availability.zookeeper.path.root", &[], ValueType::Text, Some("/flink"), "Root znode; Eddy's nodes live under <root><cluster-id>."),
    spec("high-availability.zookeeper.client.session-timeout", &[], POS_DUR, Some("60 s"), "ZooKeeper session timeout: expiry means leadership is lost."),
    spec("high-availability.zookeeper.client.connection-timeout", &[], POS_DUR, Some("15 s"), "How long to wait for a ZooKeeper session; per-connection idle timeout up to 3/5 of the session timeout."),
    spec("high-availability.zookeeper.client.retry-wait", &[], POS_DUR, Some("5 s"), "Flink: Curator's base retry wait. Refused (support.rs)."),
    spec("high-availability.zookeeper.client.max-retry-attempts", &[], NONNEG_INT, Some("3"), "Flink: Curator's retry count. Refused (support.rs)."),
    spec("high-availability.zookeeper.client.tolerate-suspended-connections", &[], ValueType::Bool, Some("false"), "false: a suspended connection revokes leadership at once; true: wait for session loss."),
    spec("high-availability.jobmanager.port", &[], ValueType::Port, Some("0"), "JobManager RPC port with HA (0 = any; found through leader retrieval)."),
    // --- state, checkpoint storage, recovery
    spec("state.backend.type", &["state.backend"], ValueType::Enum(STATE_BACKENDS), Some("hashmap"), "hashmap (heap) or rocksdb (an embedded RocksDB instance per keyed operator subtask, docs/state-backends.md); both take full snapshots."),
    spec("state.backend.rocksdb.memory.managed", &[], ValueType::Bool, Some("true"), "true: the RocksDB instances of a slot share the slot's managed memory (one block cache, write buffers split); false: 64 MiB per instance."),
    spec("state.backend.rocksdb.memory.fixed-per-slot", &[], ValueType::Size, None, "RocksDB memory of each slot, instead of the managed memory's share."),
    spec("state.backend.rocksdb.memory.write-buffer-ratio", &[], ValueType::Float { min: 0.01, max: 0.99 }, Some("0.5"), "Share of a slot's RocksDB memory for write buffers (memtables); the rest is the block cache."),
    spec("state.backend.rocksdb.memory.high-prio-pool-ratio", &[], ValueType::Float { min: 0.0, max: 1.0 }, Some("0.1"), "Flink: the block cache's high-priority pool. Refused (support.rs)."),
    spec("execution.checkpointing.dir", &["state.checkpoints.dir"], ValueType::StoragePath, None, "Checkpoint root directory, reachable by all processes."),
    spec("execution.checkpointing.savepoint-dir", &["state.savepoints.dir"], ValueType::StoragePath, None, "Default savepoint target directory (savepoint-<job>-<random> is created under it)."),
    spec("execution.checkpointing.incremental", &["state.backend.incremental"], ValueType::Bool, Some("false"), "Incremental checkpoints: rocksdb uploads only new SST files (hashmap: full checkpoints, as Flink)."),
    spec("execution.checkpointing.num-retained", &["state.checkpoints.num-retained"], POS_INT, Some("1"), "Completed checkpoints kept."),
    spec("execution.state-recovery.from-local", &["state.backend.local-recovery"], ValueType::Bool, Some("false"), "Task-local recovery: each TaskManager keeps a local copy of the state it uploads and restores a subtask redeployed on it from that copy."),
    spec("execution.checkpointing.local-backup.dirs", &["taskmanager.state.local.root-dirs"], ValueType::LocalPathList, None, "Root directories of the local state copies (default: <temp dir>/eddy-local-state); a TaskManager uses <root>/<tm-id>."),
    spec("execution.state-recovery.path", &["execution.savepoint.path"], ValueType::StoragePath, None, "Savepoint or retained checkpoint a submitted job restores from (-s)."),
    spec("execution.state-recovery.ignore-unclaimed-state", &["execution.savepoint.ignore-unclaimed-state"], ValueType::Bool, Some("false"), "--allow-non-restored-state: skip state of operators the job no longer has."),
    spec("execution.state-recovery.claim-mode", &["execution.savepoint-restore-mode"], ValueType::Enum(CLAIM_MODES), Some("NO_CLAIM"), "Who owns a restored snapshot: NO_CLAIM (the user; never deleted or modified) or CLAIM (the job; deleted once subsumed by its own retained checkpoints); LEGACY refused."),
    spec("s3.endpoint", &[], ValueType::Text, None, "S3 endpoint URL for s3:// checkpoint and savepoint paths (e.g. http://127.0.0.1:9000); unset: AWS_ENDPOINT, else AWS."),
    spec("s3.region", &[], ValueType::Text, None, "S3 region; unset: AWS_DEFAULT_REGION, else us-east-1."),
    spec("s3.access-key", &[], ValueType::Text, None, "S3 access key id; unset: AWS_ACCESS_KEY_ID."),
    spec("s3.secret-key", &[], ValueType::Text, None, "S3 secret access key (shown masked); unset: AWS_SECRET_ACCESS_KEY."),
    spec("s3.path.style.access", &[], ValueType::Bool, None, "true: path-style requests (endpoint/bucket/key), as MinIO and moto need; unset/false: virtual-hosted style."),
    // --- failover and restart
    spec("jobmanager.execution.failover-strategy", &[], ValueType::Enum(FAILOVER_STRATEGIES), Some("region"), "region: restart the failed pipelined region(s); full: restart every task."),
    spec("restart-strategy.type", &["restart-strategy"], ValueType::Enum(RESTART_STRATEGIES), None, "Restart strategy; unset: none without checkpointing, fixed-delay (unlimited) with it."),
    spec("restart-strategy.fixed-delay.attempts", &[], ValueType::Count { min: 0 }, Some("1"), "Restarts before the job fails."),
    spec("restart-strategy.fixed-delay.delay", &[], DUR, Some("1 s"), "Wait between restarts."),
    spec("restart-strategy.failure-rate.max-failures-per-interval", &[], POS_INT, Some("1"), "Failures allowed within one interval."),
    spec("restart-strategy.failure-rate.failure-rate-interval", &[], POS_DUR, Some("1 min"), "Window in which failures are counted."),
    spec("restart-strategy.failure-rate.delay", &[], DUR, Some("1 s"), "Wait between restarts."),
    spec("restart-strategy.exponential-delay.initial-backoff", &[], DUR, Some("1 s"), "First restart delay."),
    spec("restart-strategy.exponential-delay.max-backoff", &[], DUR, Some("1 min"), "Upper bound of the restart delay."),
    spec("restart-strategy.exponential-delay.backoff-multiplier", &[], ValueType::Float { min: 1.0, max: f64::MAX }, Some("1.5"), "Factor the delay grows by after each failure."),
    spec("restart-strategy.exponential-delay.reset-backoff-threshold", &[], POS_DUR, Some("1 h"), "Failure-free running time after which the delay resets."),
    spec("restart-strategy.exponential-delay.jitter-factor", &[], ValueType::Float { min: 0.0, max: 1.0 }, Some("0.1"), "Random ± fraction applied to each delay."),
    spec("restart-strategy.exponential-delay.attempts-before-reset-backoff", &[], ValueType::Count { min: 0 }, Some("unlimited"), "Restarts allowed before the backoff resets; then the job fails."),
    // --- checkpointing
    spec("execution.checkpointing.interval", &[], ValueType::Duration { min_ms: 10 }, None, "Checkpoint trigger interval; unset = checkpointing disabled."),
    spec("execution.checkpointing.mode", &[], ValueType::Enum(CHECKPOINTING_MODES), Some("EXACTLY_ONCE"), "EXACTLY_ONCE (aligned barriers) or AT_LEAST_ONCE (no alignment)."),
    spec("execution.checkpointing.timeout", &[], POS_DUR, Some("10 min"), "A checkpoint not complete after this time is aborted."),
    spec("execution.checkpointing.max-concurrent-checkpoints", &[], POS_INT, Some("1"), "Checkpoints in flight at once."),
    spec("execution.checkpointing.min-pause", &[], DUR, Some("0 ms"), "Minimum time between the end of one checkpoint and the next trigger."),
    spec("execution.checkpointing.tolerable-failed-checkpoints", &[], NONNEG_INT, Some("0"), "Consecutive failed checkpoints tolerated before the job fails over."),
    spec("execution.checkpointing.externalized-checkpoint-retention", &[], ValueType::Enum(RETENTIONS), Some("NO_EXTERNALIZED_CHECKPOINTS"), "Whether retained checkpoints survive cancellation."),
    // --- failure detection and timeouts
    spec("pekko.framesize", &["akka.framesize"], ValueType::Size, Some("10485760b"), "Largest RPC message between JobManager and TaskManagers (64k..1g); a larger one closes the connection."),
    spec("heartbeat.interval", &[], POS_DUR, Some("10 s"), "Interval between heartbeats."),
    spec("heartbeat.timeout", &[], POS_DUR, Some("50 s"), "A peer silent for this long is considered dead."),
    spec("taskmanager.slot.timeout", &[], POS_DUR, Some("10 s"), "Flink: free slots of a JobMaster disconnected this long. Refused (support.rs)."),
    spec("slot.request.timeout", &[], POS_DUR, Some("5 min"), "A JobMaster fails the job's scheduling if slots are not granted within this time."),
    // --- ended jobs and histories (bounded memory)
    spec("jobstore.max-capacity", &[], POS_INT, Some("2147483647"), "Ended jobs the JobManager keeps (the oldest are evicted first)."),
    spec("jobstore.expiration-time", &[], POS_DUR, Some("1 h"), "An ended job is evicted from the JobManager this long after it ended."),
    spec("web.exception-history-size", &[], POS_INT, Some("16"), "Exceptions kept per job (the newest)."),
    // --- REST
    spec("rest.address", &[], ValueType::Host, Some("localhost"), "Address clients use to reach the REST endpoint."),
    spec("rest.port", &[], ValueType::Port, Some("8081"), "REST port."),
    spec("metrics.reporter.prom.port", &[], ValueType::PortRange, Some("9250-9299"), "Port, or range of ports (the first free one is taken), of each TaskManager's Prometheus /metrics endpoint; the JobManager's /metrics is on rest.port."),
    spec("rest.bind-address", &[], ValueType::Host, Some("127.0.0.1"), "Address the REST server binds (default: loopback only; 0.0.0.0 = all interfaces)."),
    spec("rest.server.max-content-length", &[], ValueType::Size, Some("1m"), "Largest request body the REST server reads; a larger one is answered 413."),
    spec("web.submit.enable", &[], ValueType::Bool, Some("true"), "Whether jobs may be submitted over REST (POST /jobs); false = 403."),
    spec("web.cancel.enable", &[], ValueType::Bool, Some("true"), "Whether jobs may be cancelled over REST (PATCH /jobs/:id); false = 403."),
    spec("eddy.rest.auth.token-file", &[], ValueType::LocalPath, None, "Eddy: a file holding the REST bearer token; set = every request needs `Authorization: Bearer <token>` (401 otherwise)."),
    // --- TLS (Flink's switches; Eddy reads PEM files named by Eddy's own keys)
    spec("security.ssl.internal.enabled", &["security.ssl.enabled"], ValueType::Bool, Some("false"), "Mutual TLS on RPC (JobManager <-> TaskManager) and data connections (TaskManager <-> TaskManager); needs security.ssl.internal.{cert,key,trust-cert}."),
    spec("security.ssl.internal.cert", &[], ValueType::LocalPath, None, "Eddy: PEM certificate (chain) this process presents on RPC and data connections, as server and as client."),
    spec("security.ssl.internal.key", &[], ValueType::LocalPath, None, "Eddy: PEM private key of security.ssl.internal.cert."),
    spec("security.ssl.internal.trust-cert", &[], ValueType::LocalPath, None, "Eddy: PEM CA certificate(s); a peer must present a certificate signed by one of them."),
    spec("security.ssl.rest.enabled", &[], ValueType::Bool, Some("false"), "HTTPS on the REST endpoint (server: security.ssl.rest.{cert,key}; the CLI: security.ssl.rest.trust-cert)."),
    spec("security.ssl.rest.cert", &[], ValueType::LocalPath, None, "Eddy: PEM certificate (chain) the REST server presents."),
    spec("security.ssl.rest.key", &[], ValueType::LocalPath, None, "Eddy: PEM private key of security.ssl.rest.cert."),
    spec("security.ssl.rest.trust-cert", &[], ValueType::LocalPath, None, "Eddy: PEM CA certificate(s) the CLI's REST client trusts."),
    spec("security.ssl.internal.keystore", &[], ValueType::LocalPath, None, "Flink: a Java keystore. Refused: Eddy reads PEM files."),
    spec("security.ssl.internal.truststore", &[], ValueType::LocalPath, None, "Flink: a Java truststore. Refused: Eddy reads PEM files."),
    spec("security.ssl.internal.keystore-password", &[], ValueType::Text, None, "Flink: a Java keystore password. Refused: Eddy reads PEM files."),
    spec("security.ssl.internal.key-password", &[], ValueType::Text, None, "Flink: a Java keystore password. Refused: Eddy reads PEM files."),
    spec("security.ssl.internal.truststore-password", &[], ValueType::Text, None, "Flink: a Java keystore password. Refused: Eddy reads PEM files."),
    spec("security.ssl.rest.keystore", &[], ValueType::LocalPath, None, "Flink: a Java keystore. Refused: Eddy reads PEM files."),
    spec("security.ssl.rest.truststore", &[], ValueType::LocalPath, None, "Flink: a Java truststore. Refused: Eddy reads PEM files."),
    spec("security.ssl.rest.keystore-password", &[], ValueType::Text, None, "Flink: a Java keystore password. Refused: Eddy reads PEM files."),
    spec("security.ssl.rest.key-password", &[], ValueType::Text, None, "Flink: a Java keystore password. Refused: Eddy reads PEM files."),
    spec("security.ssl.rest.truststore-password", &[], ValueType::Text, None, "Flink: a Java keystore password. Refused: Eddy reads PEM files."),
    // --- test hooks (Eddy's own key)
    spec("eddy.test-hooks.enabled", &[], ValueType::Bool, Some("false"), "Eddy: allow test hooks (the built-in jobs' failure and delay arguments, EDDY_FAULT_POINTS); false = refused."),
    // --- data plane
    spec("execution.buffer-timeout", &[], DUR, Some("100 ms"), "How long a partly filled output buffer may wait before it is sent."),
    spec("taskmanager.network.max-frame-size", &[], ValueType::Size, Some("16m"), "Largest data frame (one buffer of records) between TaskManagers (64k..1g); a larger one fails the sending task."),
    spec("taskmanager.memory.network.fraction", &[], ValueType::Float { min: 0.0, max: 1.0 }, Some("0.1"), "Share of taskmanager.memory.process.size (1728m if unset) for the network buffer pool, clamped to min..max."),
    spec("taskmanager.memory.network.min", &[], ValueType::Size, Some("64m"), "Smallest network buffer pool of a TaskManager."),
    spec("taskmanager.memory.network.max", &[], ValueType::Size, None, "Largest network buffer pool of a TaskManager; unset = no bound (Flink 2.x: Long.MAX_VALUE bytes)."),
    spec("taskmanager.memory.segment-size", &[], ValueType::Size, Some("32k"), "Size of one network buffer: a batch of records on a channel fills at most one (a power of two from 4k to 16m)."),
    spec("taskmanager.network.memory.buffers-per-channel", &[], ValueType::Int { min: 1, max: MAX_BUFFERS_PER_CHANNEL as i64 }, Some("2"), "Exclusive buffers (credits) of each input channel."),
    spec("taskmanager.network.memory.floating-buffers-per-gate", &[], ValueType::Int { min: 0, max: MAX_FLOATING_PER_GATE as i64 }, Some("8"), "Floating buffers shared by the input channels of a task, lent to a channel whose exclusive buffers are all in use."),
];

/// Keys a submitted job may set (`POST /jobs` `config`, `eddy run -D`): what one job decides for
/// itself. Every other key (addresses, ports, HA, storage directories, REST and test-hook
/// switches) belongs to the cluster's configuration and is refused in a submission.
pub const JOB_KEY_PREFIXES: &[&str] = &["restart-strategy."];
/// The job-level keys that are not under a prefix of [`JOB_KEY_PREFIXES`].
pub const JOB_KEYS: &[&str] = &[
    "parallelism.default",
    "pipeline.max-parallelism",
    "jobmanager.execution.failover-strategy",
    "state.backend.type",
    "state.backend.rocksdb.memory.managed",
    "state.backend.rocksdb.memory.fixed-per-slot",
    "state.backend.rocksdb.memory.write-buffer-ratio",
    "state.backend.rocksdb.memory.high-prio-pool-ratio",
    "execution.checkpointing.interval",
    "execution.checkpointing.mode",
    "execution.checkpointing.timeout",
    "execution.checkpointing.max-concurrent-checkpoints",
    "execution.checkpointing.min-pause",
    "execution.checkpointing.tolerable-failed-checkpoints",
    "execution.checkpointing.externalized-checkpoint-retention",
    "execution.checkpointing.num-retained",
    "execution.checkpointing.incremental",
    "execution.state-recovery.from-local",
    "execution.state-recovery.ignore-unclaimed-state",
    "execution.state-recovery.claim-mode",
    "execution.buffer-timeout",
];

/// Whether a submitted job may set `canonical` (see [`JOB_KEYS`]).
pub fn is_job_key(canonical: &str) -> bool {
    JOB_KEYS.contains(&canonical) || JOB_KEY_PREFIXES.iter().any(|p| canonical.starts_with(p))
}

/// The spec for a canonical name or an alias (exact, case-sensitive like Flink).
pub fn lookup(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|s| s.key == name || s.aliases.contains(&name))
}

/// The spec for a canonical name only.
pub(crate) fn canonical(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.key == name)
}

/// The known name (canonical or alias) closest to `unknown`, if it is close enough to be a typo.
pub fn suggest(unknown: &str) -> Option<&'static str> {
    let wanted = unknown.to_lowercase();
    let limit = (wanted.chars().count() / 6).clamp(2, 4);
    KEYS.iter()
        .flat_map(|s| std::iter::once(s.key).chain(s.aliases.iter().copied()))
        .map(|name| (edit_distance(&wanted, &name.to_lowercase()), name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// `; did you mean '<key>'?` or empty.
pub(crate) fn suggestion_suffix(unknown: &str) -> String {
    suggest(unknown)
        .map(|k| format!("; did you mean '{k}'?"))
        .unwrap_or_default()
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
