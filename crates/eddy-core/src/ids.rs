//! Identifiers. Job ids are 32 lowercase hex characters, as Flink's are, so Flink-aware tooling
//! can read them. Never derive an id from wall-clock time alone: two processes may start in the
//! same millisecond.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's id: 128 random bits shown as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub u128);

impl JobId {
    pub fn random() -> Self {
        JobId(random_u128())
    }

    /// Parses the 32-hex-character form; the error names the value and the expected shape.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "invalid job id '{s}': expected 32 hexadecimal characters"
            ));
        }
        u128::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|_| format!("invalid job id '{s}': expected 32 hexadecimal characters"))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// A TaskManager's id, unique per process start (a restarted TaskManager gets a new one).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub struct TaskManagerId(pub String);

impl TaskManagerId {
    pub fn random(prefix: &str) -> Self {
        TaskManagerId(format!("{prefix}-{:08x}", random_u128() as u32))
    }
}

impl fmt::Display for TaskManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The attempt number of one execution of a job's tasks: every (re)deployment gets a new one, so
/// messages and data of an older attempt can be recognised and dropped.
pub type AttemptId = u64;

/// 128 bits from the OS's random source, mixed with time and pid as a fallback.
pub fn random_u128() -> u128 {
    use std::io::Read;
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut buf).is_ok() {
            return u128::from_le_bytes(buf);
        }
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u128) << 96)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_round_trips_through_its_hex_form() {
        let id = JobId::random();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(JobId::parse(&s).unwrap(), id);
    }

    #[test]
    fn job_id_parse_rejects_wrong_shapes() {
        assert!(JobId::parse("abc").unwrap_err().contains("'abc'"));
        assert!(JobId::parse(&"g".repeat(32)).is_err());
    }
}
