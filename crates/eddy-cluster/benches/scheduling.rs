//! Issue 15's sans-IO scheduling benchmark: 1,000 simulated TaskManagers of 4 slots register
//! with the resource manager's [`SlotPool`]; a job of two vertices of parallelism P (source →
//! keyed exchange → sink, 2P subtasks, P² channels) gets its slots and the [`JobMaster`] computes
//! every deployment (channel ids and addresses included) and the messages to send, as the
//! JobManager does — no socket, no thread, no file. The serialized size of the deploy messages
//! (one batch per TaskManager) is printed too (what goes over the RPC connections).
//!
//!     cargo bench -p eddy-cluster --bench scheduling [-- TASKMANAGERS P ROUNDS]
//!
//! Defaults: 1,000 TaskManagers, P = 2,000 (4,000 subtasks), 5 rounds; prints each round and the
//! median.

use eddy_cluster::jobmaster::{Command, JobMaster, JobMasterSettings};
use eddy_cluster::rpc::JmMessage;
use eddy_cluster::slots::SlotPool;
use eddy_core::settings::{CheckpointingSettings, FailoverStrategyKind, RestartStrategyConfig};
use eddy_core::JobId;
use eddy_runtime::graph::{JobEdge, JobGraph, JobVertex, PartitionKind};
use eddy_runtime::registry::JobSpec;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn graph(p: u32) -> Arc<JobGraph> {
    let v = |id: usize, name: &str, is_source: bool| JobVertex {
        id,
        name: name.into(),
        nodes: vec![id],
        operator_uids: vec![name.into()],
        parallelism: p,
        max_parallelism: 32_768.max(p),
        is_source,
    };
    Arc::new(JobGraph {
        vertices: vec![v(0, "source", true), v(1, "sink", false)],
        edges: vec![JobEdge {
            source: 0,
            target: 1,
            kind: PartitionKind::Hash,
            stream_edge: 0,
        }],
    })
}

fn settings() -> JobMasterSettings {
    let checkpointing = CheckpointingSettings {
        interval: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    JobMasterSettings {
        slot_request_timeout_ms: 300_000,
        buffer_timeout_ms: 100,
        checkpointing,
        restart: RestartStrategyConfig::None,
        failover: FailoverStrategyKind::Region,
        checkpoints_dir: Some("/nonexistent".into()),
        first_checkpoint_id: 1,
        first_attempt: 1 << 32,
        deploy_timeout_ms: 50_000,
        exception_history_size: 16,
        max_message_bytes: 10 << 20,
    }
}

/// One round: register the TaskManagers, allocate, deploy. Returns (time, subtasks deployed,
/// deploy messages, TaskManagers addressed, serialized bytes).
fn round(tms: usize, p: u32) -> (Duration, usize, usize, usize, usize) {
    let started = Instant::now();
    let mut pool = SlotPool::default();
    for i in 0..tms {
        pool.add_taskmanager(&format!("tm-{i}"), &format!("127.0.0.1:{}", 20_000 + i), 4);
    }
    let spec = JobSpec {
        name: "sequence".into(),
        args: vec![],
        config: Default::default(),
        parallelism: p,
    };
    let mut jm = JobMaster::new(JobId(1), spec, graph(p), 1, settings(), 0).expect("job master");
    let slots = pool.allocate(JobId(1), p as usize).expect("enough slots");
    let cmds = jm.assign_slots(slots, 0);
    let elapsed = started.elapsed();
    let mut per_tm: HashMap<&str, usize> = HashMap::new();
    let mut bytes = 0;
    let mut deploys = 0;
    let mut messages = 0;
    for c in &cmds {
        if let Command::Send { tm_id, msg } = c {
            if let JmMessage::Deploy { batch, .. } = msg {
                deploys += batch.tasks.len();
                messages += 1;
                *per_tm.entry(tm_id).or_default() += 1;
                bytes += bincode::serialized_size(msg).unwrap_or(0) as usize;
            }
        }
    }
    (elapsed, deploys, messages, per_tm.len(), bytes)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let tms = args.first().copied().unwrap_or(1_000);
    let p = args.get(1).copied().unwrap_or(2_000) as u32;
    let rounds = args.get(2).copied().unwrap_or(5);
    println!(
        "scheduling: {tms} TaskManagers x 4 slots, source({p}) -hash-> sink({p}): {} subtasks, {} channels",
        2 * p,
        p as u64 * p as u64
    );
    let mut times = Vec::new();
    for r in 0..rounds {
        let (t, deploys, messages, tm_count, bytes) = round(tms, p);
        println!(
            "round {r}: {:.3} s to schedule ({deploys} subtasks in {messages} deploy messages to {tm_count} TaskManagers, {:.1} MB serialized)",
            t.as_secs_f64(),
            bytes as f64 / 1e6
        );
        times.push(t);
    }
    times.sort();
    println!("median: {:.3} s", times[times.len() / 2].as_secs_f64());
}
