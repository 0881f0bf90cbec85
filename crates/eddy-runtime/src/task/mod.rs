//! Tasks: one thread per subtask, running a chain of operators.
//!
//! A task's thread builds its chain (tail first: network writers, then operators, then the
//! source or the input decoder), then loops over its mailbox: channel events go through the
//! input gate, control messages (checkpoint trigger/notify/abort, cancel) are handled between
//! events. Partly filled output buffers are flushed whenever the mailbox runs empty or the
//! buffer timeout passed. A task never shares operator state with another thread.
//!
//! End of a bounded input (FLIP-147): the source's chain finishes and sends end of data at once;
//! the task ends its output (`EndOfPartition`) only after its final checkpoint — the first one
//! after the end — completed. Tasks fed by channels do the same with the first checkpoint their
//! gate aligns after every channel's data ended, so sinks commit only through checkpoints.
//!
//! Stop-with-savepoint (a terminating savepoint): the source tasks get its trigger marked
//! `stop`. With drain they end their input as above (maximal watermark first), which makes the
//! savepoint their final checkpoint. Without drain they stop emitting at its barrier and, once
//! it completed, end their output without end of data; downstream tasks then end the same way
//! once notified of it, their operators unfinished (their state is in the savepoint).

pub mod buffers;
pub mod chain;
pub mod channel;
pub mod input;
pub mod metrics;
pub mod network;
pub mod source_driver;
pub mod writer;

#[cfg(test)]
mod tests;

use crate::data::now_millis;
use crate::error::{JobError, Result};
use crate::graph::{AnyEmit, JobGraph, PartitionKind, SourceDriver, StreamGraph};
use crate::operator::TaskInfo;
use crate::snapshot::OperatorSnapshot;
use crate::source::SourceStatus;
use buffers::GateBuffers;
use chain::ChainSnapshot;
use channel::{ChannelId, ChannelWriter, Credits, InputEndpoint, MailboxItem, TaskControl};
use input::{InputGate, InputHandler};
use metrics::TaskMetrics;
use network::NetworkEnvironment;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where one output channel goes.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OutputChannel {
    pub id: ChannelId,
    /// The consumer TaskManager's data address; `None` when it is this TaskManager.
    pub remote_address: Option<String>,
}

/// One outgoing exchange of a task: the channels to the consumer's subtasks, in subtask order.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OutputEdge {
    pub stream_edge: usize,
    pub kind: PartitionKind,
    pub channels: Vec<OutputChannel>,
}

/// Everything a TaskManager needs to run one subtask (besides the job's graph).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TaskDeployment {
    pub job_id: eddy_core::JobId,
    pub job_name: String,
    pub attempt: u64,
    pub vertex: usize,
    pub subtask: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Input channel ids; the position is the channel's index at the input gate.
    pub inputs: Vec<ChannelId>,
    pub outputs: Vec<OutputEdge>,
    pub exactly_once: bool,
    /// Checkpointing is on: at the end of a bounded input every task waits for a checkpoint
    /// covering all its output before it ends its output, and sinks commit only through
    /// checkpoints (FLIP-147).
    pub checkpointing: bool,
    pub buffer_timeout_ms: u64,
    /// State to restore, by operator uid (from the checkpoint the job restarts from).
    pub restore: HashMap<String, OperatorSnapshot>,
    /// The checkpoint `restore` came from, if any.
    pub restored_checkpoint: Option<u64>,
}

/// A task's lifecycle (Flink's ExecutionState, the part a TaskManager reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExecutionState {
    Deploying,
    Running,
    Finished,
    Canceled,
    Failed,
}

/// How a task reports to its TaskManager (which relays to the JobMaster).
pub trait TaskListener: Send + Sync {
    /// `metrics`: the task's counters at this moment (final ones when it ended).
    fn state_changed(
        &self,
        task: &TaskDeployment,
        state: ExecutionState,
        error: Option<JobError>,
        metrics: &TaskMetrics,
    );
    fn checkpoint_acknowledged(
        &self,
        task: &TaskDeployment,
        checkpoint_id: u64,
        snapshot: ChainSnapshot,
    );
    fn checkpoint_declined(&self, task: &TaskDeployment, checkpoint_id: u64, reason: String);
    /// A source task's input ended (checkpointing on): it emitted its last record and waits for
    /// its final checkpoint, which the coordinator then triggers at once.
    fn end_of_data(&self, task: &TaskDeployment);
}

/// A running task as its TaskManager sees it.
pub struct TaskHandle {
    pub deployment: Arc<TaskDeployment>,
    pub mailbox: SyncSender<MailboxItem>,
    pub cancel: Arc<AtomicBool>,
    pub metrics: Arc<TaskMetrics>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl TaskHandle {
    pub fn send(&self, c: TaskControl) {
        if matches!(c, TaskControl::Cancel) {
            self.cancel.store(true, Ordering::Relaxed);
        }
        // Never blocks the caller (the TaskManager's RPC thread) on a task that does not drain
        // its mailbox: a cancel is already signalled by the flag above, which the task checks
        // also while it waits for credits; a checkpoint trigger, notification or abort that
        // does not fit is dropped — the checkpoint then expires, and a later notification
        // commits everything up to its id.
        if let Err(std::sync::mpsc::TrySendError::Full(_)) =
            self.mailbox.try_send(MailboxItem::Control(c.clone()))
        {
            tracing::debug!(
                "task {}/{}: mailbox full, control message {c:?} dropped",
                self.deployment.vertex,
                self.deployment.subtask
            );
        }
    }
}

/// Starts a subtask: registers its input channels, then builds and runs its chain on a new
/// thread.
pub fn spawn_task(
    deployment: TaskDeployment,
    graph: Arc<StreamGraph>,
    job_graph: Arc<JobGraph>,
    network: Arc<NetworkEnvironment>,
    listener: Arc<dyn TaskListener>,
    run_token: String,
    state_backend: Arc<dyn crate::state::StateBackend>,
) -> Result<TaskHandle> {
    let deployment = Arc::new(deployment);
    // The task's network buffers, or a refusal (task/buffers.rs); back to the pool when it ends.
    let reserved = network.buffers().reserve(&deployment)?;
    let c = network.buffers().config();
    let gate = GateBuffers::new(
        deployment.inputs.len(),
        c.buffers_per_channel,
        c.floating_per_gate,
    );
    // Every event holds one of the gate's buffers until consumed: the mailbox never fills.
    let capacity = deployment.inputs.len() * c.buffers_per_channel as usize
        + c.floating_per_gate as usize
        + 64;
    let (tx, rx) = sync_channel(capacity);
    network.register_inputs(
        deployment
            .inputs
            .iter()
            .enumerate()
            .map(|(index, &id)| {
                (
                    id,
                    InputEndpoint {
                        mailbox: tx.clone(),
                        index: index as u32,
                        local_credits: Credits::new(c.buffers_per_channel),
                        gate: gate.clone(),
                    },
                )
            })
            .collect(),
    );
    let cancel = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(TaskMetrics::default());
    let (d, c, m) = (deployment.clone(), cancel.clone(), metrics.clone());
    let name = format!("task-{}-{}", deployment.vertex, deployment.subtask);
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(
                &d,
                &graph,
                &job_graph,
                &network,
                &*listener,
                rx,
                &c,
                &m,
                (&run_token, &state_backend),
            )
        }));
        network.unregister_inputs(&d.inputs);
        let outputs: Vec<ChannelId> = d
            .outputs
            .iter()
            .flat_map(|o| o.channels.iter().map(|c| c.id))
            .collect();
        network.release_outputs(&outputs);
        drop(reserved);
        match result {
            Ok(Ok(state)) => listener.state_changed(&d, state, None, &m),
            Ok(Err(e)) if c.load(Ordering::Relaxed) => {
                tracing::debug!("task {} ended while canceling: {e}", d.vertex);
                listener.state_changed(&d, ExecutionState::Canceled, None, &m)
            }
            Ok(Err(e)) => listener.state_changed(&d, ExecutionState::Failed, Some(e), &m),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                listener.state_changed(
                    &d,
                    ExecutionState::Failed,
                    Some(JobError::new(format!("task panicked: {msg}"))),
                    &m,
                )
            }
        }
    })?;
    Ok(TaskHandle {
        deployment,
        mailbox: tx,
        cancel,
        metrics,
        thread: Some(thread),
    })
}

enum Head {
    Source(Box<dyn SourceDriver>),
    Input(Box<dyn InputHandler>),
}

/// Builds the chain of `d.vertex`, tail first.
fn build_chain(
    d: &TaskDeployment,
    graph: &StreamGraph,
    job_graph: &JobGraph,
    network: &NetworkEnvironment,
    cancel: &Arc<AtomicBool>,
    metrics: &Arc<TaskMetrics>,
    (run_token, state_backend): (&str, &Arc<dyn crate::state::StateBackend>),
) -> Result<Head> {
    let vertex = job_graph
        .vertices
        .get(d.vertex)
        .ok_or_else(|| JobError::new(format!("unknown vertex {}", d.vertex)))?;
    let info_for = |node: usize| TaskInfo {
        job_name: d.job_name.clone(),
        job_id: d.job_id.to_string(),
        operator_uid: graph.nodes[node].uid.clone(),
        operator_name: graph.nodes[node].name.clone(),
        subtask_index: d.subtask,
        parallelism: d.parallelism,
        max_parallelism: d.max_parallelism,
        attempt: d.attempt,
        run_token: run_token.to_string(),
        checkpointing: d.checkpointing,
        state_backend: state_backend.clone(),
    };
    let tail = *vertex.nodes.last().ok_or("empty vertex")?;
    // Remote channels first, all of them to one peer TaskManager with one OPENS frame; then the
    // local ones (which wait for their consumers to register).
    let mut remote: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (e, o) in d.outputs.iter().enumerate() {
        for (k, ch) in o.channels.iter().enumerate() {
            if let Some(addr) = &ch.remote_address {
                remote.entry(addr.as_str()).or_default().push((e, k));
            }
        }
    }
    let mut slots: Vec<Vec<Option<ChannelWriter>>> = d
        .outputs
        .iter()
        .map(|o| o.channels.iter().map(|_| None).collect())
        .collect();
    // Every peer at once; then one OPENS frame per peer.
    network.connect_peers(remote.keys().copied())?;
    for (addr, positions) in remote {
        let ids: Vec<ChannelId> = positions
            .iter()
            .map(|&(e, k)| d.outputs[e].channels[k].id)
            .collect();
        let writers = network.remote_writers(addr, &ids, cancel)?;
        for ((e, k), w) in positions.into_iter().zip(writers) {
            slots[e][k] = Some(w);
        }
    }
    let mut outs: Vec<AnyEmit> = Vec::new();
    for (o, slots) in d.outputs.iter().zip(slots) {
        let mut writers: Vec<ChannelWriter> = Vec::with_capacity(slots.len());
        for (ch, w) in o.channels.iter().zip(slots) {
            writers.push(
                match w {
                    Some(w) => w,
                    None => network.local_writer(ch.id, cancel.clone(), Duration::from_secs(60))?,
                }
                .measured(metrics.clone()),
            );
        }
        let edge = graph.edges.get(o.stream_edge).ok_or("unknown edge")?;
        outs.push((edge.output)(
            writers,
            d.max_parallelism,
            o.kind,
            metrics.clone(),
        ));
    }
    let mut emit = match outs.len() {
        0 => (graph.nodes[tail].discard)(),
        1 => outs.pop().ok_or("no output")?,
        _ => (graph.nodes[tail].fan_out)(outs)?,
    };
    for &node in vertex.nodes.iter().rev() {
        let info = info_for(node);
        let restored = d.restore.get(&info.operator_uid);
        match &graph.nodes[node].kind {
            crate::graph::NodeKind::Operator(make) => emit = make(emit, &info, restored)?,
            crate::graph::NodeKind::Source(make) => {
                return Ok(Head::Source(make(emit, &info, restored)?))
            }
        }
    }
    let head = vertex.nodes[0];
    let mut handler = (graph.nodes[head].input)(emit)?;
    handler.set_metrics(metrics.clone());
    Ok(Head::Input(handler))
}

#[allow(clippy::too_many_arguments)]
fn run(
    d: &TaskDeployment,
    graph: &StreamGraph,
    job_graph: &JobGraph,
    network: &NetworkEnvironment,
    listener: &dyn TaskListener,
    rx: Receiver<MailboxItem>,
    cancel: &Arc<AtomicBool>,
    metrics: &Arc<TaskMetrics>,
    run_ctx: (&str, &Arc<dyn crate::state::StateBackend>),
) -> Result<ExecutionState> {
    let head = build_chain(d, graph, job_graph, network, cancel, metrics, run_ctx)?;
    // RUNNING only now: the chain is built, operators opened and their state restored (Flink's
    // INITIALIZING phase is the time before this).
    metrics.mark_running();
    listener.state_changed(d, ExecutionState::Running, None, metrics);
    yield_to_control_threads();
    let buffer_timeout = Duration::from_millis(d.buffer_timeout_ms.max(1));
    match head {
        Head::Source(mut src) => {
            let r = run_source(d, &mut *src, listener, &rx, cancel, buffer_timeout, metrics);
            metrics.mark_ended();
            src.close();
            r
        }
        Head::Input(mut h) => {
            let r = run_input(d, &mut *h, listener, &rx, cancel, buffer_timeout, metrics);
            metrics.mark_ended();
            h.chain().close();
            r
        }
    }
}

/// How much lower than the process's other threads a running task thread is scheduled (a nice
/// increment: weight 1024 against 110 for +10).
const RUNNING_TASK_NICE_INCREMENT: i32 = 10;

/// Once RUNNING, this task thread yields the CPU to the process's control threads (heartbeats,
/// RPC, network I/O, tasks still deploying): a busy job cannot starve a heartbeat or slow
/// the deployment of the job's other subtasks. Linux's nice value is per thread, so this changes
/// only the calling thread. Unprivileged processes may always lower their priority; a failure is
/// only logged.
fn yield_to_control_threads() {
    // SAFETY: nice(2) takes no pointers; -1 with errno set is its only failure.
    unsafe {
        *libc::__errno_location() = 0;
        if libc::nice(RUNNING_TASK_NICE_INCREMENT) == -1 && *libc::__errno_location() != 0 {
            tracing::debug!(
                "could not lower the task thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Fires due processing-time timers downstream.
fn tick(chain: &mut dyn chain::Control) -> Result<()> {
    let now = now_millis();
    if chain.next_deadline().is_some_and(|t| t <= now) {
        chain.processing_time(now)?;
    }
    Ok(())
}

/// How far a source task is from its end.
#[derive(Default)]
struct SourceEnd {
    /// Its data ended (bounded input, or a drained stop-with-savepoint) and its operators
    /// finished: it emits nothing more and waits for its final checkpoint.
    finished: bool,
    /// The first checkpoint taken after `finished`: its completion ends the output.
    final_barrier: Option<u64>,
    /// Stop-with-savepoint without drain: the terminating savepoint's id. Nothing is emitted
    /// after its barrier; its completion ends the output (without end of data); its abort (or a
    /// later checkpoint, should the abort be lost) lets the source emit again.
    stopping: Option<u64>,
}

fn run_source(
    d: &TaskDeployment,
    src: &mut dyn SourceDriver,
    listener: &dyn TaskListener,
    rx: &Receiver<MailboxItem>,
    cancel: &AtomicBool,
    buffer_timeout: Duration,
    metrics: &TaskMetrics,
) -> Result<ExecutionState> {
    let mut last_flush = Instant::now();
    let mut end = SourceEnd::default();
    loop {
        // Control first: barriers must not wait behind a long run of data.
        loop {
            match rx.try_recv() {
                Ok(MailboxItem::Control(c)) => {
                    if let Some(state) = source_control(d, src, listener, c, &mut end)? {
                        return Ok(state);
                    }
                }
                Ok(MailboxItem::Channel { credit, .. }) => credit.release(),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(ExecutionState::Canceled),
            }
        }
        if cancel.load(Ordering::Relaxed) {
            return Ok(ExecutionState::Canceled);
        }
        if end.finished || end.stopping.is_some() {
            // Waiting for the final checkpoint (or the terminating savepoint) to complete:
            // `source_control` ends the task then.
            let waited = {
                let _idle = metrics.wait(metrics::Wait::Idle);
                rx.recv_timeout(Duration::from_millis(50))
            };
            match waited {
                Ok(MailboxItem::Control(c)) => {
                    if let Some(state) = source_control(d, src, listener, c, &mut end)? {
                        return Ok(state);
                    }
                }
                Ok(MailboxItem::Channel { credit, .. }) => credit.release(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(ExecutionState::Canceled),
            }
            continue;
        }
        tick(src.chain())?;
        match src.poll(writer::BATCH_RECORDS)? {
            SourceStatus::More => {
                if last_flush.elapsed() >= buffer_timeout {
                    src.chain().flush()?;
                    last_flush = Instant::now();
                }
            }
            SourceStatus::IdleUntil(t) => {
                src.chain().flush()?;
                last_flush = Instant::now();
                let mut wait = (t - now_millis()).clamp(0, 50) as u64;
                if let Some(dl) = src.chain().next_deadline() {
                    wait = wait.min((dl - now_millis()).max(0) as u64);
                }
                let waited = {
                    let _idle = metrics.wait(metrics::Wait::Idle);
                    rx.recv_timeout(Duration::from_millis(wait))
                };
                match waited {
                    Ok(MailboxItem::Control(c)) => {
                        if let Some(state) = source_control(d, src, listener, c, &mut end)? {
                            return Ok(state);
                        }
                    }
                    Ok(MailboxItem::Channel { credit, .. }) => credit.release(),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(ExecutionState::Canceled),
                }
            }
            SourceStatus::Finished => {
                // The final watermark went down the chain in `poll`; now the operators finish
                // and end of data goes out, all ahead of the final checkpoint's barrier.
                src.end_input()?;
                src.chain().flush()?;
                if !d.checkpointing {
                    src.chain().end_of_partition(false)?;
                    src.chain().flush()?;
                    return Ok(ExecutionState::Finished);
                }
                end.finished = true;
                listener.end_of_data(d);
                eddy_core::faultpoint::hit("task.end-of-data.after-report");
            }
        }
    }
}

/// Handles a control message in a source task; `Some(state)` ends the task. A finished source
/// (checkpointing on: its data already ended, operators finished) still takes checkpoints; the
/// first one after the end is its final checkpoint. Once that completes, everything it and its
/// downstream emitted is committed, and it ends its output (`EndOfPartition`).
///
/// Stop-with-savepoint (a trigger with `stop`): with drain, the source ends event time (the
/// maximal watermark fires every window and timer) and its input (operators finish, end of
/// data goes out) before the barrier, which makes the savepoint its final checkpoint; without
/// drain it only stops emitting. Either way nothing follows the savepoint's barrier, and the
/// task ends once the savepoint completed (its sinks committed on that notification).
fn source_control(
    d: &TaskDeployment,
    src: &mut dyn SourceDriver,
    listener: &dyn TaskListener,
    c: TaskControl,
    end: &mut SourceEnd,
) -> Result<Option<ExecutionState>> {
    match c {
        TaskControl::TriggerCheckpoint {
            checkpoint_id,
            stop,
        } => {
            if end.stopping.is_some_and(|s| checkpoint_id > s) {
                // A checkpoint after the terminating savepoint: that savepoint failed.
                end.stopping = None;
            }
            match stop {
                Some(_) if end.finished => {}
                Some(channel::StopMode::Drain) => {
                    src.chain().watermark(crate::data::MAX_WATERMARK)?;
                    src.end_input()?;
                    end.finished = true;
                }
                Some(channel::StopMode::NoDrain) => end.stopping = Some(checkpoint_id),
                None => {}
            }
            if end.finished && end.final_barrier.is_none() {
                end.final_barrier = Some(checkpoint_id);
            }
            let mut snaps = Vec::new();
            src.barrier(checkpoint_id, &mut snaps)?;
            src.chain().flush()?;
            listener.checkpoint_acknowledged(d, checkpoint_id, snaps);
        }
        TaskControl::NotifyCheckpointComplete { checkpoint_id } => {
            src.notify_checkpoint_complete(checkpoint_id)?;
            if end.finished && end.final_barrier.is_some_and(|f| checkpoint_id >= f) {
                src.chain().end_of_partition(false)?;
                src.chain().flush()?;
                return Ok(Some(ExecutionState::Finished));
            }
            if end.stopping.is_some_and(|s| checkpoint_id >= s) {
                // The savepoint completed and this chain committed it; the task has not ended.
                eddy_core::faultpoint::hit("task.stop-savepoint.before-finish");
                src.chain().end_of_partition(true)?;
                src.chain().flush()?;
                return Ok(Some(ExecutionState::Finished));
            }
        }
        TaskControl::AbortCheckpoint { checkpoint_id } => {
            if end.stopping == Some(checkpoint_id) {
                // The terminating savepoint failed: the job goes on, so does this source.
                end.stopping = None;
            }
        }
        TaskControl::Cancel => return Ok(Some(ExecutionState::Canceled)),
    }
    Ok(None)
}

/// Runs a task fed by input channels. It ends when every channel ended and — with
/// checkpointing on — the task's final checkpoint (the first one it aligned after its data
/// ended) completed, so everything its sinks wrote is committed by a checkpoint, never by the end
/// itself.
fn run_input(
    d: &TaskDeployment,
    head: &mut dyn InputHandler,
    listener: &dyn TaskListener,
    rx: &Receiver<MailboxItem>,
    cancel: &AtomicBool,
    buffer_timeout: Duration,
    metrics: &TaskMetrics,
) -> Result<ExecutionState> {
    let mut gate = InputGate::new(d.inputs.len(), d.exactly_once);
    let mut last_flush = Instant::now();
    // The newest checkpoint this task was notified of, and the newest it took.
    let mut notified: Option<u64> = None;
    let mut taken: Option<u64> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(ExecutionState::Canceled);
        }
        let item = match rx.try_recv() {
            Ok(item) => {
                if last_flush.elapsed() >= buffer_timeout {
                    head.chain().flush()?;
                    last_flush = Instant::now();
                }
                item
            }
            Err(TryRecvError::Empty) => {
                head.chain().flush()?;
                last_flush = Instant::now();
                let wait = head
                    .chain()
                    .next_deadline()
                    .map(|t| (t - now_millis()).clamp(0, 50) as u64)
                    .unwrap_or(50);
                let waited = {
                    let _idle = metrics.wait(metrics::Wait::Idle);
                    rx.recv_timeout(Duration::from_millis(wait))
                };
                match waited {
                    Ok(item) => item,
                    Err(RecvTimeoutError::Timeout) => {
                        tick(head.chain())?;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Ok(ExecutionState::Canceled),
                }
            }
            Err(TryRecvError::Disconnected) => return Ok(ExecutionState::Canceled),
        };
        match item {
            MailboxItem::Channel {
                index,
                event,
                credit,
            } => gate.on_event(index as usize, event, credit, head)?,
            MailboxItem::Control(TaskControl::NotifyCheckpointComplete { checkpoint_id }) => {
                notified = notified.max(Some(checkpoint_id));
                head.chain().notify_checkpoint_complete(checkpoint_id)?
            }
            MailboxItem::Control(TaskControl::AbortCheckpoint { checkpoint_id }) => {
                gate.abort_checkpoint(checkpoint_id, head)?
            }
            MailboxItem::Control(TaskControl::Cancel) => return Ok(ExecutionState::Canceled),
            MailboxItem::Control(TaskControl::TriggerCheckpoint { .. }) => {}
        }
        for (id, snaps) in gate.take_completed() {
            head.chain().flush()?;
            taken = taken.max(Some(id));
            listener.checkpoint_acknowledged(d, id, snaps);
        }
        let final_done = if gate.is_stopped() {
            // Its producers stopped with a savepoint (without drain) once it completed: this
            // task ends once it was notified too (its sinks committed the savepoint's output).
            !d.checkpointing || taken.is_none_or(|t| notified.is_some_and(|n| n >= t))
        } else {
            !d.checkpointing
                || gate
                    .final_checkpoint()
                    .is_some_and(|f| notified.is_some_and(|n| n >= f))
        };
        if gate.is_finished() && final_done {
            head.chain().end_of_partition(gate.is_stopped())?;
            head.chain().flush()?;
            return Ok(ExecutionState::Finished);
        }
        tick(head.chain())?;
    }
}
