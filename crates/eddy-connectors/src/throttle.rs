//! Rate limiting for generator sources: how many records a subtask may emit now, or when to
//! come back.
//!
//! Sources are polled by their task between control messages, so this must never sleep: it
//! answers with a count or a processing time (ms) for `SourceStatus::IdleUntil`. A source that
//! fell behind (back-pressure) catches up with a burst of at most one second's worth.

use eddy_runtime::Timestamp;

/// Emission schedule of one subtask: `per_sec` records per second from the first poll.
#[derive(Clone, Debug)]
pub(crate) struct Throttle {
    /// Records per second for this subtask; `None` = unthrottled.
    per_sec: Option<f64>,
    start: Option<Timestamp>,
    /// Records counted against the schedule (may be moved forward to drop a stale backlog).
    emitted: u64,
}

impl Throttle {
    /// `per_sec <= 0` (or not finite) means unthrottled.
    pub(crate) fn new(per_sec: f64) -> Self {
        let per_sec = (per_sec.is_finite() && per_sec > 0.0).then_some(per_sec);
        Throttle {
            per_sec,
            start: None,
            emitted: 0,
        }
    }

    /// How many records (at most `max`) may be emitted at `now`, or `Err(t)`: nothing before `t`.
    pub(crate) fn allowance(&mut self, now: Timestamp, max: usize) -> Result<usize, Timestamp> {
        let Some(rate) = self.per_sec else {
            return Ok(max);
        };
        let start = *self.start.get_or_insert(now);
        let elapsed_ms = (now - start).max(0) as f64;
        // One record is due at once, then one every 1000/rate ms.
        let due = (elapsed_ms * rate / 1000.0).floor() as u64 + 1;
        let backlog_cap = rate.max(1.0) as u64;
        if due > self.emitted + backlog_cap {
            self.emitted = due - backlog_cap;
        }
        if due > self.emitted {
            Ok(max.min((due - self.emitted) as usize))
        } else {
            let next = start + (self.emitted as f64 * 1000.0 / rate).ceil() as Timestamp;
            Err(next.max(now + 1))
        }
    }

    /// Counts records emitted after an `allowance`.
    pub(crate) fn record(&mut self, n: usize) {
        self.emitted += n as u64;
    }
}
