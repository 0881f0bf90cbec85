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
    fn end_of_partition(&mut self) -> Result<()> {
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
        name: "end of partition implies end of data; the gate never ends the partition itself",
        channels: 2,
        exactly_once: true,
        events: &[Rec(0, 1), End(0), End(1)],
        log: &["rec [1]", "finish"],
        blocked: &[],
        unreturned: &[0, 0],
        acked: &[],
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
        sent[ch] += 1;
        let credit = CreditReturn::Local(credits[ch].clone());
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
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let writer = ChannelWriter::local(endpoint.clone(), cancel.clone());
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
