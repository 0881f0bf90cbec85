//! Value types of configuration keys: what text each type accepts, what it parses to, and how the
//! allowed values are described in error messages. Knows nothing about particular keys and must
//! never panic on user input.

use super::duration::parse_duration;
use super::size::parse_size;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Largest integer Flink's `Integer` options accept; as a count it means "unlimited".
pub const INT_MAX: i64 = i32::MAX as i64;

/// ZooKeeper's client port, used for quorum entries written without a port.
pub const DEFAULT_ZK_PORT: u16 = 2181;

/// The type of a configuration key's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueType {
    /// A duration (see [`parse_duration`]) of at least `min_ms` milliseconds.
    Duration { min_ms: u64 },
    /// A memory size (see [`parse_size`]).
    Size,
    /// `true` or `false` (case-insensitive).
    Bool,
    /// An integer within `min..=max`.
    Int { min: i64, max: i64 },
    /// A count of attempts: an integer in `min..=2147483647` or `unlimited`/`infinite`;
    /// 2147483647 (Flink's `Integer.MAX_VALUE`) also means unlimited.
    Count { min: i64 },
    /// A decimal number within `min..=max`.
    Float { min: f64, max: f64 },
    /// One of a fixed set of words, case-insensitive, `_` and `-` interchangeable. Each group lists
    /// synonyms; the first of a group is the canonical spelling shown in messages.
    Enum(&'static [&'static [&'static str]]),
    /// Any non-empty text.
    Text,
    /// A local filesystem path (`file://` prefix allowed).
    LocalPath,
    /// A path reachable by every process: local/shared path, `file://` URI or `s3://` URI.
    StoragePath,
    /// Local paths separated by `,` or `;` (YAML lists are joined with `;`).
    LocalPathList,
    /// A host name or IP address.
    Host,
    /// A TCP port, `0..=65535` (0 = any free port).
    Port,
    /// `host[:port]` entries separated by `,` or `;` (port defaults to 2181).
    HostPortList,
    /// A port `1..=65535` or a range `FROM-TO` of them (Flink's reporter ports).
    PortRange,
}

/// A parsed value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Duration(Duration),
    Size(u64),
    Bool(bool),
    Int(i64),
    /// `u32::MAX` = unlimited.
    Count(u32),
    Float(f64),
    /// The canonical spelling of the matched group.
    Enum(&'static str),
    Text(String),
    Path(PathBuf),
    Paths(Vec<PathBuf>),
    Port(u16),
    HostPorts(Vec<(String, u16)>),
    /// `from..=to`.
    PortRange(u16, u16),
}

const DURATION_EXAMPLES: &str = "such as '10 s', '500 ms', '1 min'";

impl ValueType {
    /// What this type allows, phrased to follow "expected ".
    pub fn expected(&self) -> String {
        match self {
            ValueType::Duration { min_ms: 0 } => format!("a duration {DURATION_EXAMPLES}"),
            ValueType::Duration { min_ms: 1 } => format!("a positive duration {DURATION_EXAMPLES}"),
            ValueType::Duration { min_ms } => {
                format!("a duration of at least {min_ms} ms, {DURATION_EXAMPLES}")
            }
            ValueType::Size => "a size such as '1024m', '1g', '512 kb' (whole numbers; units b, k, m, g, t)".into(),
            ValueType::Bool => "true or false".into(),
            ValueType::Int { min, max } if *max >= INT_MAX => format!("an integer >= {min}"),
            ValueType::Int { min, max } => format!("an integer in {min}..={max}"),
            ValueType::Count { min } => format!("an integer >= {min} or 'unlimited'"),
            ValueType::Float { min, max } if *max == f64::MAX => format!("a number >= {min:?}"),
            ValueType::Float { min, max } => format!("a number in {min:?}..={max:?}"),
            ValueType::Enum(groups) => {
                let names: Vec<&str> = groups.iter().filter_map(|g| g.first().copied()).collect();
                format!("one of: {}", names.join(", "))
            }
            ValueType::Text => "a non-empty string".into(),
            ValueType::LocalPath => "a local path such as '/var/lib/eddy' or './log'".into(),
            ValueType::StoragePath => {
                "a path or URI such as '/data/checkpoints', 'file:///data/checkpoints' or 's3://bucket/checkpoints'".into()
            }
            ValueType::LocalPathList => "one or more local paths separated by ',' or ';'".into(),
            ValueType::Host => "a host name or IP address such as 'localhost' or '10.0.0.5'".into(),
            ValueType::Port => "a port in 0..=65535".into(),
            ValueType::PortRange => "a port in 1..=65535 or a range FROM-TO such as 9250-9260".into(),
            ValueType::HostPortList => {
                "a list of host:port separated by ',' such as 'zk1:2181,zk2:2181'".into()
            }
        }
    }

    /// Parses `raw` (already trimmed or not); `None` if it is not a value of this type.
    pub fn parse(&self, raw: &str) -> Option<Value> {
        let raw = raw.trim();
        match *self {
            ValueType::Duration { min_ms } => parse_duration(raw)
                .ok()
                .filter(|d| *d >= Duration::from_millis(min_ms))
                .map(Value::Duration),
            ValueType::Size => parse_size(raw).ok().map(Value::Size),
            ValueType::Bool => parse_bool(raw).map(Value::Bool),
            ValueType::Int { min, max } => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .map(Value::Int),
            ValueType::Count { min } => parse_count(raw, min).map(Value::Count),
            ValueType::Float { min, max } => raw
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && *f >= min && *f <= max)
                .map(Value::Float),
            ValueType::Enum(groups) => {
                let wanted = normalise_word(raw);
                groups
                    .iter()
                    .find(|g| g.iter().any(|w| normalise_word(w) == wanted))
                    .and_then(|g| g.first().copied())
                    .map(Value::Enum)
            }
            ValueType::Text => (!raw.is_empty()).then(|| Value::Text(raw.to_string())),
            ValueType::LocalPath => parse_local_path(raw).map(Value::Path),
            ValueType::StoragePath => parse_storage_path(raw).map(Value::Path),
            ValueType::LocalPathList => {
                let parts: Option<Vec<PathBuf>> = split_list(raw).map(parse_local_path).collect();
                parts.filter(|p| !p.is_empty()).map(Value::Paths)
            }
            ValueType::Host => is_host(raw).then(|| Value::Text(raw.to_string())),
            ValueType::Port => raw.parse::<u16>().ok().map(Value::Port),
            ValueType::PortRange => crate::metrics::parse_port_range(raw)
                .ok()
                .map(|(a, b)| Value::PortRange(a, b)),
            ValueType::HostPortList => {
                let parts: Option<Vec<(String, u16)>> = split_list(raw)
                    .map(|e| parse_host_port(e, Some(DEFAULT_ZK_PORT)))
                    .collect();
                parts.filter(|p| !p.is_empty()).map(Value::HostPorts)
            }
        }
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    if raw.eq_ignore_ascii_case("true") {
        Some(true)
    } else if raw.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_count(raw: &str, min: i64) -> Option<u32> {
    if ["unlimited", "infinite"]
        .iter()
        .any(|w| raw.eq_ignore_ascii_case(w))
    {
        return Some(u32::MAX);
    }
    let n = raw
        .parse::<i64>()
        .ok()
        .filter(|n| (min..=INT_MAX).contains(n))?;
    Some(if n == INT_MAX { u32::MAX } else { n as u32 })
}

/// Lower-case with `_` read as `-`, so `EXACTLY_ONCE` = `exactly_once` = `exactly-once`.
fn normalise_word(word: &str) -> String {
    word.trim().to_lowercase().replace('_', "-")
}

/// Items of a `,`/`;` separated list, trimmed, empty items skipped.
fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn has_bad_chars(raw: &str) -> bool {
    raw.is_empty() || raw.chars().any(char::is_control)
}

fn parse_local_path(raw: &str) -> Option<PathBuf> {
    let path = raw.strip_prefix("file://").unwrap_or(raw);
    if has_bad_chars(path) || path.contains("://") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Local paths lose a `file://` prefix; `s3://` URIs are kept verbatim.
fn parse_storage_path(raw: &str) -> Option<PathBuf> {
    match raw.strip_prefix("s3://") {
        Some(rest) if !has_bad_chars(rest) && !rest.starts_with('/') => Some(PathBuf::from(raw)),
        Some(_) => None,
        None => parse_local_path(raw),
    }
}

/// A DNS name (letters, digits, `-`, `_`, dot-separated labels) or an IPv4/IPv6 address
/// (IPv6 optionally in brackets).
pub fn is_host(raw: &str) -> bool {
    let inner = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if let Some(v6) = inner {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    if raw.parse::<IpAddr>().is_ok() {
        return true;
    }
    !raw.is_empty()
        && raw.len() <= 253
        && raw.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `host:port`, `[v6]:port`, or (with `default_port`) a bare host. The port must be in 1..=65535.
pub fn parse_host_port(raw: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let raw = raw.trim();
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let host = format!("[{v6}]");
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else if raw.matches(':').count() == 1 {
        let (host, port) = raw.split_once(':')?;
        (host.to_string(), Some(port))
    } else {
        (raw.to_string(), None)
    };
    if !is_host(&host) || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0)?,
        None => default_port?,
    };
    Some((host, port))
}
