//! The hot standby's cache: what a standby JobManager keeps in memory so that, once granted
//! leadership, it recovers the jobs without reading everything from scratch.
//!
//! While a JobManager is a standby it polls the HA stores every [`REFRESH_INTERVAL`] (a poll of
//! versions, not ZooKeeper watches: one `getChildren` of the job graphs, one `getData` of each
//! graph's pointer, and the list of each job's registered checkpoints). It re-reads only what
//! changed: a job graph whose pointer changed (every put writes a new blob), and the metadata
//! (`_metadata`, read from checkpoint storage and parsed) of checkpoints registered since the
//! last poll. Graphs and checkpoints no longer in the stores are dropped.
//!
//! The cache is never trusted as the truth. When leadership is granted, the job graph ids and
//! versions and every job's registered checkpoints are read again from the stores (a checkpoint
//! completed after the last poll is therefore seen and restored from, never an older one); only
//! bytes whose version still matches are taken from memory, and cached checkpoint metadata only
//! while its file still exists. The job result store, the checkpoint id counter and the dirty
//! clean-ups are read fresh as before, and every write of the new leader stays fenced.

use crate::ha::Ha;
use eddy_coordination::HaError;
use eddy_core::JobId;
use eddy_recovery::CompletedCheckpoint;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a standby polls the versions of the HA stores.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// One job as the standby last saw it.
struct CachedJob {
    /// The job graph store's version of `graph`.
    graph_version: String,
    /// The stored job graph (verified against its checksum when read).
    graph: Vec<u8>,
    /// Parsed metadata of registered checkpoints, by id, with the pointer it was read from.
    metadata: BTreeMap<u64, (String, CompletedCheckpoint)>,
}

/// What a recovery took from the cache and what it had to read (for the log and the tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheUse {
    pub graphs_cached: usize,
    pub graphs_read: usize,
    pub metadata_cached: usize,
    pub metadata_read: usize,
}

/// A job's registered checkpoints, current as of the call, with their metadata.
pub struct RecoveredCheckpoints {
    /// As the completed-checkpoint store lists them now: `(id, pointer)`, ascending.
    pub registered: Vec<(u64, String)>,
    /// The readable ones, parsed.
    pub retained: Vec<CompletedCheckpoint>,
    /// The unreadable ones and why.
    pub skipped: Vec<(u64, String)>,
}

#[derive(Default)]
pub struct StandbyCache {
    jobs: BTreeMap<JobId, CachedJob>,
    refreshed_at: Option<Instant>,
    used: CacheUse,
}

impl StandbyCache {
    /// Polls the stores if the last poll is older than [`REFRESH_INTERVAL`]; errors are kept
    /// for the next poll (the cache is only ever a shortcut).
    pub fn maybe_refresh(&mut self, ha: &Ha) {
        if self
            .refreshed_at
            .is_some_and(|t| t.elapsed() < REFRESH_INTERVAL)
        {
            return;
        }
        if let Err(e) = self.refresh(ha) {
            tracing::debug!("standby: cannot refresh the cache of the HA stores: {e}");
        }
        // Also after an error: a ZooKeeper outage is not polled in a busy loop.
        self.refreshed_at = Some(Instant::now());
    }

    /// Brings the cache up to date with the stores, reading only what changed.
    pub fn refresh(&mut self, ha: &Ha) -> Result<(), HaError> {
        let ids = ha.job_ids()?;
        self.jobs.retain(|id, _| ids.contains(id));
        for id in ids {
            if self.graph_of(ha, id)?.is_none() {
                continue;
            }
            let registered = ha.checkpoints(id)?;
            self.metadata_of(id, &registered);
        }
        self.refreshed_at = Some(Instant::now());
        Ok(())
    }

    /// The stored job graphs, current as of this call: their ids and versions are read from the
    /// store, and a graph is read only if the cache does not hold that version.
    pub fn job_graphs(&mut self, ha: &Ha) -> Result<Vec<(JobId, Vec<u8>)>, HaError> {
        let ids = ha.job_ids()?;
        self.jobs.retain(|id, _| ids.contains(id));
        let mut out = Vec::new();
        for id in ids {
            if let Some(g) = self.graph_of(ha, id)? {
                out.push((id, g));
            }
        }
        Ok(out)
    }

    /// The registered checkpoints of `job`, listed from the store now; the metadata of each is
    /// taken from the cache if it was read from the same pointer and its file still exists,
    /// otherwise read from checkpoint storage.
    pub fn checkpoints(&mut self, ha: &Ha, job: JobId) -> Result<RecoveredCheckpoints, HaError> {
        let registered = ha.checkpoints(job)?;
        let (retained, skipped) = self.metadata_of(job, &registered);
        Ok(RecoveredCheckpoints {
            registered,
            retained,
            skipped,
        })
    }

    /// What recoveries took from the cache since the last call, and resets the counts.
    pub fn take_use(&mut self) -> CacheUse {
        std::mem::take(&mut self.used)
    }

    /// How long ago the last poll was.
    pub fn age(&self) -> Option<Duration> {
        self.refreshed_at.map(|t| t.elapsed())
    }

    /// Whether the cache holds `job`, and the ids of the checkpoints whose metadata it holds.
    pub fn cached(&self, job: JobId) -> Option<Vec<u64>> {
        self.jobs
            .get(&job)
            .map(|j| j.metadata.keys().copied().collect())
    }

    /// Drops everything (a leader keeps no cache; a new standby starts empty).
    pub fn clear(&mut self) {
        self.jobs.clear();
        self.refreshed_at = None;
    }

    /// The graph of `id` at the store's current version; `None` if it is gone.
    fn graph_of(&mut self, ha: &Ha, id: JobId) -> Result<Option<Vec<u8>>, HaError> {
        let Some(version) = ha.job_graph_version(id)? else {
            self.jobs.remove(&id);
            return Ok(None);
        };
        if let Some(j) = self.jobs.get(&id).filter(|j| j.graph_version == version) {
            self.used.graphs_cached += 1;
            return Ok(Some(j.graph.clone()));
        }
        // Read after the version: the bytes are that version or newer, and a newer one only
        // makes the next check re-read them.
        let Some(graph) = ha.job_graph(id)? else {
            self.jobs.remove(&id);
            return Ok(None);
        };
        self.used.graphs_read += 1;
        let job = self.jobs.entry(id).or_insert_with(|| CachedJob {
            graph_version: String::new(),
            graph: Vec::new(),
            metadata: BTreeMap::new(),
        });
        job.graph_version = version;
        job.graph = graph.clone();
        Ok(Some(graph))
    }

    /// The parsed metadata of `registered` (cached or read), and the unreadable ones; the
    /// cache keeps exactly the readable registered ones afterwards.
    fn metadata_of(
        &mut self,
        job: JobId,
        registered: &[(u64, String)],
    ) -> (Vec<CompletedCheckpoint>, Vec<(u64, String)>) {
        let mut cached = self
            .jobs
            .get_mut(&job)
            .map(|j| std::mem::take(&mut j.metadata))
            .unwrap_or_default();
        let mut kept = BTreeMap::new();
        let mut retained = Vec::new();
        let mut skipped = Vec::new();
        for (id, pointer) in registered {
            let hit = cached
                .remove(id)
                .filter(|(p, _)| p == pointer && Path::new(pointer).exists());
            let cp = match hit {
                Some((_, cp)) => {
                    self.used.metadata_cached += 1;
                    cp
                }
                None => match eddy_recovery::storage::read_metadata(Path::new(pointer)) {
                    Ok(cp) => {
                        self.used.metadata_read += 1;
                        cp
                    }
                    Err(e) => {
                        skipped.push((*id, e.to_string()));
                        continue;
                    }
                },
            };
            kept.insert(*id, (pointer.clone(), cp.clone()));
            retained.push(cp);
        }
        if let Some(j) = self.jobs.get_mut(&job) {
            j.metadata = kept;
        }
        (retained, skipped)
    }
}
