//! The archive of ended jobs: each job's final [`JobDetails`] once it is FINISHED, FAILED or
//! CANCELED and cleaned up, so `eddy list --all` and REST keep answering for it while the
//! JobMaster itself is dropped. Bounded by `jobstore.max-capacity` (the oldest ended go first)
//! and `jobstore.expiration-time` (counted from the job's end).
//!
//! Sans-IO: time comes in as `now` (ms since the epoch). With HA every new leader fills it from
//! the job result store; this file never reads or writes anything itself.

use crate::status::JobDetails;
use eddy_core::JobId;
use std::collections::BTreeMap;

pub struct JobArchive {
    capacity: usize,
    ttl_ms: i64,
    jobs: BTreeMap<JobId, JobDetails>,
}

impl JobArchive {
    pub fn new(capacity: usize, ttl_ms: i64) -> Self {
        JobArchive {
            capacity: capacity.max(1),
            ttl_ms,
            jobs: BTreeMap::new(),
        }
    }

    /// Keeps `details` of an ended job, then evicts what is beyond the bounds at `now`.
    pub fn insert(&mut self, id: JobId, details: JobDetails, now: i64) {
        self.jobs.insert(id, details);
        self.evict(now);
    }

    pub fn get(&self, id: &JobId) -> Option<&JobDetails> {
        self.jobs.get(id)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobDetails> {
        self.jobs.values()
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn clear(&mut self) {
        self.jobs.clear();
    }

    /// Drops jobs that ended more than the expiration time before `now`, then the oldest ended
    /// beyond the capacity.
    pub fn evict(&mut self, now: i64) {
        let ttl = self.ttl_ms;
        self.jobs
            .retain(|_, d| d.end_time < 0 || now - d.end_time <= ttl);
        if self.jobs.len() > self.capacity {
            let mut by_end: Vec<(i64, JobId)> =
                self.jobs.iter().map(|(id, d)| (d.end_time, *id)).collect();
            by_end.sort();
            let excess = self.jobs.len() - self.capacity;
            for (_, id) in by_end.into_iter().take(excess) {
                self.jobs.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::JobStatus;

    fn ended(id: u128, end_time: i64) -> (JobId, JobDetails) {
        let d = JobDetails {
            job_id: JobId(id).to_string(),
            name: "t".into(),
            status: JobStatus::Finished,
            start_time: 0,
            end_time,
            duration_ms: end_time,
            timestamps: Default::default(),
            vertices: Vec::new(),
            restarts: 0,
            completed_checkpoints: 0,
            failed_checkpoints: 0,
            checkpoints: None,
            exceptions: Vec::new(),
            status_reason: None,
            recoveries: Vec::new(),
            recovery_durations: Default::default(),
        };
        (JobId(id), d)
    }

    #[test]
    fn beyond_the_capacity_the_oldest_ended_jobs_go_first() {
        let mut a = JobArchive::new(2, i64::MAX);
        for (id, end) in [(1, 300), (2, 100), (3, 200)] {
            let (id, d) = ended(id, end);
            a.insert(id, d, 400);
        }
        assert_eq!(a.len(), 2);
        assert!(a.get(&JobId(2)).is_none(), "ended first, evicted first");
        assert!(a.get(&JobId(1)).is_some() && a.get(&JobId(3)).is_some());
    }

    #[test]
    fn jobs_expire_after_the_expiration_time_counted_from_their_end() {
        let mut a = JobArchive::new(10, 1_000);
        let (id, d) = ended(1, 5_000);
        a.insert(id, d, 5_000);
        a.evict(6_000);
        assert_eq!(
            a.len(),
            1,
            "exactly at the expiration time it is still kept"
        );
        a.evict(6_001);
        assert!(a.is_empty());
    }
}
