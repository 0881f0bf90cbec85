//! The fenced stores of the `zookeeper` backend: job graphs (blob in the storage dir, pointer in
//! ZooKeeper), completed-checkpoint pointers, checkpoint id counters and the job result store.
//!
//! Every write — including no-op writes — is one multi-op whose first operation checks that the
//! writer's latch node still exists at version 0. A deposed leader's multi therefore fails as a
//! whole with `HaError::Fenced` and changes nothing. Must never write a leader-owned node any
//! other way, and never delete a job's HA data while its job result entry is missing.

use super::{persistent, session_ended, Shared};
use crate::api::{
    BoxFuture, CheckpointIdCounter, CompletedCheckpointStore, JobGraphStore, JobResultStore,
    LeaderSessionId,
};
use crate::durable;
use crate::error::HaError;
use crate::paths::{
    parse_checkpoint_node_name, CheckpointPointer, JobGraphPointer, JobResultEntry, JobResultState,
};
use eddy_core::JobId;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{debug, warn};
use zookeeper_client::{Client, Error as ZkError, MultiReadResult, MultiWriteError, MultiWriter};

/// How often a write is retried when a concurrent change made its preconditions stale.
const MAX_ATTEMPTS: usize = 16;

/// One write in a fenced multi-op.
enum Op {
    Create {
        path: String,
        data: Vec<u8>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// `version` -1 deletes any version.
    Delete {
        path: String,
        version: i32,
    },
    /// Fails the multi unless `path` exists (at any version when -1).
    Check {
        path: String,
        version: i32,
    },
}

/// Result of a fenced multi that passed the latch check.
enum Committed {
    Done,
    /// Operation `op` (index into the given ops) failed; nothing was applied.
    Failed {
        op: usize,
        source: ZkError,
    },
}

fn add_ops(w: &mut MultiWriter<'_>, latch: &str, ops: &[Op]) -> Result<(), ZkError> {
    w.add_check_version(latch, 0)?;
    for op in ops {
        match op {
            Op::Create { path, data } => w.add_create(path, data, &persistent())?,
            Op::SetData {
                path,
                data,
                version,
            } => w.add_set_data(path, data, Some(*version))?,
            Op::Delete { path, version } => w.add_delete(path, Some(*version))?,
            Op::Check { path, version } => w.add_check_version(path, *version)?,
        }
    }
    Ok(())
}

impl Shared {
    /// Commits `ops` behind the latch check of leadership `session`. `Fenced` if this process does
    /// not lead under `session`, or ZooKeeper says the latch is gone, or the session ended.
    async fn commit_fenced(
        &self,
        session: LeaderSessionId,
        what: &str,
        path: &str,
        ops: &[Op],
    ) -> Result<Committed, HaError> {
        let (client, latch) = self.fence(session, what)?;
        let fenced = || HaError::Fenced {
            session,
            what: what.to_string(),
        };
        let mut w = client.new_multi_writer();
        add_ops(&mut w, &latch, ops).map_err(|e| HaError::zk("prepare write", path, e))?;
        match w.commit().await {
            Ok(_) => Ok(Committed::Done),
            Err(MultiWriteError::OperationFailed { index: 0, source }) => {
                debug!("{what}: latch check of {latch} failed ({source}): fenced");
                self.fenced.notify_one();
                Err(fenced())
            }
            Err(MultiWriteError::OperationFailed { index, source }) => Ok(Committed::Failed {
                op: index - 1,
                source,
            }),
            Err(MultiWriteError::RequestFailed { source }) if session_ended(&source) => {
                debug!("{what}: session of the leadership ended ({source}): fenced");
                self.fenced.notify_one();
                Err(fenced())
            }
            Err(MultiWriteError::RequestFailed { source }) => {
                Err(HaError::zk("write", path, source))
            }
        }
    }
}

pub(crate) struct ZkStores {
    pub(crate) shared: Arc<Shared>,
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, HaError> {
    serde_json::to_vec(v).map_err(|e| HaError::Corrupt {
        location: "json encoding".into(),
        reason: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(path: &str, data: &[u8]) -> Result<T, HaError> {
    serde_json::from_slice(data).map_err(|e| HaError::Corrupt {
        location: path.to_string(),
        reason: e.to_string(),
    })
}

fn retries_exhausted(what: &str, path: &str) -> HaError {
    HaError::zk(
        "write",
        path,
        ZkError::UnexpectedError(format!(
            "{what}: gave up after {MAX_ATTEMPTS} attempts under concurrent changes"
        )),
    )
}

/// Reads data and version; `None` if the node does not exist.
async fn read(client: &Client, path: &str) -> Result<Option<(Vec<u8>, i32)>, HaError> {
    match client.get_data(path).await {
        Ok((data, stat)) => Ok(Some((data, stat.version))),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(HaError::zk("read", path, e)),
    }
}

async fn exists(client: &Client, path: &str) -> Result<bool, HaError> {
    client
        .check_stat(path)
        .await
        .map(|s| s.is_some())
        .map_err(|e| HaError::zk("stat", path, e))
}

async fn children(client: &Client, path: &str) -> Result<Vec<String>, HaError> {
    match client.list_children(path).await {
        Ok(c) => Ok(c),
        Err(ZkError::NoNode) => Ok(Vec::new()),
        Err(e) => Err(HaError::zk("list", path, e)),
    }
}

/// Reads several nodes in one request; missing nodes are `None`.
async fn read_many(client: &Client, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, HaError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = client.new_multi_reader();
    for p in paths {
        r.add_get_data(p)
            .map_err(|e| HaError::zk("read", p.clone(), e))?;
    }
    let results = r
        .commit()
        .await
        .map_err(|e| HaError::zk("read", paths[0].clone(), e))?;
    Ok(results
        .into_iter()
        .map(|res| match res {
            MultiReadResult::Data { data, .. } => Some(data),
            _ => None,
        })
        .collect())
}

/// `Create` ops for those of `dirs` (ordered parent first) that do not exist.
async fn missing_dirs(client: &Client, dirs: &[String]) -> Result<Vec<Op>, HaError> {
    let mut ops = Vec::new();
    for d in dirs {
        if !exists(client, d).await? {
            ops.push(Op::Create {
                path: d.clone(),
                data: Vec::new(),
            });
        }
    }
    Ok(ops)
}

/// All nodes of the subtree at `root`, children before parents; empty if `root` does not exist.
async fn subtree_post_order(client: &Client, root: &str) -> Result<Vec<String>, HaError> {
    if !exists(client, root).await? {
        return Ok(Vec::new());
    }
    let mut order = vec![root.to_string()];
    let mut i = 0;
    while i < order.len() {
        let parent = order[i].clone();
        for c in children(client, &parent).await? {
            order.push(format!("{parent}/{c}"));
        }
        i += 1;
    }
    order.reverse();
    Ok(order)
}

async fn remove_blob(path: PathBuf) {
    let p = path.clone();
    if let Err(e) = durable::blocking(move || durable::remove_file_durable(&p)).await {
        warn!("cannot delete job graph blob '{}': {e}", path.display());
    }
}

impl ZkStores {
    fn client(&self) -> Result<Client, HaError> {
        self.shared.client()
    }

    async fn counter_value(
        &self,
        client: &Client,
        job_id: JobId,
    ) -> Result<Option<(u64, i32)>, HaError> {
        let path = self.shared.paths.counter(job_id);
        match read(client, &path).await? {
            None => Ok(None),
            Some((data, version)) => {
                let v = std::str::from_utf8(&data)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| HaError::Corrupt {
                        location: path.clone(),
                        reason: "checkpoint counter is not a decimal number".into(),
                    })?;
                Ok(Some((v, version)))
            }
        }
    }

    /// See [`crate::HaServices::cleanup_job`].
    pub(crate) async fn cleanup_job(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> Result<(), HaError> {
        let what = format!("cleanup of the HA data of job {job_id}");
        let paths = &self.shared.paths;
        let result_path = paths.job_result(job_id);
        let graph_path = paths.jobgraph(job_id);
        for _ in 0..MAX_ATTEMPTS {
            self.shared.fence(session, &what)?;
            let client = self.client()?;
            if !exists(&client, &result_path).await? {
                return Err(HaError::NoJobResult { job_id });
            }
            let mut ops = vec![Op::Check {
                path: result_path.clone(),
                version: -1,
            }];
            for p in subtree_post_order(&client, &paths.job(job_id)).await? {
                ops.push(Op::Delete {
                    path: p,
                    version: -1,
                });
            }
            let mut blob = None;
            if let Some((data, version)) = read(&client, &graph_path).await? {
                if let Ok(ptr) = decode::<JobGraphPointer>(&graph_path, &data) {
                    blob = Some(PathBuf::from(ptr.path));
                }
                ops.push(Op::Delete {
                    path: graph_path.clone(),
                    version,
                });
            }
            match self
                .shared
                .commit_fenced(session, &what, &graph_path, &ops)
                .await?
            {
                Committed::Done => {
                    if let Some(b) = blob {
                        remove_blob(b).await;
                    }
                    return Ok(());
                }
                Committed::Failed { op: 0, .. } => return Err(HaError::NoJobResult { job_id }),
                Committed::Failed { source, .. } => {
                    debug!("{what}: concurrent change ({source}); retrying")
                }
            }
        }
        Err(retries_exhausted(&what, &graph_path))
    }
}

impl JobGraphStore for ZkStores {
    fn put(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        graph: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("job graph put of job {job_id}");
            self.shared.fence(session, &what)?;
            let blob = self.shared.storage.join("jobgraphs").join(format!(
                "{job_id}-{:016x}",
                eddy_core::ids::random_u128() as u64
            ));
            let encoded = durable::encode_blob(&graph);
            let b = blob.clone();
            durable::blocking(move || durable::write_atomic(&b, &encoded)).await?;
            let node = self.shared.paths.jobgraph(job_id);
            let pointer = json(&JobGraphPointer {
                path: blob.display().to_string(),
                leader_session: session,
            })?;
            let outcome = async {
                for _ in 0..MAX_ATTEMPTS {
                    let client = self.client()?;
                    let existing = read(&client, &node).await?;
                    let op = match &existing {
                        Some((_, version)) => Op::SetData {
                            path: node.clone(),
                            data: pointer.clone(),
                            version: *version,
                        },
                        None => Op::Create {
                            path: node.clone(),
                            data: pointer.clone(),
                        },
                    };
                    match self
                        .shared
                        .commit_fenced(session, &what, &node, &[op])
                        .await?
                    {
                        Committed::Done => {
                            let old = existing
                                .and_then(|(data, _)| decode::<JobGraphPointer>(&node, &data).ok())
                                .map(|p| PathBuf::from(p.path));
                            return Ok(old);
                        }
                        Committed::Failed {
                            source: ZkError::NoNode,
                            ..
                        } => {
                            let dir = self.shared.paths.jobgraphs_dir();
                            client
                                .mkdir(&dir, &persistent())
                                .await
                                .map_err(|e| HaError::zk("create", dir, e))?;
                        }
                        Committed::Failed {
                            source: ZkError::NodeExists | ZkError::BadVersion,
                            ..
                        } => {}
                        Committed::Failed { source, .. } => {
                            return Err(HaError::zk("write", node.clone(), source))
                        }
                    }
                }
                Err(retries_exhausted(&what, &node))
            }
            .await;
            match outcome {
                Ok(old) => {
                    if let Some(old) = old.filter(|o| *o != blob) {
                        remove_blob(old).await;
                    }
                    Ok(())
                }
                Err(e) => {
                    remove_blob(blob).await;
                    Err(e)
                }
            }
        })
    }

    fn get(&self, job_id: JobId) -> BoxFuture<'_, Result<Option<Vec<u8>>, HaError>> {
        Box::pin(async move {
            let client = self.client()?;
            let node = self.shared.paths.jobgraph(job_id);
            let Some((data, _)) = read(&client, &node).await? else {
                return Ok(None);
            };
            let ptr: JobGraphPointer = decode(&node, &data)?;
            let path = PathBuf::from(&ptr.path);
            let p = path.clone();
            let bytes = durable::blocking(move || durable::read_optional(&p))
                .await?
                .ok_or_else(|| HaError::Corrupt {
                    location: ptr.path.clone(),
                    reason: format!("job graph blob referenced by '{node}' is missing"),
                })?;
            durable::decode_blob(&bytes)
                .map(Some)
                .map_err(|reason| HaError::Corrupt {
                    location: path.display().to_string(),
                    reason,
                })
        })
    }

    fn remove(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("job graph removal of job {job_id}");
            let node = self.shared.paths.jobgraph(job_id);
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let existing = read(&client, &node).await?;
                let ops = match &existing {
                    Some((_, version)) => vec![Op::Delete {
                        path: node.clone(),
                        version: *version,
                    }],
                    None => Vec::new(),
                };
                match self
                    .shared
                    .commit_fenced(session, &what, &node, &ops)
                    .await?
                {
                    Committed::Done => {
                        if let Some(ptr) =
                            existing.and_then(|(d, _)| decode::<JobGraphPointer>(&node, &d).ok())
                        {
                            remove_blob(PathBuf::from(ptr.path)).await;
                        }
                        return Ok(());
                    }
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &node))
        })
    }

    fn version(&self, job_id: JobId) -> BoxFuture<'_, Result<Option<String>, HaError>> {
        Box::pin(async move {
            let client = self.client()?;
            let node = self.shared.paths.jobgraph(job_id);
            let Some((data, _)) = read(&client, &node).await? else {
                return Ok(None);
            };
            // Every put writes a blob with a new random name: the pointer is the version.
            let ptr: JobGraphPointer = decode(&node, &data)?;
            Ok(Some(ptr.path))
        })
    }

    fn list_job_ids(&self) -> BoxFuture<'_, Result<Vec<JobId>, HaError>> {
        Box::pin(async move {
            let client = self.client()?;
            let mut ids: Vec<JobId> = children(&client, &self.shared.paths.jobgraphs_dir())
                .await?
                .iter()
                .filter_map(|n| JobId::parse(n).ok())
                .collect();
            ids.sort();
            Ok(ids)
        })
    }
}

impl CompletedCheckpointStore for ZkStores {
    fn add(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        checkpoint_id: u64,
        pointer: String,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("completed checkpoint {checkpoint_id} add of job {job_id}");
            let paths = &self.shared.paths;
            let node = paths.checkpoint(job_id, checkpoint_id);
            let data = json(&CheckpointPointer {
                pointer: pointer.clone(),
                leader_session: session,
            })?;
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let mut ops =
                    missing_dirs(&client, &[paths.job(job_id), paths.checkpoints_dir(job_id)])
                        .await?;
                let last = ops.len();
                ops.push(Op::Create {
                    path: node.clone(),
                    data: data.clone(),
                });
                match self
                    .shared
                    .commit_fenced(session, &what, &node, &ops)
                    .await?
                {
                    Committed::Done => return Ok(()),
                    Committed::Failed {
                        op,
                        source: ZkError::NodeExists,
                    } if op == last => {
                        if let Some((existing, _)) = read(&client, &node).await? {
                            let existing: CheckpointPointer = decode(&node, &existing)?;
                            if existing.pointer == pointer {
                                // Idempotent re-add; still proves leadership.
                                self.shared
                                    .commit_fenced(session, &what, &node, &[])
                                    .await?;
                                return Ok(());
                            }
                            return Err(HaError::Conflict {
                                what: format!("checkpoint {checkpoint_id} of job {job_id}"),
                            });
                        }
                    }
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &node))
        })
    }

    fn list(&self, job_id: JobId) -> BoxFuture<'_, Result<Vec<(u64, String)>, HaError>> {
        Box::pin(async move {
            let client = self.client()?;
            let dir = self.shared.paths.checkpoints_dir(job_id);
            let mut ids: Vec<u64> = children(&client, &dir)
                .await?
                .iter()
                .filter_map(|n| parse_checkpoint_node_name(n))
                .collect();
            ids.sort_unstable();
            let nodes: Vec<String> = ids
                .iter()
                .map(|id| self.shared.paths.checkpoint(job_id, *id))
                .collect();
            let datas = read_many(&client, &nodes).await?;
            let mut out = Vec::with_capacity(ids.len());
            for ((id, node), data) in ids.into_iter().zip(nodes.iter()).zip(datas) {
                if let Some(data) = data {
                    let ptr: CheckpointPointer = decode(node, &data)?;
                    out.push((id, ptr.pointer));
                }
            }
            Ok(out)
        })
    }

    fn remove(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        checkpoint_id: u64,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("completed checkpoint {checkpoint_id} removal of job {job_id}");
            let node = self.shared.paths.checkpoint(job_id, checkpoint_id);
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let ops = if exists(&client, &node).await? {
                    vec![Op::Delete {
                        path: node.clone(),
                        version: -1,
                    }]
                } else {
                    Vec::new()
                };
                match self
                    .shared
                    .commit_fenced(session, &what, &node, &ops)
                    .await?
                {
                    Committed::Done => return Ok(()),
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &node))
        })
    }

    fn remove_all(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("removal of all completed checkpoints of job {job_id}");
            let dir = self.shared.paths.checkpoints_dir(job_id);
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let ops: Vec<Op> = children(&client, &dir)
                    .await?
                    .into_iter()
                    .map(|c| Op::Delete {
                        path: format!("{dir}/{c}"),
                        version: -1,
                    })
                    .collect();
                match self
                    .shared
                    .commit_fenced(session, &what, &dir, &ops)
                    .await?
                {
                    Committed::Done => return Ok(()),
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &dir))
        })
    }
}

impl CheckpointIdCounter for ZkStores {
    fn get_and_increment(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<u64, HaError>> {
        Box::pin(async move {
            let what = format!("checkpoint id counter increment of job {job_id}");
            let paths = &self.shared.paths;
            let node = paths.counter(job_id);
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let (current, ops) = match self.counter_value(&client, job_id).await? {
                    Some((v, version)) => (
                        v,
                        vec![Op::SetData {
                            path: node.clone(),
                            data: (v + 1).to_string().into_bytes(),
                            version,
                        }],
                    ),
                    None => {
                        let mut ops = missing_dirs(&client, &[paths.job(job_id)]).await?;
                        ops.push(Op::Create {
                            path: node.clone(),
                            data: b"2".to_vec(),
                        });
                        (1, ops)
                    }
                };
                match self
                    .shared
                    .commit_fenced(session, &what, &node, &ops)
                    .await?
                {
                    Committed::Done => return Ok(current),
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &node))
        })
    }

    fn get(&self, job_id: JobId) -> BoxFuture<'_, Result<u64, HaError>> {
        Box::pin(async move {
            let client = self.client()?;
            Ok(self
                .counter_value(&client, job_id)
                .await?
                .map(|(v, _)| v)
                .unwrap_or(1))
        })
    }

    fn set(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        next_id: u64,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("checkpoint id counter set of job {job_id}");
            let paths = &self.shared.paths;
            let node = paths.counter(job_id);
            let data = next_id.to_string().into_bytes();
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let ops = match self.counter_value(&client, job_id).await? {
                    Some((current, _)) if next_id < current => {
                        return Err(HaError::CounterWouldDecrease {
                            job_id,
                            current,
                            requested: next_id,
                        })
                    }
                    Some((_, version)) => vec![Op::SetData {
                        path: node.clone(),
                        data: data.clone(),
                        version,
                    }],
                    None => {
                        if next_id < 1 {
                            return Err(HaError::CounterWouldDecrease {
                                job_id,
                                current: 1,
                                requested: next_id,
                            });
                        }
                        let mut ops = missing_dirs(&client, &[paths.job(job_id)]).await?;
                        ops.push(Op::Create {
                            path: node.clone(),
                            data: data.clone(),
                        });
                        ops
                    }
                };
                match self
                    .shared
                    .commit_fenced(session, &what, &node, &ops)
                    .await?
                {
                    Committed::Done => return Ok(()),
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &node))
        })
    }
}

impl JobResultStore for ZkStores {
    fn create_dirty(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        result: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("job result store create of job {job_id}");
            let node = self.shared.paths.job_result(job_id);
            let data = json(&JobResultEntry {
                state: JobResultState::Dirty,
                result,
                leader_session: session,
            })?;
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let ops = if exists(&client, &node).await? {
                    Vec::new()
                } else {
                    vec![Op::Create {
                        path: node.clone(),
                        data: data.clone(),
                    }]
                };
                match self
                    .shared
                    .commit_fenced(session, &what, &node, &ops)
                    .await?
                {
                    Committed::Done => return Ok(()),
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &node))
        })
    }

    fn mark_clean(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let what = format!("job result store mark-clean of job {job_id}");
            let node = self.shared.paths.job_result(job_id);
            for _ in 0..MAX_ATTEMPTS {
                self.shared.fence(session, &what)?;
                let client = self.client()?;
                let Some((data, version)) = read(&client, &node).await? else {
                    return Err(HaError::NotFound {
                        what: format!("job result of job {job_id}"),
                    });
                };
                let mut entry: JobResultEntry = decode(&node, &data)?;
                let ops = if entry.state == JobResultState::Clean {
                    Vec::new()
                } else {
                    entry.state = JobResultState::Clean;
                    entry.leader_session = session;
                    vec![Op::SetData {
                        path: node.clone(),
                        data: json(&entry)?,
                        version,
                    }]
                };
                match self
                    .shared
                    .commit_fenced(session, &what, &node, &ops)
                    .await?
                {
                    Committed::Done => return Ok(()),
                    Committed::Failed { source, .. } => {
                        debug!("{what}: concurrent change ({source}); retrying")
                    }
                }
            }
            Err(retries_exhausted(&what, &node))
        })
    }

    fn has_result(&self, job_id: JobId) -> BoxFuture<'_, Result<bool, HaError>> {
        Box::pin(async move {
            let client = self.client()?;
            exists(&client, &self.shared.paths.job_result(job_id)).await
        })
    }

    fn list_dirty(&self) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>> {
        self.list_results(true)
    }

    fn list_all(&self) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>> {
        self.list_results(false)
    }
}

impl ZkStores {
    fn list_results(
        &self,
        dirty_only: bool,
    ) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>> {
        Box::pin(async move {
            let client = self.client()?;
            let dir = self.shared.paths.job_results_dir();
            let mut ids: Vec<JobId> = children(&client, &dir)
                .await?
                .iter()
                .filter_map(|n| JobId::parse(n).ok())
                .collect();
            ids.sort();
            let nodes: Vec<String> = ids
                .iter()
                .map(|id| self.shared.paths.job_result(*id))
                .collect();
            let datas = read_many(&client, &nodes).await?;
            let mut out = Vec::new();
            for ((id, node), data) in ids.into_iter().zip(nodes.iter()).zip(datas) {
                if let Some(data) = data {
                    let entry: JobResultEntry = decode(node, &data)?;
                    if !dirty_only || entry.state == JobResultState::Dirty {
                        out.push((id, entry.result));
                    }
                }
            }
            Ok(out)
        })
    }
}
