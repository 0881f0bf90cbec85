//! [`LeaderState`]: whether this JobManager's REST endpoint may answer. With high availability,
//! every JobManager runs a REST server but only the leader's knows the jobs; a standby answers
//! every request with 503 and the leader's address, never with its own (stale) data.
//!
//! Leader election sets this; this file must never decide leadership itself.

use std::sync::{Arc, RwLock};

/// This JobManager's role as far as the REST API is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Serve requests from this JobManager's state.
    Leader,
    /// Refuse requests; `leader_url` (`http://host:port`) is where the leader's REST API is, if
    /// known.
    Standby { leader_url: Option<String> },
}

/// The shared, switchable [`Leadership`]. Cheap to clone; every clone sees every change.
#[derive(Clone, Debug)]
pub struct LeaderState {
    inner: Arc<RwLock<Leadership>>,
}

impl Default for LeaderState {
    fn default() -> Self {
        Self::new(Leadership::Leader)
    }
}

impl LeaderState {
    pub fn new(initial: Leadership) -> Self {
        LeaderState {
            inner: Arc::new(RwLock::new(initial)),
        }
    }

    pub fn get(&self) -> Leadership {
        match self.inner.read() {
            Ok(g) => g.clone(),
            // A writer panicked mid-assignment of a plain enum: the value is still whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, leadership: Leadership) {
        let mut g = match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = leadership;
    }

    /// This JobManager became the leader: serve requests.
    pub fn set_leader(&self) {
        self.set(Leadership::Leader);
    }

    /// This JobManager is a standby; `leader` is the leader's REST address (`host:port` or
    /// `http://host:port`), if known.
    pub fn set_standby(&self, leader: Option<&str>) {
        self.set(Leadership::Standby {
            leader_url: leader.map(normalize_url),
        });
    }
}

/// `host:port` → `http://host:port`; trailing slashes dropped.
fn normalize_url(address: &str) -> String {
    let a = address.trim().trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_reports_the_leader_as_an_http_url() {
        let s = LeaderState::default();
        assert_eq!(s.get(), Leadership::Leader);
        let clone = s.clone();
        clone.set_standby(Some("10.0.0.7:8081/"));
        assert_eq!(
            s.get(),
            Leadership::Standby {
                leader_url: Some("http://10.0.0.7:8081".into())
            }
        );
        s.set_leader();
        assert_eq!(clone.get(), Leadership::Leader);
    }
}
