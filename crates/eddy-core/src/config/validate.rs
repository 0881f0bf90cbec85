//! Validation: merging configuration sources by precedence (aliases folded onto canonical names),
//! checking every value against its key's type, and the rules that span several keys. Must never
//! read files or environment variables, and never silently accept an invalid value.

use super::duration::format_duration;
use super::error::ConfigError;
use super::keys::{self, KeySpec};
use super::size::format_size;
use super::support;
use super::typed::HaMode;
use super::Config;
use crate::settings::RestartStrategyConfig;
use std::collections::BTreeMap;

/// Where a raw `(key, value)` came from; later sources win.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// `config.yaml`: a canonical key wins over its aliases whatever the order.
    File,
    /// `-D`: the last occurrence wins, whichever name it used.
    Override,
}

/// The winning raw value for one canonical key, with the name the user wrote.
struct Chosen {
    written: String,
    value: String,
    source: Source,
}

/// Folds `entries` (in source order, files before overrides) into a checked [`Config`]. Unknown
/// keys produce warnings; the first invalid value is an error naming the key as written.
pub(crate) fn merge(
    entries: impl IntoIterator<Item = (Source, String, String)>,
    warnings: &mut Vec<String>,
) -> Result<Config, ConfigError> {
    let mut chosen: BTreeMap<&'static str, Chosen> = BTreeMap::new();
    for (source, key, value) in entries {
        let key = key.trim().to_string();
        let value = value.trim().to_string();
        let Some(spec) = keys::lookup(&key) else {
            warnings.push(unknown_key_warning(&key));
            continue;
        };
        if let Some(prev) = chosen.get(spec.key) {
            let prev_is_canonical = prev.written == spec.key;
            let file_alias_after_canonical = source == Source::File
                && prev.source == Source::File
                && prev_is_canonical
                && key != spec.key;
            if prev.value != value && source == prev.source {
                if prev.written != key {
                    let winner = if file_alias_after_canonical {
                        &prev.written
                    } else {
                        &key
                    };
                    warnings.push(format!(
                        "'{}' and '{}' both set '{}'; using '{winner}'",
                        prev.written, key, spec.key
                    ));
                } else if source == Source::File {
                    warnings.push(format!(
                        "'{key}' is set twice in the file; using the last value"
                    ));
                }
            }
            if file_alias_after_canonical {
                continue;
            }
        }
        chosen.insert(
            spec.key,
            Chosen {
                written: key,
                value,
                source,
            },
        );
    }
    let mut config = Config::default();
    for (canonical, c) in chosen {
        if let Some(spec) = keys::canonical(canonical) {
            check_value(spec, &c.written, &c.value)?;
        }
        config.insert_raw(canonical, &c.value);
    }
    warnings.extend(cross_check(&config)?);
    Ok(config)
}

pub(crate) fn unknown_key_warning(key: &str) -> String {
    format!(
        "unknown configuration key '{key}' (ignored){}",
        keys::suggestion_suffix(key)
    )
}

/// Checks `value` against `spec`'s type, then that Eddy supports it (`support.rs`); the error
/// names the key as the user wrote it.
pub(crate) fn check_value(
    spec: &KeySpec,
    written_key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    match spec.ty.parse(value) {
        Some(parsed) => support::check_supported(spec.key, written_key, value, &parsed),
        None => Err(ConfigError::invalid(
            written_key,
            value.trim(),
            spec.ty.expected(),
        )),
    }
}

/// [`Config::validate`]: every stored value and the cross-key rules; returns warnings.
pub(crate) fn validate(config: &Config) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    for (key, value) in config.iter() {
        match keys::lookup(key) {
            Some(spec) => check_value(spec, key, value)?,
            None => warnings.push(unknown_key_warning(key)),
        }
    }
    warnings.extend(cross_check(config)?);
    Ok(warnings)
}

/// Rules spanning several keys (on values already checked one by one); returns soft warnings.
fn cross_check(config: &Config) -> Result<Vec<String>, ConfigError> {
    let warnings = Vec::new();
    let (interval, timeout) = (config.heartbeat_interval(), config.heartbeat_timeout());
    if timeout <= interval {
        let blamed = if config.get("heartbeat.timeout").is_some() {
            "heartbeat.timeout"
        } else {
            "heartbeat.interval"
        };
        let expected = if blamed == "heartbeat.timeout" {
            format!(
                "a duration greater than heartbeat.interval ({})",
                format_duration(interval)
            )
        } else {
            format!(
                "a duration less than heartbeat.timeout ({})",
                format_duration(timeout)
            )
        };
        return Err(ConfigError::invalid(
            blamed,
            config.get(blamed).unwrap_or(""),
            expected,
        ));
    }
    for key in ["pekko.framesize", "taskmanager.network.max-frame-size"] {
        let bytes = config.get_size(key).unwrap_or(keys::MIN_FRAME_SIZE);
        if !(keys::MIN_FRAME_SIZE..=keys::MAX_FRAME_SIZE).contains(&bytes) {
            return Err(ConfigError::invalid(
                key,
                config.get(key).unwrap_or(""),
                format!(
                    "a size from {} to {}",
                    format_size(keys::MIN_FRAME_SIZE),
                    format_size(keys::MAX_FRAME_SIZE)
                ),
            ));
        }
    }
    let segment_key = "taskmanager.memory.segment-size";
    if let Some(bytes) = config.get_size(segment_key) {
        if !(keys::MIN_SEGMENT_SIZE..=keys::MAX_SEGMENT_SIZE).contains(&bytes)
            || !bytes.is_power_of_two()
        {
            return Err(ConfigError::invalid(
                segment_key,
                config.get(segment_key).unwrap_or(""),
                format!(
                    "a power of two from {} to {}",
                    format_size(keys::MIN_SEGMENT_SIZE),
                    format_size(keys::MAX_SEGMENT_SIZE)
                ),
            ));
        }
    }
    let (min_key, max_key) = (
        "taskmanager.memory.network.min",
        "taskmanager.memory.network.max",
    );
    if let (Some(min), Some(max)) = (config.get_size(min_key), config.get_size(max_key)) {
        if min > max {
            let blamed = if config.get(max_key).is_some() && config.get(min_key).is_none() {
                max_key
            } else {
                min_key
            };
            let (expected, other, other_value) = if blamed == min_key {
                ("at most", max_key, max)
            } else {
                ("at least", min_key, min)
            };
            return Err(ConfigError::invalid(
                blamed,
                config.get(blamed).unwrap_or(""),
                format!("a size {expected} {other} ({})", format_size(other_value)),
            ));
        }
    }
    if config.ssl_internal_enabled() {
        for key in [
            "security.ssl.internal.cert",
            "security.ssl.internal.key",
            "security.ssl.internal.trust-cert",
        ] {
            if config.get(key).is_none() {
                return Err(ConfigError::MissingKey {
                    key: key.into(),
                    reason: "required when security.ssl.internal.enabled is true (PEM files; `eddy cert generate DIR` makes them)".into(),
                });
            }
        }
    }
    if config.ha_mode() == HaMode::ZooKeeper {
        for key in [
            "high-availability.zookeeper.quorum",
            "high-availability.storageDir",
        ] {
            if config.get(key).is_none() {
                return Err(ConfigError::MissingKey {
                    key: key.into(),
                    reason: "required when high-availability.type is zookeeper".into(),
                });
            }
        }
    }
    if let Some(RestartStrategyConfig::ExponentialDelay {
        initial_backoff,
        max_backoff,
        ..
    }) = config.restart_strategy()
    {
        if max_backoff < initial_backoff {
            let key = "restart-strategy.exponential-delay.max-backoff";
            let shown = config
                .get(key)
                .map_or_else(|| format_duration(max_backoff), str::to_string);
            return Err(ConfigError::invalid(
                key,
                &shown,
                format!(
                    "a duration >= restart-strategy.exponential-delay.initial-backoff ({})",
                    format_duration(initial_backoff)
                ),
            ));
        }
    }
    Ok(warnings)
}
