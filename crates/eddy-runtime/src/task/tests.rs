//! Table-driven tests of the data plane's pure parts: the input gate (watermarks, end of data,
//! end of input, barrier alignment, aborted and late barriers), credits and local channels.
//! Each row is a sequence of events on numbered channels and what the chain must have seen,
//! which channels are held back, and how many credits each channel still waits for.

use super::chain::{ChainSnapshot, Control};
use super::channel::{ChannelEvent, ChannelWriter, CreditReturn, Credits, InputEndpoint, Payload};
use super::input::{InputGate, InputHandler};
use super::metrics::TaskMetrics;
use crate::data::Timestamp;
use crate::error::Result;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A chain head that logs what reaches it, one line per call.
#[derive(Default)]
struct Recorder {
    log: Vec<String>,
}

impl InputHandler for Recorder {
    fn batch(&mut self, payload: Payload) -> Result<()> {
        match payload {
            Payload::Local(b) => match b.downcast::<Vec<u64>>() {
                Ok(v) => self.log.push(format!("rec {v:?}")),
                Err(_) => self.log.push("rec ?".into()),
            },
            Payload::Bytes(_) => self.log.push("bytes".into()),
        }
        Ok(())
    }
    fn chain(&mut self) -> &mut dyn Control {
        self
    }
    fn set_metrics(&mut self, _metrics: Arc<TaskMetrics>) {}
}

impl Control for Recorder {
    fn watermark(&mut self, wm: Timestamp) -> Result<()> {
        self.log.push(format!("wm {wm}"));
        Ok(())
    }
    fn processing_time(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn barrier(&mut self, checkpoint_id: u64, _snapshots: &mut ChainSnapshot) -> Result<()> {
        self.log.push(format!("snapshot {checkpoint_id}"));
        Ok(())
    }
    fn notify_checkpoint_complete(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }
    fn end_of_input(&mut self) -> Result<()> {
        self.log.push("finish".into());
        Ok(())
    }
    fn end_of_partition(&mut self, _stopped: bool) -> Result<()> {
        self.log.push("end".into());
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) {}
}

/// One step of a row.
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// A batch holding one record on channel `.0`.
    Rec(usize, u64),
    Wm(usize, i64),
    Bar(usize, u64),
    /// End of data (no more records; barriers may follow).
    Data(usize),
    /// End of partition (the producer finished).
    End(usize),
    /// The checkpoint was aborted (a task control message).
    Abort(u64),
}

struct Row {
    name: &'static str,
    channels: usize,
    exactly_once: bool,
    events: &'static [Ev],
    /// What the chain saw, in order.
    log: &'static [&'static str],
    /// Channels held back by alignment at the end.
    blocked: &'static [usize],
    /// Per channel: events whose credit was not returned yet (held events).
    unreturned: &'static [u32],
    /// Checkpoints acknowledged by the gate, in order.
    acked: &'static [u64],
    /// All input ended at the end of the row.
    finished: bool,
    /// The first checkpoint aligned after every channel's data ended.
    final_checkpoint: Option<u64>,
}

use Ev::*;

const ROWS: &[Row] = &[
    Row {
        name: "watermark is the minimum over channels and only advances",
        channels: 2,
        exactly_once: true,
        events: &[Wm(0, 5), Wm(1, 3), Wm(1, 7), Wm(0, 4), Wm(0, 9)],
        log: &["wm 3", "wm 5", "wm 7"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "an ended channel no longer holds the watermark back",
        channels: 2,
        exactly_once: true,
        events: &[Wm(0, 5), Wm(1, 3), End(1)],
        log: &["wm 3", "wm 5"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "exactly-once alignment holds a channel back until every channel delivered the barrier",
        channels: 2,
        exactly_once: true,
        events: &[Rec(0, 1), Bar(0, 1), Rec(0, 2), Rec(1, 3), Bar(1, 1)],
        log: &["rec [1]", "rec [3]", "snapshot 1", "rec [2]"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[1],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "held events keep their credits until the checkpoint is taken",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 1), Rec(0, 2), Wm(0, 4), Rec(1, 3)],
        log: &["rec [3]"],
        blocked: &[0],
        unreturned: &[2, 0],
        acked: &[],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "at-least-once alignment holds nothing back",
        channels: 2,
        exactly_once: false,
        events: &[Bar(0, 1), Rec(0, 2), Rec(1, 3), Bar(1, 1)],
        log: &["rec [2]", "rec [3]", "snapshot 1"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[1],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "a channel that ends during alignment no longer has to deliver the barrier",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 1), Rec(0, 2), End(1)],
        log: &["snapshot 1", "rec [2]"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[1],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "at-least-once: a channel that delivered the barrier and ended does not count for a live one",
        channels: 3,
        exactly_once: false,
        events: &[Bar(0, 1), End(0), Rec(1, 5), Bar(1, 1), Rec(2, 6), Bar(2, 1)],
        log: &["rec [5]", "rec [6]", "snapshot 1"],
        blocked: &[],
        unreturned: &[0, 0, 0],
        acked: &[1],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "a newer barrier overtakes: the older alignment is abandoned and its channel released",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 1), Rec(0, 2), Bar(1, 2), Bar(0, 2)],
        log: &["rec [2]", "snapshot 2"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[2],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "diamond: a late barrier of an aborted checkpoint is ignored (no alignment that can never complete)",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 1), Abort(1), Rec(0, 2), Bar(1, 1), Rec(1, 3), Rec(0, 4)],
        log: &["rec [2]", "rec [3]", "rec [4]"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "an abort that arrives before any barrier of it: its barriers are ignored",
        channels: 2,
        exactly_once: true,
        events: &[Abort(3), Bar(0, 3), Rec(0, 1), Bar(1, 3), Rec(1, 2)],
        log: &["rec [1]", "rec [2]"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "a late barrier of an overtaken checkpoint is ignored after the newer one completed",
        channels: 3,
        exactly_once: true,
        events: &[
            Bar(0, 1),
            Bar(1, 2),
            Bar(0, 2),
            Bar(2, 2),
            Bar(2, 1),
            Rec(2, 7),
        ],
        log: &["snapshot 2", "rec [7]"],
        blocked: &[],
        unreturned: &[0, 0, 0],
        acked: &[2],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "aborting an older checkpoint keeps the current alignment",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 2), Abort(1), Rec(0, 5), Bar(1, 2)],
        log: &["snapshot 2", "rec [5]"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[2],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "a completed checkpoint's barrier is not aligned twice",
        channels: 1,
        exactly_once: true,
        events: &[Bar(0, 4), Bar(0, 4), Rec(0, 1)],
        log: &["snapshot 4", "rec [1]"],
        blocked: &[],
        unreturned: &[0],
        acked: &[4],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "a held barrier of the next checkpoint blocks its channel again on replay",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 1), Rec(0, 2), Bar(0, 2), Rec(0, 3), Bar(1, 1)],
        log: &["snapshot 1", "rec [2]"],
        blocked: &[0],
        unreturned: &[1, 0],
        acked: &[1],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "end of data on every channel finishes the operators once, before the final checkpoint",
        channels: 2,
        exactly_once: true,
        events: &[
            Rec(0, 1),
            Data(0),
            Rec(1, 2),
            Data(1),
            Bar(0, 5),
            Bar(1, 5),
            Bar(0, 6),
            Bar(1, 6),
            End(0),
            End(1),
        ],
        log: &["rec [1]", "rec [2]", "finish", "snapshot 5", "snapshot 6"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[5, 6],
        finished: true,
        final_checkpoint: Some(5),
    },
    Row {
        name: "a checkpoint aligned before the last end of data is not the final one",
        channels: 2,
        exactly_once: true,
        events: &[Data(0), Bar(0, 4), Bar(1, 4), Rec(1, 3), Data(1), Bar(0, 5), Bar(1, 5)],
        log: &["snapshot 4", "rec [3]", "finish", "snapshot 5"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[4, 5],
        finished: false,
        final_checkpoint: Some(5),
    },
    Row {
        name: "end of data held behind a barrier waits for the alignment",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 2), Data(0), Data(1)],
        log: &[],
        blocked: &[0],
        unreturned: &[1, 0],
        acked: &[],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "end of data released by the alignment comes after that snapshot, which is not final",
        channels: 2,
        exactly_once: true,
        events: &[Bar(0, 2), Data(0), Data(1), Bar(1, 2)],
        log: &["snapshot 2", "finish"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[2],
        finished: false,
        final_checkpoint: None,
    },
    Row {
        name: "the last end of data finishes the operators; the gate never ends the partition itself",
        channels: 2,
        exactly_once: true,
        events: &[Rec(0, 1), Data(0), End(0), Data(1), End(1)],
        log: &["rec [1]", "finish"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[],
        finished: true,
        final_checkpoint: None,
    },
    Row {
        name: "ends without end of data (producers stopped with a savepoint) never finish the operators",
        channels: 2,
        exactly_once: true,
        events: &[Rec(0, 1), Bar(0, 4), Bar(1, 4), End(0), End(1)],
        log: &["rec [1]", "snapshot 4"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[4],
        finished: true,
        final_checkpoint: None,
    },
    Row {
        name: "an end that completes an alignment finishes the operators before the snapshot",
        channels: 2,
        exactly_once: true,
        events: &[Data(0), Bar(0, 3), Data(1), End(1)],
        log: &["finish", "snapshot 3"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[3],
        finished: false,
        final_checkpoint: Some(3),
    },
    Row {
        name: "at-least-once: the final checkpoint follows the last end of data",
        channels: 2,
        exactly_once: false,
        events: &[Bar(0, 7), Rec(0, 1), Data(0), Data(1), Bar(1, 7), End(0), End(1)],
        log: &["rec [1]", "finish", "snapshot 7"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[7],
        finished: true,
        final_checkpoint: Some(7),
    },
];

/// Runs one row; returns a description of every mismatch.
fn run_row(row: &Row) -> Vec<String> {
    let credits: Vec<Arc<Credits>> = (0..row.channels).map(|_| Credits::new(0)).collect();
    let mut sent = vec![0u32; row.channels];
    let mut gate = InputGate::new(row.channels, row.exactly_once);
    let gate_buffers = crate::task::buffers::GateBuffers::new(row.channels, 1 << 20, 0);
    let mut head = Recorder::default();
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for &ev in row.events {
        let (ch, event) = match ev {
            Rec(c, r) => (c, ChannelEvent::Batch(Payload::Local(Box::new(vec![r])))),
            Wm(c, w) => (c, ChannelEvent::Watermark(w)),
            Bar(c, id) => (c, ChannelEvent::Barrier(id)),
            Data(c) => (c, ChannelEvent::EndOfData),
            End(c) => (c, ChannelEvent::EndOfPartition),
            Abort(id) => {
                if let Err(e) = gate.abort_checkpoint(id, &mut head) {
                    errors.push(format!("abort {id}: {e}"));
                }
                acked.extend(gate.take_completed().into_iter().map(|(id, _)| id));
                continue;
            }
        };
        // The end of a partition is its channel's last event: its buffer goes back to the gate,
        // not to the producer (which is gone).
        sent[ch] += u32::from(!matches!(ev, End(_)));
        // No floating buffers: every consumed event is one credit back to its producer.
        let credit = CreditReturn::local(gate_buffers.clone(), ch as u32, credits[ch].clone());
        if let Err(e) = gate.on_event(ch, event, credit, &mut head) {
            errors.push(format!("{ev:?}: {e}"));
        }
        acked.extend(gate.take_completed().into_iter().map(|(id, _)| id));
    }
    if head.log != row.log {
        errors.push(format!("chain saw {:?}, expected {:?}", head.log, row.log));
    }
    let blocked: Vec<usize> = (0..row.channels).filter(|&i| gate.is_blocked(i)).collect();
    if blocked != row.blocked {
        errors.push(format!("blocked {blocked:?}, expected {:?}", row.blocked));
    }
    let unreturned: Vec<u32> = (0..row.channels)
        .map(|i| sent[i] - credits[i].available())
        .collect();
    if unreturned != row.unreturned {
        errors.push(format!(
            "unreturned credits {unreturned:?}, expected {:?}",
            row.unreturned
        ));
    }
    if acked != row.acked {
        errors.push(format!("acked {acked:?}, expected {:?}", row.acked));
    }
    if gate.is_finished() != row.finished {
        errors.push(format!(
            "finished {}, expected {}",
            gate.is_finished(),
            row.finished
        ));
    }
    if gate.final_checkpoint() != row.final_checkpoint {
        errors.push(format!(
            "final checkpoint {:?}, expected {:?}",
            gate.final_checkpoint(),
            row.final_checkpoint
        ));
    }
    errors
}

#[test]
fn input_gate_table() {
    let mut failed = Vec::new();
    for row in ROWS {
        let errors = run_row(row);
        if !errors.is_empty() {
            failed.push(format!("{}:\n    {}", row.name, errors.join("\n    ")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

// ------------------------------------------------------------------ credits and local channels

/// One step on a credit counter.
#[derive(Clone, Copy, Debug)]
enum CreditOp {
    /// Take a credit; `true` = expected to succeed (with the cancel flag set, an empty counter
    /// fails instead of waiting).
    Acquire(bool),
    Grant(u32),
}

#[test]
fn credits_table() {
    use CreditOp::*;
    let rows: &[(&str, u32, &[CreditOp], u32)] = &[
        (
            "initial credits can be taken",
            2,
            &[Acquire(true), Acquire(true)],
            0,
        ),
        (
            "no credit: a canceled producer gives up",
            0,
            &[Acquire(false)],
            0,
        ),
        ("granted credits add up", 0, &[Grant(3), Acquire(true)], 2),
        (
            "credit taken after a grant",
            1,
            &[Acquire(true), Acquire(false), Grant(1), Acquire(true)],
            0,
        ),
    ];
    for (name, initial, ops, left) in rows {
        let credits = Credits::new(*initial);
        let cancel = AtomicBool::new(true);
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Acquire(ok) => assert_eq!(
                    credits.acquire(&cancel).is_ok(),
                    ok,
                    "{name}: step {i} {op:?}"
                ),
                Grant(n) => credits.grant(n),
            }
        }
        assert_eq!(credits.available(), *left, "{name}: credits left");
    }
}

#[test]
fn a_local_channel_sends_one_event_per_credit_and_stalls_without_credit() {
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let endpoint = InputEndpoint {
        mailbox: tx,
        index: 3,
        local_credits: Credits::new(2),
        gate: crate::task::buffers::GateBuffers::new(4, 2, 0),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let writer = ChannelWriter::local(endpoint.clone(), cancel.clone(), 32 << 10);
    writer.send(ChannelEvent::Watermark(1)).unwrap();
    writer.send(ChannelEvent::Barrier(7)).unwrap();
    assert_eq!(endpoint.local_credits.available(), 0);
    // Out of credits: the producer waits; canceling it ends the wait with an error.
    cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    let err = writer.send(ChannelEvent::EndOfPartition).unwrap_err();
    assert!(err.message.contains("canceled"), "{err}");
    let mut seen = Vec::new();
    while let Ok(super::channel::MailboxItem::Channel {
        index,
        event,
        credit,
    }) = rx.try_recv()
    {
        assert_eq!(index, 3);
        seen.push(match event {
            ChannelEvent::Watermark(w) => format!("wm {w}"),
            ChannelEvent::Barrier(b) => format!("barrier {b}"),
            _ => "other".into(),
        });
        credit.release();
    }
    assert_eq!(seen, ["wm 1", "barrier 7"]);
    assert_eq!(endpoint.local_credits.available(), 2, "credits come back");
}

#[test]
fn a_producer_waiting_for_credit_counts_back_pressure_and_one_with_credit_does_not() {
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    let endpoint = InputEndpoint {
        mailbox: tx,
        index: 0,
        local_credits: Credits::new(1),
        gate: crate::task::buffers::GateBuffers::new(1, 1, 0),
    };
    let metrics = Arc::new(TaskMetrics::default());
    metrics.mark_running();
    let writer = ChannelWriter::local(endpoint.clone(), Arc::new(AtomicBool::new(false)), 32 << 10)
        .measured(metrics.clone());
    // A credit is there: no wait.
    writer.send(ChannelEvent::Watermark(1)).unwrap();
    assert_eq!(metrics.times().unwrap().backpressured_ms, 0);
    // None left: the consumer gives one back after 300 ms; the producer waited that long.
    let credits = endpoint.local_credits.clone();
    let consumer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        credits.grant(1);
    });
    writer.send(ChannelEvent::Watermark(2)).unwrap();
    consumer.join().unwrap();
    let t = metrics.times().unwrap();
    assert!(t.backpressured_ms >= 250, "{t:?}");
    assert_eq!(rx.try_iter().count(), 2);
}

// ------------------------------------------------------- tasks at the end of a bounded input

mod bounded_end {
    //! Two real tasks (threads, channels, and for the remote case a TCP connection through the
    //! `NetworkEnvironment`): a bounded source, and a task whose operator emits a record in
    //! `finish` into a logging sink. The test plays the JobMaster (trigger, notify).

    use crate::graph::JobGraph;
    use crate::operator::{Operator, Output};
    use crate::snapshot::SnapshotWriter;
    use crate::source::{Source, SourceStatus};
    use crate::task::chain::ChainSnapshot;
    use crate::task::channel::TaskControl;
    use crate::task::metrics::TaskMetrics;
    use crate::task::network::NetworkEnvironment;
    use crate::task::{
        spawn_task, ExecutionState, OutputChannel, OutputEdge, TaskDeployment, TaskHandle,
        TaskListener,
    };
    use crate::{JobError, Result, Sink, StreamEnv};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    type Log = Arc<Mutex<Vec<String>>>;

    fn push(log: &Log, line: String) {
        if let Ok(mut l) = log.lock() {
            l.push(line);
        }
    }

    fn lines(log: &Log) -> Vec<String> {
        log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    struct Records(Vec<u64>);

    impl Source for Records {
        type Out = u64;
        fn poll_next(&mut self, out: &mut Output<u64>, _max: usize) -> Result<SourceStatus> {
            out.records.append(&mut self.0);
            Ok(SourceStatus::Finished)
        }
    }

    /// Passes records on and emits 1000 in `finish`.
    struct EmitAtFinish;

    impl Operator for EmitAtFinish {
        type In = u64;
        type Out = u64;
        fn process_batch(&mut self, input: &mut Vec<u64>, out: &mut Output<u64>) -> Result<()> {
            out.records.append(input);
            Ok(())
        }
        fn finish(&mut self, out: &mut Output<u64>) -> Result<()> {
            out.push(1000);
            Ok(())
        }
    }

    struct LogSink(Log);

    impl Sink for LogSink {
        type In = u64;
        fn write_batch(&mut self, batch: &mut Vec<u64>) -> Result<()> {
            push(&self.0, format!("write {batch:?}"));
            batch.clear();
            Ok(())
        }
        fn snapshot_state(&mut self, id: u64, _w: &mut SnapshotWriter) -> Result<()> {
            push(&self.0, format!("stage {id}"));
            Ok(())
        }
        fn notify_checkpoint_complete(&mut self, id: u64) -> Result<()> {
            push(&self.0, format!("commit {id}"));
            Ok(())
        }
        fn finish(&mut self) -> Result<()> {
            push(&self.0, "finish".into());
            Ok(())
        }
    }

    /// What the tasks report: `v<vertex> <state>` and `v<vertex> ack <id>`.
    struct Reports(Log);

    impl TaskListener for Reports {
        fn state_changed(
            &self,
            task: &TaskDeployment,
            state: ExecutionState,
            error: Option<JobError>,
            _metrics: &TaskMetrics,
        ) {
            let err = error.map(|e| format!(" {e}")).unwrap_or_default();
            push(&self.0, format!("v{} {state:?}{err}", task.vertex));
        }
        fn checkpoint_acknowledged(&self, task: &TaskDeployment, id: u64, _s: ChainSnapshot) {
            push(&self.0, format!("v{} ack {id}", task.vertex));
        }
        fn checkpoint_declined(&self, task: &TaskDeployment, id: u64, reason: String) {
            push(&self.0, format!("v{} decline {id} {reason}", task.vertex));
        }
        fn end_of_data(&self, task: &TaskDeployment) {
            push(&self.0, format!("v{} end of data", task.vertex));
        }
    }

    /// Cancels the tasks when the test ends, also on failure.
    struct Tasks(Vec<TaskHandle>);

    impl Drop for Tasks {
        fn drop(&mut self) {
            for t in &mut self.0 {
                t.send(TaskControl::Cancel);
                if let Some(th) = t.thread.take() {
                    let _ = th.join();
                }
            }
        }
    }

    fn wait_for(what: &str, log: &Log, other: &Log, ok: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(&lines(log)) {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}: {:?} / {:?}",
                lines(log),
                lines(other)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn run(remote: bool) {
        let sink_log: Log = Arc::default();
        let reports: Log = Arc::default();
        let env = StreamEnv::new(eddy_core::config::Config::default());
        let s = sink_log.clone();
        env.add_source("records", || Records((1..=5).collect()))
            .uid("records")
            .rebalance()
            .transform("emit-at-finish", || EmitAtFinish)
            .uid("emit")
            .sink_to("log", move || LogSink(s.clone()))
            .uid("log");
        let graph = Arc::new(env.into_graph());
        let job_graph = Arc::new(JobGraph::from_stream_graph(&graph, 1, 128).expect("job graph"));
        assert_eq!(job_graph.vertices.len(), 2, "{job_graph:?}");
        let edge = &job_graph.edges[0];
        let network = NetworkEnvironment::start(
            "127.0.0.1",
            0,
            crate::task::network::frame_limits(16 << 20, std::time::Duration::from_secs(10)),
        )
        .expect("data port");
        let deployment = |vertex: usize| TaskDeployment {
            job_id: eddy_core::JobId(1),
            job_name: "bounded-end".into(),
            attempt: 0,
            vertex,
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            inputs: Vec::new(),
            outputs: Vec::new(),
            exactly_once: true,
            checkpointing: true,
            buffer_timeout_ms: 10,
            restore: HashMap::new(),
            restored_checkpoint: None,
        };
        let mut consumer = deployment(edge.target);
        consumer.inputs = vec![7];
        let mut producer = deployment(edge.source);
        producer.outputs = vec![OutputEdge {
            stream_edge: edge.stream_edge,
            kind: edge.kind,
            channels: vec![OutputChannel {
                id: 7,
                remote_address: remote.then(|| network.address().to_string()),
            }],
        }];
        let listener: Arc<dyn TaskListener> = Arc::new(Reports(reports.clone()));
        let spawn = |d: TaskDeployment| {
            spawn_task(
                d,
                graph.clone(),
                job_graph.clone(),
                network.clone(),
                listener.clone(),
                "run".into(),
                Arc::new(crate::state::HashMapStateBackend),
            )
            .expect("spawn task")
        };
        let tasks = Tasks(vec![spawn(consumer), spawn(producer)]);
        let (consumer, producer) = (&tasks.0[0], &tasks.0[1]);
        let (cv, pv) = (edge.target, edge.source);

        // End of data: the operator's finish output reaches the sink, the sink finishes, all
        // before any checkpoint; nothing is committed and no task ends.
        wait_for("the sink to finish", &sink_log, &reports, |l| {
            l.iter().any(|x| x == "finish")
        });
        assert_eq!(
            lines(&sink_log),
            ["write [1, 2, 3, 4, 5]", "write [1000]", "finish"]
        );
        std::thread::sleep(Duration::from_millis(100));
        let finished = |v: usize| format!("v{v} Finished");
        assert!(
            !lines(&reports).contains(&finished(pv)) && !lines(&reports).contains(&finished(cv)),
            "no task ends before its final checkpoint completed: {:?}",
            lines(&reports)
        );

        // The final checkpoint: its barrier comes after everything, the sink stages it all.
        producer.send(TaskControl::TriggerCheckpoint {
            checkpoint_id: 1,
            stop: None,
        });
        wait_for("both acks of checkpoint 1", &reports, &sink_log, |l| {
            l.contains(&format!("v{pv} ack 1")) && l.contains(&format!("v{cv} ack 1"))
        });
        assert_eq!(lines(&sink_log).last().map(String::as_str), Some("stage 1"));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !lines(&reports).contains(&finished(cv)),
            "the sink's task waits for its final checkpoint to complete: {:?}",
            lines(&reports)
        );

        // Complete: the sink commits, the source ends its partition, both tasks finish.
        consumer.send(TaskControl::NotifyCheckpointComplete { checkpoint_id: 1 });
        producer.send(TaskControl::NotifyCheckpointComplete { checkpoint_id: 1 });
        wait_for("both tasks to finish", &reports, &sink_log, |l| {
            l.contains(&finished(pv)) && l.contains(&finished(cv))
        });
        assert_eq!(
            lines(&sink_log),
            [
                "write [1, 2, 3, 4, 5]",
                "write [1000]",
                "finish",
                "stage 1",
                "commit 1"
            ]
        );
    }

    #[test]
    fn over_a_local_channel_finish_output_precedes_the_final_checkpoint_which_commits_it() {
        run(false);
    }

    #[test]
    fn over_tcp_finish_output_precedes_the_final_checkpoint_which_commits_it() {
        run(true);
    }
}
