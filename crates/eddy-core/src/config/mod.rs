//! Configuration: `config.yaml` + `-D key=value` → validated flat map of Flink keys ([`Config`]) →
//! typed settings (getters in `typed.rs`). This file holds the map and [`load`]; it must never
//! accept an invalid value silently, and never panic on user input. Keys and defaults are listed
//! in `keys.rs` and explained in docs/configuration.md.

mod conf_dir;
mod duration;
mod error;
mod keys;
mod size;
mod support;
mod typed;
mod validate;
mod values;
mod yaml;

#[cfg(test)]
mod tests;

pub use conf_dir::{
    read_masters, read_workers, resolve_conf_dir, CONFIG_FILE, CONF_DIR_ENV, MASTERS_FILE,
    WORKERS_FILE,
};
pub use duration::{format_duration, parse_duration};
pub use error::ConfigError;
pub use keys::{
    is_job_key, lookup as lookup_key, suggest as suggest_key, KeySpec, JOB_KEYS, JOB_KEY_PREFIXES,
    KEYS, MAX_BUFFERS_PER_CHANNEL, MAX_FLOATING_PER_GATE, MAX_FRAME_SIZE, MAX_TASK_SLOTS,
    MIN_FRAME_SIZE,
};
pub use size::{format_size, parse_size};
pub use support::{support_of, Support, SAVEPOINTS_ISSUE, SUPPORT};
pub use typed::{HaMode, ResourceManagerMode, StateBackendKind};
pub use values::{Value, ValueType};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use validate::Source;

/// The validated, flat key/value configuration (Flink key names). Serializable: it travels with
/// every submitted job. Keys are stored under their canonical name (see [`KEYS`]); values are the
/// trimmed text the user wrote (defaults are not stored, getters apply them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Config {
    values: BTreeMap<String, String>,
}

/// The result of [`load`]: the configuration and the warnings to show the user (unknown keys,
/// ignored files, conflicting aliases).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Loads `<dir>/config.yaml` (dir = `conf_dir`, else `EDDY_CONF_DIR`, else none: start empty), then
/// applies `overrides` (`key=value` from `-D`, which win over the file), then validates.
pub fn load(conf_dir: Option<&Path>, overrides: &[String]) -> Result<Loaded, ConfigError> {
    load_from(resolve_conf_dir(conf_dir).as_deref(), overrides)
}

/// [`load`] without the `EDDY_CONF_DIR` fallback: `dir` is used as given.
pub fn load_from(dir: Option<&Path>, overrides: &[String]) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let mut entries = Vec::new();
    if let Some(dir) = dir {
        for e in conf_dir::read_config_yaml(dir, &mut warnings)? {
            match e.value {
                Some(v) => entries.push((Source::File, e.key, v)),
                None => warnings.push(format!(
                    "key '{}' in {CONFIG_FILE} has no value (ignored)",
                    e.key
                )),
            }
        }
    }
    for arg in overrides {
        let (k, v) = parse_override(arg)?;
        entries.push((Source::Override, k, v));
    }
    let config = validate::merge(entries, &mut warnings)?;
    Ok(Loaded { config, warnings })
}

/// Splits one `-D` argument `key=value` at the first `=`; the key must be non-empty.
pub fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(ConfigError::BadOverride {
            arg: error::one_line(arg),
        }),
    }
}

impl Config {
    /// A validated config from literal pairs (later pairs win). Strict: an unknown key is an error
    /// (`ConfigError::UnknownKey`), since pairs come from code, where a typo is a bug.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        for (k, _) in pairs {
            if keys::lookup(k.trim()).is_none() {
                return Err(unknown_key(k));
            }
        }
        let entries = pairs
            .iter()
            .map(|(k, v)| (Source::Override, k.to_string(), v.to_string()));
        validate::merge(entries, &mut Vec::new())
    }

    /// The configured value of `key` (canonical or alias name), as written; `None` if unset.
    /// Defaults are not applied here: use the typed getters for that.
    pub fn get(&self, key: &str) -> Option<&str> {
        match keys::lookup(key) {
            Some(spec) => std::iter::once(spec.key)
                .chain(spec.aliases.iter().copied())
                .find_map(|k| self.values.get(k))
                .map(String::as_str),
            None => self.values.get(key).map(String::as_str),
        }
    }

    /// Sets `key` (aliases stored under the canonical name) WITHOUT validation; an invalid value
    /// makes the typed getters fall back to the default. Prefer [`Config::try_set`].
    pub fn set(&mut self, key: &str, value: &str) {
        let key = key.trim();
        match keys::lookup(key) {
            Some(spec) => self.insert_raw(spec.key, value),
            None => {
                self.values
                    .insert(key.to_string(), value.trim().to_string());
            }
        }
    }

    /// Sets `key` after checking it is known and `value` fits its type.
    pub fn try_set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let spec = keys::lookup(key.trim()).ok_or_else(|| unknown_key(key))?;
        validate::check_value(spec, key.trim(), value)?;
        self.insert_raw(spec.key, value);
        Ok(())
    }

    /// Removes `key` (and its aliases); returns the value that was configured.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        match keys::lookup(key) {
            Some(spec) => std::iter::once(spec.key)
                .chain(spec.aliases.iter().copied())
                .filter_map(|k| self.values.remove(k))
                .next(),
            None => self.values.remove(key),
        }
    }

    /// Configured `(key, value)` pairs in key order (no defaults).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `self` with every key configured in `top` replaced by `top`'s value (e.g. a job's `-D`
    /// settings over the cluster's). Call [`Config::validate`] on the result for cross-key rules.
    pub fn overlay(&self, top: &Config) -> Config {
        let mut merged = self.clone();
        for (k, v) in top.iter() {
            merged.set(k, v);
        }
        merged
    }

    /// Re-checks every value and the cross-key rules (for a config that was deserialized or built
    /// with [`Config::set`]); returns the warnings (unknown keys, ineffective settings).
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        validate::validate(self)
    }

    /// The configured keys as flat YAML (`key: 'value'` lines), readable back by [`load`].
    pub fn to_flat_yaml(&self) -> String {
        self.iter()
            .map(|(k, v)| format!("{k}: '{}'\n", v.replace('\'', "''")))
            .collect()
    }

    /// Stores under the canonical `key`, dropping entries stored under its aliases.
    pub(crate) fn insert_raw(&mut self, key: &'static str, value: &str) {
        if let Some(spec) = keys::canonical(key) {
            for alias in spec.aliases {
                self.values.remove(*alias);
            }
        }
        self.values
            .insert(key.to_string(), value.trim().to_string());
    }
}

fn unknown_key(key: &str) -> ConfigError {
    ConfigError::UnknownKey {
        key: error::one_line(key),
        suggestion: keys::suggestion_suffix(key),
    }
}
