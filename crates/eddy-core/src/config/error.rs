//! [`ConfigError`]: every way loading or validating configuration can fail. Each message is one
//! line naming what was wrong, the offending value or file, and what is allowed; this file must
//! never decide policy (which values are valid), only how failures are reported.

use std::path::PathBuf;

/// A configuration failure. `Display` is always a single line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value its type does not allow (or that conflicts with another key).
    #[error("invalid value '{value}' for key '{key}': expected {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: String,
    },
    /// A valid value asking for behaviour Eddy does not have (yet): see `support.rs`.
    #[error("{key}: '{value}' is not supported {reason}; allowed: {allowed}")]
    Unsupported {
        key: String,
        value: String,
        reason: String,
        allowed: String,
    },
    /// A key that another key's value makes mandatory is absent.
    #[error("missing value for key '{key}': {reason}")]
    MissingKey { key: String, reason: String },
    /// A key Eddy does not know, where unknown keys are not tolerated ([`super::Config::from_pairs`],
    /// [`super::Config::try_set`]). `suggestion` is empty or `; did you mean '<key>'?`.
    #[error("unknown configuration key '{key}'{suggestion}")]
    UnknownKey { key: String, suggestion: String },
    /// A `-D` argument without `=`.
    #[error("invalid -D override '{arg}': expected key=value, e.g. -D rest.port=8081")]
    BadOverride { arg: String },
    /// `--conf DIR` / `EDDY_CONF_DIR` names something that is not a directory.
    #[error("configuration directory '{}' does not exist or is not a directory", path.display())]
    NoSuchDir { path: PathBuf },
    /// A file could not be read.
    #[error("cannot read '{}': {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// `config.yaml` is not valid YAML, or not a mapping of keys to scalars/lists.
    #[error("invalid YAML in '{}' at line {line}: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A line of `masters` or `workers` is not what that file holds.
    #[error("invalid entry '{content}' in '{}' at line {line}: expected {expected}", path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        content: String,
        expected: String,
    },
}

/// Makes user text safe to embed in a one-line message (newlines and control characters escaped).
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, value: &str, expected: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            key: one_line(key),
            value: one_line(value),
            expected: expected.into(),
        }
    }
}
