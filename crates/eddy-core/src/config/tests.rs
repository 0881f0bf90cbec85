//! Unit tests of the configuration system: parsing of durations and sizes, the key table, YAML
//! flattening, precedence, warnings, every error shape, defaults, typed settings, cross-key rules
//! and the conf-dir files. Tests never touch the process environment.

use super::conf_dir::resolve_with;
use super::*;
use crate::settings::{
    CheckpointingMode, CheckpointingSettings, ExternalizedCheckpointRetention,
    FailoverStrategyKind, RestartStrategyConfig,
};
use std::path::PathBuf;
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A conf dir holding `config.yaml` with `yaml`.
fn dir_with(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(CONFIG_FILE), yaml).expect("write config.yaml");
    dir
}

fn load_yaml(yaml: &str, overrides: &[&str]) -> Result<Loaded, ConfigError> {
    let dir = dir_with(yaml);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    load(Some(dir.path()), &overrides)
}

fn err_of(pairs: &[(&str, &str)]) -> String {
    match Config::from_pairs(pairs) {
        Ok(c) => panic!("expected an error for {pairs:?}, got {c:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "multi-line error: {text}");
            text
        }
    }
}

fn cfg(pairs: &[(&str, &str)]) -> Config {
    Config::from_pairs(pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

// ---------------------------------------------------------------- durations

#[test]
fn durations_in_every_form() {
    let cases: &[(&str, Duration)] = &[
        ("10 s", secs(10)),
        ("10s", secs(10)),
        ("500 ms", ms(500)),
        ("500ms", ms(500)),
        ("1 min", secs(60)),
        ("1min", secs(60)),
        ("2 h", secs(7200)),
        ("1 d", secs(86_400)),
        ("100", ms(100)),
        ("0", Duration::ZERO),
        ("  10 S  ", secs(10)),
        ("1 MIN", secs(60)),
        ("5 ns", Duration::from_nanos(5)),
        ("5 nano", Duration::from_nanos(5)),
        ("5 nanoseconds", Duration::from_nanos(5)),
        ("7 us", Duration::from_micros(7)),
        ("7 µs", Duration::from_micros(7)),
        ("7 micro", Duration::from_micros(7)),
        ("7 microseconds", Duration::from_micros(7)),
        ("3 milli", ms(3)),
        ("3 millis", ms(3)),
        ("3 millisecond", ms(3)),
        ("3 milliseconds", ms(3)),
        ("4 sec", secs(4)),
        ("4 secs", secs(4)),
        ("4 second", secs(4)),
        ("4 seconds", secs(4)),
        ("2 m", secs(120)),
        ("2 mins", secs(120)),
        ("2 minute", secs(120)),
        ("2 minutes", secs(120)),
        ("1 hour", secs(3600)),
        ("2 hours", secs(7200)),
        ("1 day", secs(86_400)),
        ("2 days", secs(172_800)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text), Ok(*want), "{text:?}");
    }
}

#[test]
fn durations_rejected() {
    for bad in [
        "",
        "s",
        "ms",
        "1.5 s",
        "-1 s",
        "10 parsecs",
        "10 s x",
        "ten s",
        "99999999999999999999999 d",
        "1 _s",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn durations_format_and_round_trip() {
    assert_eq!(format_duration(secs(10)), "10 s");
    assert_eq!(format_duration(secs(60)), "1 min");
    assert_eq!(format_duration(ms(1500)), "1500 ms");
    assert_eq!(format_duration(Duration::ZERO), "0 ms");
    assert_eq!(format_duration(secs(86_400)), "1 d");
    assert_eq!(format_duration(secs(3600)), "1 h");
    for d in [
        Duration::from_nanos(1),
        Duration::from_micros(3),
        ms(7),
        secs(90),
        secs(172_800),
        Duration::new(5, 1),
    ] {
        assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
    }
}

// ---------------------------------------------------------------- sizes

#[test]
fn sizes_in_every_form() {
    let cases: &[(&str, u64)] = &[
        ("1024m", 1 << 30),
        ("1g", 1 << 30),
        ("1G", 1 << 30),
        ("512 kb", 512 << 10),
        ("4096", 4096),
        ("1 b", 1),
        ("3 bytes", 3),
        ("1k", 1024),
        ("1 kibibytes", 1024),
        ("2 mb", 2 << 20),
        ("2 mebibytes", 2 << 20),
        ("1 gb", 1 << 30),
        ("1 gibibytes", 1 << 30),
        ("1t", 1 << 40),
        ("1 TB", 1 << 40),
        ("1 tebibytes", 1 << 40),
    ];
    for (text, want) in cases {
        assert_eq!(parse_size(text), Ok(*want), "{text:?}");
    }
    for bad in ["", "g", "1.5g", "-1m", "1 zb", "99999999999999t", "1 g b"] {
        assert!(parse_size(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(format_size(1 << 30), "1g");
    assert_eq!(format_size(1536 << 20), "1536m");
    assert_eq!(format_size(100), "100b");
    assert_eq!(format_size(0), "0b");
    for n in [0u64, 1, 1023, 1024, 3 << 40, 12345 << 10] {
        assert_eq!(parse_size(&format_size(n)), Ok(n));
    }
}

// ---------------------------------------------------------------- key table

/// A valid value of each type, for table-driven tests.
fn sample(ty: ValueType) -> &'static str {
    match ty {
        ValueType::Duration { .. } => "20 s",
        ValueType::Size => "1g",
        ValueType::Bool => "true",
        ValueType::Int { .. } | ValueType::Count { .. } => "2",
        ValueType::Float { max, .. } if max < 1.0 => "0.5",
        ValueType::Float { .. } => "1.0",
        ValueType::Enum(groups) => groups[groups.len() - 1][0],
        ValueType::Text => "/x",
        ValueType::LocalPath | ValueType::StoragePath | ValueType::LocalPathList => "/tmp/x",
        ValueType::Host => "example.org",
        ValueType::Port => "1234",
        ValueType::PortRange => "9250-9260",
        ValueType::HostPortList => "zk1:2181",
    }
}

/// A sample value of `spec`'s type that Eddy accepts today (`support.rs`), if it accepts any.
fn accepted_sample(spec: &KeySpec) -> &'static str {
    let preferred = sample(spec.ty);
    match support_of(spec.key) {
        Some(Support::Limited { accepts, .. }) => {
            let mut candidates = vec![preferred, "false"];
            if let ValueType::Enum(groups) = spec.ty {
                candidates.extend(groups.iter().map(|g| g[0]));
            }
            candidates
                .into_iter()
                .find(|c| spec.ty.parse(c).is_some_and(|v| accepts(&v)))
                .unwrap_or(preferred)
        }
        _ => preferred,
    }
}

#[test]
fn table_is_consistent() {
    let mut names = std::collections::BTreeSet::new();
    for spec in KEYS {
        for name in std::iter::once(spec.key).chain(spec.aliases.iter().copied()) {
            assert!(names.insert(name), "'{name}' listed twice");
        }
        if let Some(d) = spec.default {
            assert!(
                spec.ty.parse(d).is_some(),
                "default '{d}' of {} does not parse",
                spec.key
            );
        }
        assert!(
            spec.ty.parse(sample(spec.ty)).is_some(),
            "sample for {}",
            spec.key
        );
        assert!(!spec.description.is_empty());
    }
}

#[test]
fn every_spec_key_is_supported() {
    let required = [
        "jobmanager.rpc.address",
        "jobmanager.rpc.port",
        "jobmanager.memory.process.size",
        "taskmanager.memory.process.size",
        "taskmanager.numberOfTaskSlots",
        "parallelism.default",
        "pipeline.max-parallelism",
        "high-availability",
        "high-availability.type",
        "high-availability.storageDir",
        "high-availability.zookeeper.quorum",
        "high-availability.zookeeper.path.root",
        "high-availability.cluster-id",
        "high-availability.zookeeper.client.session-timeout",
        "high-availability.zookeeper.client.connection-timeout",
        "high-availability.zookeeper.client.tolerate-suspended-connections",
        "high-availability.jobmanager.port",
        "state.backend",
        "state.backend.type",
        "state.checkpoints.dir",
        "state.savepoints.dir",
        "state.backend.incremental",
        "state.checkpoints.num-retained",
        "state.backend.local-recovery",
        "taskmanager.state.local.root-dirs",
        "jobmanager.execution.failover-strategy",
        "restart-strategy",
        "restart-strategy.type",
        "restart-strategy.fixed-delay.attempts",
        "restart-strategy.fixed-delay.delay",
        "restart-strategy.failure-rate.max-failures-per-interval",
        "restart-strategy.failure-rate.failure-rate-interval",
        "restart-strategy.failure-rate.delay",
        "restart-strategy.exponential-delay.initial-backoff",
        "restart-strategy.exponential-delay.max-backoff",
        "restart-strategy.exponential-delay.backoff-multiplier",
        "restart-strategy.exponential-delay.reset-backoff-threshold",
        "restart-strategy.exponential-delay.jitter-factor",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff",
        "execution.checkpointing.interval",
        "execution.checkpointing.mode",
        "execution.checkpointing.timeout",
        "execution.checkpointing.max-concurrent-checkpoints",
        "execution.checkpointing.min-pause",
        "execution.checkpointing.tolerable-failed-checkpoints",
        "execution.checkpointing.externalized-checkpoint-retention",
        "execution.checkpointing.dir",
        "execution.checkpointing.num-retained",
        "execution.checkpointing.savepoint-dir",
        "execution.checkpointing.incremental",
        "execution.state-recovery.from-local",
        "execution.checkpointing.local-backup.dirs",
        "heartbeat.interval",
        "heartbeat.timeout",
        "rest.address",
        "rest.port",
        "rest.bind-address",
        "resourcemanager.mode",
        "env.log.dir",
        "cluster.jobmanager.restart-attempts",
        "taskmanager.slot.timeout",
        "taskmanager.data.port",
        "taskmanager.host",
        "slot.request.timeout",
        "execution.buffer-timeout",
    ];
    for key in required {
        assert!(lookup_key(key).is_some(), "{key} not supported");
    }
}

#[test]
fn docs_describe_every_key_and_alias() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let docs = std::fs::read_to_string(&path).expect("docs/configuration.md");
    for spec in KEYS {
        for name in std::iter::once(spec.key).chain(spec.aliases.iter().copied()) {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/configuration.md lacks `{name}`"
            );
        }
    }
}

#[test]
fn aliases_normalise_to_canonical_names() {
    let pairs = [
        ("high-availability", "high-availability.type"),
        ("state.backend", "state.backend.type"),
        ("restart-strategy", "restart-strategy.type"),
        ("state.checkpoints.dir", "execution.checkpointing.dir"),
        (
            "state.checkpoints.num-retained",
            "execution.checkpointing.num-retained",
        ),
        (
            "state.savepoints.dir",
            "execution.checkpointing.savepoint-dir",
        ),
        (
            "state.backend.incremental",
            "execution.checkpointing.incremental",
        ),
        (
            "state.backend.local-recovery",
            "execution.state-recovery.from-local",
        ),
        (
            "taskmanager.state.local.root-dirs",
            "execution.checkpointing.local-backup.dirs",
        ),
    ];
    for (alias, canonical) in pairs {
        assert_eq!(lookup_key(alias).map(|s| s.key), Some(canonical), "{alias}");
    }
    // Every alias of the table, loaded from a file, ends up under the canonical name.
    for spec in KEYS {
        for alias in spec.aliases {
            let value = accepted_sample(spec);
            let mut extra = String::new();
            if spec.key == "high-availability.type" {
                extra = "high-availability.zookeeper.quorum: zk:2181\nhigh-availability.storageDir: /ha\n".into();
            }
            if spec.key == "security.ssl.internal.enabled" {
                extra = "security.ssl.internal.cert: /c.pem\nsecurity.ssl.internal.key: /k.pem\nsecurity.ssl.internal.trust-cert: /ca.pem\n".into();
            }
            let loaded = load_yaml(&format!("{alias}: '{value}'\n{extra}"), &[]);
            if let Err(ConfigError::Unsupported { key, .. }) = &loaded {
                // A key Eddy refuses whatever its value: the error names the alias as written.
                assert_eq!(key, alias, "{loaded:?}");
                continue;
            }
            let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
            let c = loaded.config;
            assert_eq!(
                c.iter().find(|(k, _)| *k == *alias),
                None,
                "{alias} stored verbatim"
            );
            assert_eq!(c.get(spec.key), Some(value), "{alias}");
            assert_eq!(c.get(alias), Some(value), "get by alias {alias}");
        }
    }
}

// ---------------------------------------------------------------- what Eddy does with each key

#[test]
fn every_key_has_exactly_one_support_row() {
    let keys: Vec<&str> = KEYS.iter().map(|s| s.key).collect();
    let rows: Vec<&str> = SUPPORT.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        rows, keys,
        "support.rs must list the keys of keys.rs, in order"
    );
}

/// docs/configuration.md's "Status of every key" table: `key` → its status word.
fn documented_statuses() -> std::collections::BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let docs = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let section = docs
        .split("## Status of every key")
        .nth(1)
        .expect("docs/configuration.md has a '## Status of every key' section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out = std::collections::BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        if let Some(key) = cells[1].strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
            let status = cells[2].trim_matches('*').to_lowercase();
            out.insert(key.to_string(), status);
        }
    }
    out
}

#[test]
fn docs_give_every_key_its_status() {
    let documented = documented_statuses();
    for spec in KEYS {
        let want = match support_of(spec.key) {
            Some(Support::Works) => "works",
            Some(Support::Documented) => "accepted",
            Some(Support::Limited { .. }) => "refused",
            None => panic!("{} has no support row", spec.key),
        };
        let got = documented
            .get(spec.key)
            .unwrap_or_else(|| panic!("docs/configuration.md's status table lacks `{}`", spec.key));
        assert!(
            got.starts_with(want),
            "docs say `{}` is '{got}', support.rs says {want}",
            spec.key
        );
    }
    for key in documented.keys() {
        assert!(
            KEYS.iter().any(|s| s.key == key),
            "the status table lists `{key}`, which is not a canonical key"
        );
    }
}

#[test]
fn values_asking_for_what_eddy_lacks_are_refused_in_one_line() {
    let cases = [
        ("execution.state-recovery.claim-mode", "LEGACY", "execution.state-recovery.claim-mode: 'LEGACY' is not supported (LEGACY is Flink's deprecated mode; NO_CLAIM never deletes the restored snapshot, CLAIM takes ownership and deletes it once subsumed); allowed: NO_CLAIM, CLAIM"),
        ("high-availability.storageDir", "s3://bucket/ha", "high-availability.storageDir: 's3://bucket/ha' is not supported yet (HA metadata on S3 is not built; checkpoints and savepoints can be on S3); allowed: a local or shared path, or a file:// URI"),
        ("taskmanager.slot.timeout", "30 s", "taskmanager.slot.timeout: '30 s' is not supported (a TaskManager cancels the tasks of a disconnected JobMaster and frees their slots at once); allowed: leave the key unset"),
        ("taskmanager.registration.timeout", "5 min", "taskmanager.registration.timeout: '5 min' is not supported (a TaskManager retries its registration until it is stopped); allowed: leave the key unset"),
        ("high-availability.zookeeper.client.retry-wait", "5 s", "high-availability.zookeeper.client.retry-wait: '5 s' is not supported (Eddy's ZooKeeper client retries with its own back-off, see docs/ha.md); allowed: leave the key unset"),
        ("high-availability.zookeeper.client.max-retry-attempts", "3", "high-availability.zookeeper.client.max-retry-attempts: '3' is not supported (Eddy's ZooKeeper client retries with its own back-off, see docs/ha.md); allowed: leave the key unset"),
        ("security.ssl.internal.keystore", "/etc/eddy/ks.jks", "security.ssl.internal.keystore: '/etc/eddy/ks.jks' is not supported (Eddy reads PEM files, not Java keystores: security.ssl.{internal,rest}.{cert,key,trust-cert}; docs/security.md); allowed: leave the key unset"),
        ("security.ssl.rest.truststore-password", "changeit", "security.ssl.rest.truststore-password: 'changeit' is not supported (Eddy reads PEM files, not Java keystores: security.ssl.{internal,rest}.{cert,key,trust-cert}; docs/security.md); allowed: leave the key unset"),
    ];
    for (key, value, message) in cases {
        // Config::from_pairs, config.yaml and -D all refuse, naming the key as written.
        assert_eq!(err_of(&[(key, value)]), message);
        let from_file = load_yaml(&format!("{key}: '{value}'\n"), &[]).expect_err(key);
        assert_eq!(from_file.to_string(), message);
        let from_override = load_from(None, &[format!("{key}={value}")]).expect_err(key);
        assert_eq!(from_override.to_string(), message);
        let mut c = Config::default();
        assert_eq!(
            c.try_set(key, value).map_err(|e| e.to_string()),
            Err(message.to_string())
        );
    }
    // Values equal to today's behaviour stay accepted.
    let c = cfg(&[
        ("state.backend", "rocksdb"),
        ("state.backend.type", "RocksDB"),
        ("state.backend.incremental", "false"),
        ("state.backend.local-recovery", "false"),
        ("execution.state-recovery.ignore-unclaimed-state", "false"),
        ("state.checkpoints.dir", "file:///data/chk"),
        ("high-availability.storageDir", "/shared/ha"),
        ("jobmanager.memory.process.size", "1600m"),
    ]);
    assert_eq!(c.validate(), Ok(Vec::new()));
}

// ---------------------------------------------------------------- YAML and precedence

#[test]
fn nested_and_flat_yaml() {
    let yaml = "\
high-availability:
  type: zookeeper
  storageDir: file:///tmp/ha
  zookeeper:
    quorum: [zk1:2181, 'zk2:2182']
    path.root: /eddy
taskmanager.numberOfTaskSlots: 4
rest:
  port: 9000
execution.checkpointing.interval: 10 s
restart-strategy.exponential-delay.jitter-factor: 0.25
state.backend.incremental: false
state:
  backend: hashmap
";
    let loaded = load_yaml(yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.get("high-availability.type"), Some("zookeeper"));
    assert_eq!(
        c.get("high-availability.zookeeper.quorum"),
        Some("zk1:2181;zk2:2182")
    );
    assert_eq!(c.get("rest.port"), Some("9000"));
    assert_eq!(
        c.get("restart-strategy.exponential-delay.jitter-factor"),
        Some("0.25")
    );
    assert_eq!(c.get("execution.checkpointing.incremental"), Some("false"));
    assert_eq!(c.ha_mode(), HaMode::ZooKeeper);
    assert_eq!(c.ha_storage_dir(), Some(PathBuf::from("/tmp/ha")));
    assert_eq!(
        c.zk_quorum(),
        vec![("zk1".to_string(), 2181), ("zk2".to_string(), 2182)]
    );
    assert_eq!(c.zk_path_root(), "/eddy");
    assert_eq!(c.slots_per_taskmanager(), 4);
    assert_eq!(c.rest_port(), 9000);
    assert_eq!(c.checkpointing().interval, Some(secs(10)));
    assert!(!c.incremental());
    assert_eq!(c.get("state.backend.type"), Some("hashmap"));
}

#[test]
fn overrides_win_over_the_file() {
    let yaml = "rest.port: 9000\nrestart-strategy.type: none\nheartbeat.interval: 1 s\n";
    let c = load_yaml(
        yaml,
        &[
            "rest.port=9100",
            "restart-strategy = fixed-delay",
            "heartbeat.interval=2 s",
            "heartbeat.interval=3 s",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .config;
    assert_eq!(c.rest_port(), 9100);
    assert_eq!(c.get("restart-strategy.type"), Some("fixed-delay"));
    assert_eq!(c.heartbeat_interval(), secs(3), "the last -D wins");
    // Only overrides, no directory at all.
    let c = load_from(None, &["parallelism.default=3".to_string()])
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.default_parallelism(), 3);
    // A value containing '=' keeps everything after the first '='.
    assert_eq!(
        parse_override("high-availability.cluster-id=/a=b"),
        Ok(("high-availability.cluster-id".into(), "/a=b".into()))
    );
}

#[test]
fn canonical_key_wins_over_alias_in_the_file() {
    let cases = [
        (
            "restart-strategy.type: fixed-delay\nrestart-strategy: none\n",
            "'restart-strategy.type' and 'restart-strategy' both set 'restart-strategy.type'; using 'restart-strategy.type'",
        ),
        (
            "restart-strategy: none\nrestart-strategy.type: fixed-delay\n",
            "'restart-strategy' and 'restart-strategy.type' both set 'restart-strategy.type'; using 'restart-strategy.type'",
        ),
    ];
    for (yaml, warning) in cases {
        let loaded = load_yaml(yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            loaded.config.get("restart-strategy.type"),
            Some("fixed-delay"),
            "{yaml}"
        );
        assert_eq!(loaded.warnings, vec![warning.to_string()]);
    }
    // Same value under both names: no warning.
    let loaded = load_yaml("state.backend: hashmap\nstate.backend.type: hashmap\n", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty());
}

#[test]
fn unknown_keys_warn_and_are_dropped() {
    let loaded = load_yaml(
        "foo.bar: 1\ntaskmanager.numberOfTaskSlot: 4\n",
        &["rest.prot=1"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.warnings,
        vec![
            "unknown configuration key 'foo.bar' (ignored)".to_string(),
            "unknown configuration key 'taskmanager.numberOfTaskSlot' (ignored); did you mean 'taskmanager.numberOfTaskSlots'?"
                .to_string(),
            "unknown configuration key 'rest.prot' (ignored); did you mean 'rest.port'?".to_string(),
        ]
    );
    assert!(loaded.config.is_empty());
    assert_eq!(suggest_key("completely.different.thing"), None);
    assert_eq!(suggest_key("state.backends"), Some("state.backend"));
}

#[test]
fn yaml_nulls_empty_files_and_duplicates() {
    let loaded = load_yaml("rest.port:\nrest.address: ~\n", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.is_empty());
    assert_eq!(loaded.warnings.len(), 2);
    assert!(loaded.warnings[0].contains("'rest.port'") && loaded.warnings[0].contains("no value"));
    let loaded = load_yaml("", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.is_empty() && loaded.warnings.is_empty());
    let loaded = load_yaml("# only a comment\n", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.is_empty() && loaded.warnings.is_empty());
    // The same flattened key twice: last wins, with a warning.
    let loaded =
        load_yaml("rest.port: 1\nrest:\n  port: 2\n", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.rest_port(), 2);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

#[test]
fn conf_dir_resolution() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No config.yaml in an existing dir: empty, with a warning naming the file.
    let loaded = load(Some(dir.path()), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.is_empty());
    assert!(
        loaded.warnings[0].contains("config.yaml"),
        "{:?}",
        loaded.warnings
    );
    std::fs::write(dir.path().join("flink-conf.yaml"), "rest.port: 1\n").expect("write");
    let loaded = load(Some(dir.path()), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        loaded.warnings[0].contains("flink-conf.yaml"),
        "{:?}",
        loaded.warnings
    );
    // A missing directory is an error naming it.
    let missing = dir.path().join("nope");
    let e = load(Some(&missing), &[]).expect_err("missing dir");
    assert_eq!(
        e,
        ConfigError::NoSuchDir {
            path: missing.clone()
        }
    );
    assert!(e.to_string().contains(&missing.display().to_string()));
    // Env fallback (injected; the real environment is never touched).
    let a = PathBuf::from("/a");
    assert_eq!(resolve_with(Some(&a), Some("/b".into())), Some(a.clone()));
    assert_eq!(
        resolve_with(None, Some("/b".into())),
        Some(PathBuf::from("/b"))
    );
    assert_eq!(resolve_with(None, Some("".into())), None);
    assert_eq!(resolve_with(None, None), None);
    assert_eq!(load_from(None, &[]), Ok(Loaded::default()));
}

// ---------------------------------------------------------------- error shapes

#[test]
fn invalid_value_messages() {
    let cases: &[(&str, &str, &str)] = &[
        ("restart-strategy.fixed-delay.delay", "abc", "invalid value 'abc' for key 'restart-strategy.fixed-delay.delay': expected a duration such as '10 s', '500 ms', '1 min'"),
        ("heartbeat.interval", "0 s", "invalid value '0 s' for key 'heartbeat.interval': expected a positive duration such as '10 s', '500 ms', '1 min'"),
        ("execution.checkpointing.interval", "5 ms", "invalid value '5 ms' for key 'execution.checkpointing.interval': expected a duration of at least 10 ms, such as '10 s', '500 ms', '1 min'"),
        ("restart-strategy", "sometimes", "invalid value 'sometimes' for key 'restart-strategy': expected one of: none, fixed-delay, failure-rate, exponential-delay"),
        ("execution.checkpointing.mode", "twice", "invalid value 'twice' for key 'execution.checkpointing.mode': expected one of: EXACTLY_ONCE, AT_LEAST_ONCE"),
        ("pipeline.max-parallelism", "0", "invalid value '0' for key 'pipeline.max-parallelism': expected an integer in 1..=32768"),
        ("pipeline.max-parallelism", "40000", "invalid value '40000' for key 'pipeline.max-parallelism': expected an integer in 1..=32768"),
        ("state.checkpoints.num-retained", "0", "invalid value '0' for key 'state.checkpoints.num-retained': expected an integer >= 1"),
        ("taskmanager.numberOfTaskSlots", "four", "invalid value 'four' for key 'taskmanager.numberOfTaskSlots': expected an integer in 1..=1024"),
        ("taskmanager.numberOfTaskSlots", "4294967295", "invalid value '4294967295' for key 'taskmanager.numberOfTaskSlots': expected an integer in 1..=1024"),
        ("restart-strategy.fixed-delay.attempts", "-1", "invalid value '-1' for key 'restart-strategy.fixed-delay.attempts': expected an integer >= 0 or 'unlimited'"),
        ("restart-strategy.exponential-delay.jitter-factor", "1.5", "invalid value '1.5' for key 'restart-strategy.exponential-delay.jitter-factor': expected a number in 0.0..=1.0"),
        ("restart-strategy.exponential-delay.backoff-multiplier", "0.5", "invalid value '0.5' for key 'restart-strategy.exponential-delay.backoff-multiplier': expected a number >= 1.0"),
        ("state.backend.incremental", "yes", "invalid value 'yes' for key 'state.backend.incremental': expected true or false"),
        ("rest.port", "70000", "invalid value '70000' for key 'rest.port': expected a port in 0..=65535"),
        ("taskmanager.memory.process.size", "1.5g", "invalid value '1.5g' for key 'taskmanager.memory.process.size': expected a size such as '1024m', '1g', '512 kb' (whole numbers; units b, k, m, g, t)"),
        ("rest.address", "bad host!", "invalid value 'bad host!' for key 'rest.address': expected a host name or IP address such as 'localhost' or '10.0.0.5'"),
        ("high-availability.zookeeper.quorum", "zk1:abc", "invalid value 'zk1:abc' for key 'high-availability.zookeeper.quorum': expected a list of host:port separated by ',' such as 'zk1:2181,zk2:2181'"),
        ("state.checkpoints.dir", "hdfs://nn/chk", "invalid value 'hdfs://nn/chk' for key 'state.checkpoints.dir': expected a path or URI such as '/data/checkpoints', 'file:///data/checkpoints' or 's3://bucket/checkpoints'"),
        ("env.log.dir", "s3://bucket/log", "invalid value 's3://bucket/log' for key 'env.log.dir': expected a local path such as '/var/lib/eddy' or './log'"),
        ("high-availability.cluster-id", "", "invalid value '' for key 'high-availability.cluster-id': expected a non-empty string"),
        ("rest.port", "80\n81", "invalid value '80\\n81' for key 'rest.port': expected a port in 0..=65535"),
    ];
    for (key, value, want) in cases {
        assert_eq!(err_of(&[(key, value)]), *want);
    }
    // From a file the error names the key as written there.
    let e = load_yaml("high-availability: kubernetes\n", &[]).expect_err("kubernetes");
    assert_eq!(
        e.to_string(),
        "invalid value 'kubernetes' for key 'high-availability': expected one of: none, zookeeper"
    );
}

#[test]
fn enum_values_are_case_insensitive_with_synonyms() {
    for (value, want) in [
        ("EXACTLY_ONCE", CheckpointingMode::ExactlyOnce),
        ("at_least_once", CheckpointingMode::AtLeastOnce),
        ("At-Least-Once", CheckpointingMode::AtLeastOnce),
    ] {
        assert_eq!(
            cfg(&[("execution.checkpointing.mode", value)])
                .checkpointing()
                .mode,
            want,
            "{value}"
        );
    }
    for (value, want) in [
        ("ZOOKEEPER", HaMode::ZooKeeper),
        ("NONE", HaMode::None),
        ("standalone", HaMode::None),
    ] {
        let c = cfg(&[
            ("high-availability", value),
            ("high-availability.zookeeper.quorum", "zk"),
            ("high-availability.storageDir", "/ha"),
        ]);
        assert_eq!(c.ha_mode(), want, "{value}");
    }
    for value in ["none", "off", "disable", "OFF"] {
        assert_eq!(
            cfg(&[("restart-strategy", value)]).restart_strategy(),
            Some(RestartStrategyConfig::None)
        );
    }
    for value in ["fixed-delay", "fixeddelay", "FIXED_DELAY"] {
        assert!(matches!(
            cfg(&[("restart-strategy", value)]).restart_strategy(),
            Some(RestartStrategyConfig::FixedDelay { .. })
        ));
    }
    for value in ["failure-rate", "failurerate"] {
        assert!(matches!(
            cfg(&[("restart-strategy.type", value)]).restart_strategy(),
            Some(RestartStrategyConfig::FailureRate { .. })
        ));
    }
    for value in ["exponential-delay", "exponentialdelay"] {
        assert!(matches!(
            cfg(&[("restart-strategy.type", value)]).restart_strategy(),
            Some(RestartStrategyConfig::ExponentialDelay { .. })
        ));
    }
}

#[test]
fn other_error_messages() {
    let e = load_from(None, &["rest.port".to_string()]).expect_err("no =");
    assert_eq!(
        e.to_string(),
        "invalid -D override 'rest.port': expected key=value, e.g. -D rest.port=8081"
    );
    assert!(parse_override("=5").is_err());
    assert_eq!(
        Config::from_pairs(&[("rest.prot", "1")])
            .expect_err("unknown")
            .to_string(),
        "unknown configuration key 'rest.prot'; did you mean 'rest.port'?"
    );
    let mut c = Config::default();
    assert!(c.try_set("rest.port", "x").is_err());
    assert!(c.try_set("nope", "1").is_err());
    assert!(c.is_empty());
}

#[test]
fn yaml_errors_name_file_and_line() {
    let dir = dir_with("rest.port: 1\nrest.address: a\n  bad: indentation\n");
    let e = load(Some(dir.path()), &[]).expect_err("bad yaml");
    let file = dir.path().join(CONFIG_FILE);
    match &e {
        ConfigError::Yaml { path, line, .. } => {
            assert_eq!(path, &file);
            assert_eq!(*line, 3, "{e}");
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("invalid YAML in '{}' at line 3: ", file.display())),
        "{text}"
    );
    assert!(!text.contains('\n'));

    let e = load_yaml("- a\n- b\n", &[]).expect_err("list at top");
    assert!(
        matches!(&e, ConfigError::Yaml { line: 1, message, .. } if message.contains("mapping")),
        "{e}"
    );
    let e = load_yaml("rest.port: 1\nlist:\n  - {a: 1}\n", &[]).expect_err("map in list");
    assert!(
        matches!(&e, ConfigError::Yaml { line: 2, message, .. } if message.contains("'list'")),
        "{e}"
    );
    let e = load_yaml("rest.port: 1\nrest.port: 2\n", &[]).expect_err("duplicate");
    assert!(matches!(&e, ConfigError::Yaml { line: 2, .. }), "{e}");
    let e = load_yaml("a: 1\n---\nb: 2\n", &[]).expect_err("two documents");
    assert!(matches!(&e, ConfigError::Yaml { .. }), "{e}");
}

#[test]
fn unreadable_config_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(CONFIG_FILE);
    std::fs::create_dir(&file).expect("a directory where the file should be");
    let e = load(Some(dir.path()), &[]).expect_err("unreadable");
    assert!(
        matches!(&e, ConfigError::Io { path, .. } if *path == file),
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with(&format!("cannot read '{}': ", file.display())));
}

// ---------------------------------------------------------------- defaults and typed settings

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.jobmanager_rpc_address(), "localhost");
    assert_eq!(c.jobmanager_rpc_port(), 6123);
    assert_eq!(c.jobmanager_memory_process_size(), None);
    assert_eq!(c.taskmanager_memory_process_size(), None);
    assert_eq!(c.slots_per_taskmanager(), 1);
    assert_eq!(c.default_parallelism(), 1);
    assert_eq!(c.max_parallelism(), 128);
    assert_eq!(c.max_parallelism(), crate::DEFAULT_MAX_PARALLELISM);
    assert_eq!(c.ha_mode(), HaMode::None);
    assert_eq!(c.ha_storage_dir(), None);
    assert!(c.zk_quorum().is_empty());
    assert_eq!(c.zk_path_root(), "/flink");
    assert_eq!(c.ha_cluster_id(), "/default");
    assert_eq!(c.zk_session_timeout(), secs(60));
    assert_eq!(c.zk_connection_timeout(), secs(15));
    assert_eq!(c.zk_retry_wait(), secs(5));
    assert_eq!(c.zk_max_retry_attempts(), 3);
    assert!(!c.zk_tolerate_suspended());
    assert_eq!(c.ha_jobmanager_port(), 0);
    assert_eq!(c.state_backend(), StateBackendKind::HashMap);
    assert_eq!(c.checkpoints_dir(), None);
    assert_eq!(c.savepoints_dir(), None);
    assert!(!c.incremental());
    assert_eq!(c.num_retained(), 1);
    assert!(!c.local_recovery());
    assert_eq!(
        c.local_state_dirs(),
        vec![std::env::temp_dir().join("eddy-local-state")]
    );
    assert_eq!(c.savepoint_restore_path(), None);
    assert!(!c.allow_non_restored_state());
    assert_eq!(c.failover_strategy(), FailoverStrategyKind::Region);
    assert_eq!(c.restart_strategy(), None);
    assert_eq!(c.effective_restart_strategy(), RestartStrategyConfig::None);
    assert_eq!(c.checkpointing(), CheckpointingSettings::default());
    assert_eq!(c.heartbeat_interval(), secs(10));
    assert_eq!(c.heartbeat_timeout(), secs(50));
    assert_eq!(c.slot_timeout(), secs(10));
    assert_eq!(c.slot_request_timeout(), secs(300));
    assert_eq!(c.taskmanager_registration_timeout(), secs(300));
    assert_eq!(c.rest_address(), "localhost");
    assert_eq!(c.rest_port(), 8081);
    assert_eq!(c.rest_bind_address(), "127.0.0.1");
    assert_eq!(c.resource_manager_mode(), ResourceManagerMode::Standalone);
    assert_eq!(c.log_dir(), PathBuf::from("./log"));
    assert_eq!(c.jobmanager_restart_attempts(), 0);
    assert_eq!(c.taskmanager_host(), "127.0.0.1");
    assert_eq!(c.taskmanager_data_port(), 0);
    assert_eq!(c.buffer_timeout(), ms(100));
    assert_eq!(c.validate(), Ok(Vec::new()));
}

#[test]
fn typed_settings_from_values() {
    let c = cfg(&[
        ("jobmanager.rpc.address", "jm.example.org"),
        ("jobmanager.rpc.port", "7000"),
        ("jobmanager.memory.process.size", "1600m"),
        ("taskmanager.memory.process.size", "2g"),
        ("parallelism.default", "8"),
        ("pipeline.max-parallelism", "256"),
        ("state.checkpoints.dir", "file:///data/chk"),
        ("jobmanager.execution.failover-strategy", "FULL"),
        ("resourcemanager.mode", "active"),
        ("env.log.dir", "/var/log/eddy"),
        ("cluster.jobmanager.restart-attempts", "3"),
        ("slot.request.timeout", "1 min"),
        ("taskmanager.host", "10.0.0.5"),
        ("taskmanager.data.port", "6200"),
        ("rest.address", "[::1]"),
        ("rest.bind-address", "0.0.0.0"),
        ("execution.buffer-timeout", "0"),
        ("high-availability.jobmanager.port", "6124"),
        (
            "high-availability.zookeeper.client.tolerate-suspended-connections",
            "true",
        ),
    ]);
    // Keys Eddy refuses on load (support.rs) still have getters, for the code that will act on
    // them; `set` stores without validation.
    let mut c = c;
    for (k, v) in [
        ("state.backend", "rocksdb"),
        ("state.savepoints.dir", "s3://bucket/sp"),
        ("state.backend.incremental", "TRUE"),
        ("state.backend.local-recovery", "true"),
        ("taskmanager.state.local.root-dirs", "/l1, /l2;/l3"),
        ("taskmanager.slot.timeout", "30 s"),
        ("execution.savepoint.path", "/sp/savepoint-1"),
        ("execution.state-recovery.ignore-unclaimed-state", "true"),
    ] {
        c.set(k, v);
    }
    assert_eq!(c.jobmanager_rpc_address(), "jm.example.org");
    assert_eq!(c.jobmanager_rpc_port(), 7000);
    assert_eq!(c.jobmanager_memory_process_size(), Some(1600 << 20));
    assert_eq!(c.taskmanager_memory_process_size(), Some(2 << 30));
    assert_eq!(c.default_parallelism(), 8);
    assert_eq!(c.max_parallelism(), 256);
    assert_eq!(c.state_backend(), StateBackendKind::RocksDb);
    assert_eq!(c.checkpoints_dir(), Some(PathBuf::from("/data/chk")));
    assert_eq!(c.savepoints_dir(), Some(PathBuf::from("s3://bucket/sp")));
    assert!(c.incremental());
    assert!(c.local_recovery());
    assert_eq!(
        c.local_state_dirs(),
        vec![
            PathBuf::from("/l1"),
            PathBuf::from("/l2"),
            PathBuf::from("/l3")
        ]
    );
    assert_eq!(c.failover_strategy(), FailoverStrategyKind::Full);
    assert_eq!(c.resource_manager_mode(), ResourceManagerMode::Active);
    assert_eq!(c.log_dir(), PathBuf::from("/var/log/eddy"));
    assert_eq!(c.jobmanager_restart_attempts(), 3);
    assert_eq!(c.slot_timeout(), secs(30));
    assert_eq!(c.slot_request_timeout(), secs(60));
    assert_eq!(c.taskmanager_host(), "10.0.0.5");
    assert_eq!(c.taskmanager_data_port(), 6200);
    assert_eq!(c.rest_address(), "[::1]");
    assert_eq!(c.rest_bind_address(), "0.0.0.0");
    assert_eq!(c.buffer_timeout(), Duration::ZERO);
    assert_eq!(c.ha_jobmanager_port(), 6124);
    assert!(c.zk_tolerate_suspended());
    assert_eq!(
        c.savepoint_restore_path(),
        Some(PathBuf::from("/sp/savepoint-1"))
    );
    assert!(c.allow_non_restored_state());
    assert_eq!(c.get_size("taskmanager.memory.process.size"), Some(2 << 30));
    assert_eq!(c.get_value("no.such.key"), None);
}

#[test]
fn restart_strategies() {
    let c = cfg(&[
        ("restart-strategy", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "3"),
        ("restart-strategy.fixed-delay.delay", "10 s"),
    ]);
    assert_eq!(
        c.restart_strategy(),
        Some(RestartStrategyConfig::FixedDelay {
            attempts: 3,
            delay: secs(10)
        })
    );
    assert_eq!(
        cfg(&[("restart-strategy", "fixed-delay")]).restart_strategy(),
        Some(RestartStrategyConfig::FixedDelay {
            attempts: 1,
            delay: secs(1)
        })
    );
    for unlimited in ["2147483647", "unlimited", "INFINITE"] {
        let c = cfg(&[
            ("restart-strategy", "fixed-delay"),
            ("restart-strategy.fixed-delay.attempts", unlimited),
        ]);
        assert_eq!(
            c.restart_strategy(),
            Some(RestartStrategyConfig::FixedDelay {
                attempts: u32::MAX,
                delay: secs(1)
            })
        );
    }
    let c = cfg(&[
        ("restart-strategy", "failure-rate"),
        (
            "restart-strategy.failure-rate.max-failures-per-interval",
            "5",
        ),
        (
            "restart-strategy.failure-rate.failure-rate-interval",
            "5 min",
        ),
        ("restart-strategy.failure-rate.delay", "2 s"),
    ]);
    assert_eq!(
        c.restart_strategy(),
        Some(RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 5,
            interval: secs(300),
            delay: secs(2)
        })
    );
    assert_eq!(
        cfg(&[("restart-strategy", "failure-rate")]).restart_strategy(),
        Some(RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 1,
            interval: secs(60),
            delay: secs(1)
        })
    );
    assert_eq!(
        cfg(&[("restart-strategy", "exponential-delay")]).restart_strategy(),
        Some(RestartStrategyConfig::ExponentialDelay {
            initial_backoff: secs(1),
            max_backoff: secs(60),
            multiplier: 1.5,
            reset_backoff_threshold: secs(3600),
            jitter_factor: 0.1,
            attempts_before_reset: u32::MAX,
        })
    );
    let c = cfg(&[
        ("restart-strategy", "exponential-delay"),
        (
            "restart-strategy.exponential-delay.initial-backoff",
            "100 ms",
        ),
        ("restart-strategy.exponential-delay.max-backoff", "10 s"),
        ("restart-strategy.exponential-delay.backoff-multiplier", "2"),
        (
            "restart-strategy.exponential-delay.reset-backoff-threshold",
            "10 min",
        ),
        ("restart-strategy.exponential-delay.jitter-factor", "0"),
        (
            "restart-strategy.exponential-delay.attempts-before-reset-backoff",
            "7",
        ),
    ]);
    assert_eq!(
        c.restart_strategy(),
        Some(RestartStrategyConfig::ExponentialDelay {
            initial_backoff: ms(100),
            max_backoff: secs(10),
            multiplier: 2.0,
            reset_backoff_threshold: secs(600),
            jitter_factor: 0.0,
            attempts_before_reset: 7,
        })
    );
    // Unset type + checkpointing on: SPEC §2's default.
    let c = cfg(&[("execution.checkpointing.interval", "1 s")]);
    assert_eq!(c.restart_strategy(), None);
    assert_eq!(
        c.effective_restart_strategy(),
        RestartStrategyConfig::FixedDelay {
            attempts: u32::MAX,
            delay: secs(1)
        }
    );
}

#[test]
fn checkpointing_settings() {
    let c = cfg(&[
        ("execution.checkpointing.interval", "5 s"),
        ("execution.checkpointing.mode", "at_least_once"),
        ("execution.checkpointing.timeout", "1 min"),
        ("execution.checkpointing.max-concurrent-checkpoints", "2"),
        ("execution.checkpointing.min-pause", "500 ms"),
        ("execution.checkpointing.tolerable-failed-checkpoints", "3"),
        ("state.checkpoints.num-retained", "5"),
        (
            "execution.checkpointing.externalized-checkpoint-retention",
            "retain_on_cancellation",
        ),
    ]);
    assert_eq!(
        c.checkpointing(),
        CheckpointingSettings {
            interval: Some(secs(5)),
            mode: CheckpointingMode::AtLeastOnce,
            timeout: secs(60),
            min_pause: ms(500),
            max_concurrent: 2,
            tolerable_failed: 3,
            num_retained: 5,
            externalized_retention: ExternalizedCheckpointRetention::RetainOnCancellation,
        }
    );
    let c = cfg(&[(
        "execution.checkpointing.externalized-checkpoint-retention",
        "DELETE_ON_CANCELLATION",
    )]);
    assert_eq!(
        c.checkpointing().externalized_retention,
        ExternalizedCheckpointRetention::DeleteOnCancellation
    );
}

// ---------------------------------------------------------------- cross-key rules

#[test]
fn frame_sizes_default_to_flinks_rpc_frame_and_16m_and_stay_within_64k_to_1g() {
    let c = cfg(&[]);
    assert_eq!(c.rpc_frame_size(), 10 << 20);
    assert_eq!(c.network_max_frame_size(), 16 << 20);
    let c = cfg(&[
        ("akka.framesize", "2m"),
        ("taskmanager.network.max-frame-size", "1g"),
    ]);
    assert_eq!(
        (c.rpc_frame_size(), c.network_max_frame_size()),
        (2 << 20, 1 << 30)
    );
    assert_eq!(
        err_of(&[("pekko.framesize", "2g")]),
        "invalid value '2g' for key 'pekko.framesize': expected a size from 64k to 1g"
    );
    assert_eq!(
        err_of(&[("taskmanager.network.max-frame-size", "100b")]),
        "invalid value '100b' for key 'taskmanager.network.max-frame-size': expected a size from 64k to 1g"
    );
}

#[test]
fn the_network_pool_is_a_fraction_of_the_process_size_clamped_to_min_and_max() {
    let c = cfg(&[]);
    // 10 % of 1728m (Flink's default configuration file) while the process size is unset.
    assert_eq!(c.network_memory_size(), (1728u64 << 20) / 10);
    assert_eq!(
        (
            c.network_segment_size(),
            c.network_buffers_per_channel(),
            c.network_floating_buffers_per_gate()
        ),
        (32 << 10, 2, 8)
    );
    let c = cfg(&[
        ("taskmanager.memory.process.size", "4g"),
        ("taskmanager.memory.network.fraction", "0.25"),
    ]);
    assert_eq!(c.network_memory_size(), 1 << 30);
    // Below min: min; above max: max.
    let c = cfg(&[
        ("taskmanager.memory.process.size", "100m"),
        ("taskmanager.memory.network.min", "32m"),
    ]);
    assert_eq!(c.network_memory_size(), 32 << 20);
    let c = cfg(&[
        ("taskmanager.memory.network.min", "1m"),
        ("taskmanager.memory.network.max", "4m"),
        ("taskmanager.memory.segment-size", "64k"),
        ("taskmanager.network.memory.buffers-per-channel", "4"),
        ("taskmanager.network.memory.floating-buffers-per-gate", "0"),
    ]);
    assert_eq!(c.network_memory_size(), 4 << 20);
    assert_eq!(
        (
            c.network_segment_size(),
            c.network_buffers_per_channel(),
            c.network_floating_buffers_per_gate()
        ),
        (64 << 10, 4, 0)
    );
}

#[test]
fn bad_network_buffer_values_are_refused_in_one_line() {
    assert_eq!(
        err_of(&[("taskmanager.memory.network.max", "4m")]),
        "invalid value '4m' for key 'taskmanager.memory.network.max': expected a size at least taskmanager.memory.network.min (64m)"
    );
    assert_eq!(
        err_of(&[
            ("taskmanager.memory.network.min", "8m"),
            ("taskmanager.memory.network.max", "4m")
        ]),
        "invalid value '8m' for key 'taskmanager.memory.network.min': expected a size at most taskmanager.memory.network.max (4m)"
    );
    assert_eq!(
        err_of(&[("taskmanager.memory.segment-size", "3000b")]),
        "invalid value '3000b' for key 'taskmanager.memory.segment-size': expected a power of two from 4k to 16m"
    );
    assert_eq!(
        err_of(&[("taskmanager.memory.segment-size", "1k")]),
        "invalid value '1k' for key 'taskmanager.memory.segment-size': expected a power of two from 4k to 16m"
    );
    for (key, value) in [
        ("taskmanager.memory.network.fraction", "1.5"),
        ("taskmanager.network.memory.buffers-per-channel", "0"),
        ("taskmanager.network.memory.floating-buffers-per-gate", "-1"),
    ] {
        let e = err_of(&[(key, value)]);
        assert!(
            e.starts_with(&format!(
                "invalid value '{value}' for key '{key}': expected "
            )),
            "{e}"
        );
    }
}

#[test]
fn heartbeat_timeout_must_exceed_interval() {
    assert_eq!(
        err_of(&[("heartbeat.timeout", "5 s")]),
        "invalid value '5 s' for key 'heartbeat.timeout': expected a duration greater than heartbeat.interval (10 s)"
    );
    assert_eq!(
        err_of(&[("heartbeat.interval", "1 min")]),
        "invalid value '1 min' for key 'heartbeat.interval': expected a duration less than heartbeat.timeout (50 s)"
    );
    assert!(err_of(&[
        ("heartbeat.interval", "20 s"),
        ("heartbeat.timeout", "20 s")
    ])
    .contains("'heartbeat.timeout'"));
    let c = cfg(&[("heartbeat.interval", "1 s"), ("heartbeat.timeout", "3 s")]);
    assert_eq!(
        (c.heartbeat_interval(), c.heartbeat_timeout()),
        (secs(1), secs(3))
    );
}

#[test]
fn zookeeper_ha_requires_quorum_and_storage_dir() {
    assert_eq!(
        err_of(&[("high-availability", "zookeeper"), ("high-availability.storageDir", "/ha")]),
        "missing value for key 'high-availability.zookeeper.quorum': required when high-availability.type is zookeeper"
    );
    assert_eq!(
        err_of(&[("high-availability.type", "zookeeper"), ("high-availability.zookeeper.quorum", "zk:2181")]),
        "missing value for key 'high-availability.storageDir': required when high-availability.type is zookeeper"
    );
    let c = cfg(&[
        ("high-availability.type", "zookeeper"),
        ("high-availability.zookeeper.quorum", "zk"),
        ("high-availability.storageDir", "/ha"),
    ]);
    assert_eq!(c.zk_quorum(), vec![("zk".to_string(), 2181)]);
}

#[test]
fn exponential_backoff_bounds() {
    assert_eq!(
        err_of(&[("restart-strategy", "exponential-delay"), ("restart-strategy.exponential-delay.initial-backoff", "2 min")]),
        "invalid value '1 min' for key 'restart-strategy.exponential-delay.max-backoff': expected a duration >= restart-strategy.exponential-delay.initial-backoff (2 min)"
    );
}

// ---------------------------------------------------------------- the map itself

#[test]
fn serde_round_trip_and_unvalidated_configs() {
    let c = cfg(&[("rest.port", "9000"), ("state.backend", "hashmap")]);
    let json = serde_json::to_string(&c).expect("serialize");
    assert_eq!(
        json,
        r#"{"rest.port":"9000","state.backend.type":"hashmap"}"#
    );
    let back: Config = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, c);
    let bytes = bincode::serialize(&c).expect("bincode");
    assert_eq!(
        bincode::deserialize::<Config>(&bytes).expect("bincode back"),
        c
    );

    // Deserialized without validation: getters fall back, validate() reports.
    let raw: Config =
        serde_json::from_str(r#"{"rest.port":"lots","state.backend":"rocksdb","x.y":"1"}"#)
            .expect("json");
    assert_eq!(raw.rest_port(), 8081);
    assert_eq!(raw.state_backend(), StateBackendKind::RocksDb);
    assert_eq!(
        raw.validate().expect_err("bad port").to_string(),
        "invalid value 'lots' for key 'rest.port': expected a port in 0..=65535"
    );
    // A deserialized config (a job graph, a REST body) is refused like a loaded one.
    let raw: Config =
        serde_json::from_str(r#"{"execution.state-recovery.claim-mode":"LEGACY"}"#).expect("json");
    assert!(matches!(
        raw.validate(),
        Err(ConfigError::Unsupported { .. })
    ));
    let raw: Config =
        serde_json::from_str(r#"{"x.y":"1","heartbeat.timeout":"1 s"}"#).expect("json");
    assert!(
        raw.validate().is_err(),
        "cross-key rules apply to deserialized configs"
    );
    let raw: Config = serde_json::from_str(r#"{"x.y":"1"}"#).expect("json");
    assert_eq!(
        raw.validate(),
        Ok(vec!["unknown configuration key 'x.y' (ignored)".to_string()])
    );
}

#[test]
fn set_get_remove_overlay() {
    let mut c = Config::default();
    c.set("state.backend", "rocksdb");
    assert_eq!(
        c.iter().collect::<Vec<_>>(),
        vec![("state.backend.type", "rocksdb")]
    );
    assert_eq!(c.get("state.backend"), Some("rocksdb"));
    c.set("rest.port", "not a port");
    assert_eq!(c.rest_port(), 8081);
    assert!(c.validate().is_err());
    assert_eq!(c.try_set("rest.port", " 9000 "), Ok(()));
    assert_eq!(c.get("rest.port"), Some("9000"));
    assert_eq!(c.remove("state.backend"), Some("rocksdb".to_string()));
    assert_eq!(c.len(), 1);

    let cluster = cfg(&[("rest.port", "9000"), ("parallelism.default", "2")]);
    let job = cfg(&[("parallelism.default", "4"), ("restart-strategy", "none")]);
    let merged = cluster.overlay(&job);
    assert_eq!(merged.get("rest.port"), Some("9000"));
    assert_eq!(merged.default_parallelism(), 4);
    assert_eq!(merged.restart_strategy(), Some(RestartStrategyConfig::None));
}

#[test]
fn flat_yaml_round_trip() {
    let c = cfg(&[
        ("high-availability.cluster-id", "/it's: a # test"),
        ("execution.checkpointing.interval", "10 s"),
        ("pipeline.max-parallelism", "64"),
        ("rest.port", "9000"),
    ]);
    let dir = dir_with(&c.to_flat_yaml());
    let loaded = load(Some(dir.path()), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config, c);
    assert!(loaded.warnings.is_empty());
}

// ---------------------------------------------------------------- masters / workers

#[test]
fn masters_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(MASTERS_FILE),
        "# JobManagers\n\nlocalhost:8081\n  jm2.example.org:8082   # standby\n[::1]:8083\n10.0.0.7:8084\n",
    )
    .expect("write");
    assert_eq!(
        read_masters(dir.path()),
        Ok(vec![
            ("localhost".to_string(), 8081),
            ("jm2.example.org".to_string(), 8082),
            ("[::1]".to_string(), 8083),
            ("10.0.0.7".to_string(), 8084),
        ])
    );
    for (content, bad) in [
        ("localhost:8081\n\nhost:abc\n", "host:abc"),
        ("localhost\n", "localhost"),
        ("a b:1\n", "a b:1"),
        ("h:0\n", "h:0"),
    ] {
        std::fs::write(dir.path().join(MASTERS_FILE), content).expect("write");
        let e = read_masters(dir.path()).expect_err(content);
        let line = content
            .lines()
            .position(|l| l == bad)
            .map(|i| i + 1)
            .unwrap_or(0);
        assert_eq!(
            e.to_string(),
            format!(
                "invalid entry '{bad}' in '{}' at line {line}: expected host:rest_port such as 'localhost:8081'",
                dir.path().join(MASTERS_FILE).display()
            )
        );
    }
    let empty = tempfile::tempdir().expect("tempdir");
    let e = read_masters(empty.path()).expect_err("no masters file");
    assert!(
        matches!(&e, ConfigError::Io { path, .. } if *path == empty.path().join(MASTERS_FILE)),
        "{e}"
    );
    assert!(matches!(
        read_masters(&empty.path().join("nope")),
        Err(ConfigError::NoSuchDir { .. })
    ));
}

#[test]
fn workers_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(WORKERS_FILE),
        "localhost\nlocalhost # second TM on this host\n\n# x\nworker-2.example.org\n10.1.2.3\n",
    )
    .expect("write");
    assert_eq!(
        read_workers(dir.path()),
        Ok(vec![
            "localhost".into(),
            "localhost".into(),
            "worker-2.example.org".into(),
            "10.1.2.3".into()
        ])
    );
    std::fs::write(dir.path().join(WORKERS_FILE), "localhost\nbad host\n").expect("write");
    assert_eq!(
        read_workers(dir.path()).expect_err("bad host").to_string(),
        format!(
            "invalid entry 'bad host' in '{}' at line 2: expected a host name or IP address such as 'localhost'",
            dir.path().join(WORKERS_FILE).display()
        )
    );
    std::fs::write(dir.path().join(WORKERS_FILE), "# nobody\n").expect("write");
    assert_eq!(read_workers(dir.path()), Ok(Vec::new()));
}

#[test]
fn implicit_fixed_delay_takes_the_configured_delay() {
    use crate::settings::RestartStrategyConfig;
    use std::time::Duration;
    let c = Config::from_pairs(&[
        ("execution.checkpointing.interval", "1 s"),
        ("restart-strategy.fixed-delay.delay", "50 ms"),
    ])
    .unwrap();
    assert_eq!(
        c.effective_restart_strategy(),
        RestartStrategyConfig::FixedDelay {
            attempts: u32::MAX,
            delay: Duration::from_millis(50)
        }
    );
    let c = Config::from_pairs(&[("execution.checkpointing.interval", "1 s")]).unwrap();
    assert_eq!(
        c.effective_restart_strategy(),
        RestartStrategyConfig::FixedDelay {
            attempts: u32::MAX,
            delay: Duration::from_secs(1)
        }
    );
    let c = Config::from_pairs(&[("restart-strategy.fixed-delay.delay", "50 ms")]).unwrap();
    assert_eq!(
        c.effective_restart_strategy(),
        RestartStrategyConfig::None,
        "no checkpointing, no type: none"
    );
}
