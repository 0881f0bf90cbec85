//! Fuzzing the RPC decoder (`rpc::read_message`) with proptest: random bytes, random bodies
//! behind a correct length, and valid messages with bytes overwritten, cut short or extended.
//! Whatever arrives, decoding returns (a message or an error), never panics, and allocates
//! no more than a small multiple of the frame it read (measured by a counting allocator).

use eddy_cluster::rpc::{
    read_message, write_message, ExecutionKey, JmMessage, TaskCounters, TmMessage, FRAME_SIZE_KEY,
};
use eddy_core::JobId;
use eddy_recovery::{OperatorSubtaskState, StateFileHandle, TaskStateSnapshot};
use eddy_runtime::framing::FrameLimits;
use eddy_runtime::task::ExecutionState;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

/// Counts the bytes this thread holds and the most it held since the last reset.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| {
            let now = l.get() + layout.size();
            l.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated by `f` at its peak, beyond what was held when it started.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

const MAX_FRAME: u32 = 1 << 20;

/// The allocation bounds below mean something only if the counter sees allocations.
#[test]
fn the_counting_allocator_sees_allocations() {
    let (v, peak) = peak_allocation(|| vec![1u8; 3 << 20]);
    assert!(peak >= 3 << 20, "{peak}");
    drop(v);
}

fn limits() -> FrameLimits {
    FrameLimits {
        max_len: MAX_FRAME,
        key: FRAME_SIZE_KEY,
        frame_timeout: Duration::from_secs(5),
        idle_timeout: None,
    }
}

/// The most a decode of a frame of `len` bytes may allocate: the frame itself, what its contents
/// expand to in memory (no element is more than 8x its encoding), and serde's cautious
/// pre-allocation of at most 1 MiB per collection being filled.
fn allowed(len: usize) -> usize {
    16 * len + 4 * (1 << 20)
}

/// Decodes `bytes` as both message directions; asserts bounded allocation; never panics.
fn decode_everything(bytes: &[u8]) {
    let (_, peak) = peak_allocation(|| {
        let _ = read_message::<TmMessage>(&mut &bytes[..], &limits());
        let _ = read_message::<JmMessage>(&mut &bytes[..], &limits());
    });
    assert!(
        peak <= allowed(bytes.len()),
        "decoding {} bytes allocated {peak} bytes",
        bytes.len()
    );
}

fn key(n: u64) -> ExecutionKey {
    ExecutionKey {
        job_id: JobId(u128::from(n) << 64 | 7),
        attempt: n,
        vertex: 3,
        subtask: 1,
    }
}

/// Valid frames of every shape a peer sends (the Deploy message excepted: it needs a job graph).
fn valid_frames() -> Vec<Vec<u8>> {
    let snapshot = TaskStateSnapshot {
        operators: vec![OperatorSubtaskState {
            operator_uid: "map-1".into(),
            key_groups: None,
            files: vec![StateFileHandle {
                path: "/tmp/chk-1/x".into(),
                len: 10,
                crc32: 99,
            }],
            inline: vec![1, 2, 3, 4],
            rocksdb: None,
        }],
    };
    let tm = vec![
        TmMessage::Register {
            tm_id: "tm-abc".into(),
            data_address: "127.0.0.1:6121".into(),
            slots: 4,
            pid: 123,
        },
        TmMessage::Heartbeat {
            counters: (0..5)
                .map(|i| TaskCounters {
                    key: key(i),
                    records_in: i * 10,
                    records_out: i,
                    times: (i % 2 == 0).then_some(eddy_runtime::task::metrics::TaskTimes {
                        backpressured_ms: i,
                        idle_ms: 2 * i,
                        busy_ms: 3 * i,
                    }),
                })
                .collect(),
        },
        TmMessage::TaskState {
            key: key(1),
            state: ExecutionState::Failed,
            error: Some("boom".into()),
            records_in: 5,
            records_out: 6,
        },
        TmMessage::CheckpointAck {
            key: key(2),
            checkpoint_id: 9,
            state: snapshot,
        },
        TmMessage::CheckpointDecline {
            key: key(3),
            checkpoint_id: 4,
            reason: "late".into(),
            counted: true,
        },
    ];
    let jm = vec![
        JmMessage::Registered { token: 42 },
        JmMessage::Refused {
            reason: "standby".into(),
        },
        JmMessage::Cancel {
            token: 1,
            key: key(4),
        },
        JmMessage::TriggerCheckpoint {
            token: 1,
            key: key(5),
            checkpoint_id: 3,
            stop: None,
        },
        JmMessage::HeartbeatReply { token: 8 },
    ];
    let mut frames = Vec::new();
    for m in &tm {
        let mut b = Vec::new();
        write_message(&mut b, m).expect("encode");
        frames.push(b);
    }
    for m in &jm {
        let mut b = Vec::new();
        write_message(&mut b, m).expect("encode");
        frames.push(b);
    }
    frames
}

#[test]
fn valid_frames_decode() {
    let frames = valid_frames();
    for f in &frames[..5] {
        read_message::<TmMessage>(&mut f.as_slice(), &limits()).expect("a TaskManager message");
    }
    for f in &frames[5..] {
        read_message::<JmMessage>(&mut f.as_slice(), &limits()).expect("a JobManager message");
    }
}

#[test]
fn a_500_mb_length_prefix_allocates_nothing_of_it() {
    let mut frame = (500u32 << 20).to_le_bytes().to_vec();
    frame.extend_from_slice(&[0xAB; 1000]);
    let (result, peak) =
        peak_allocation(|| read_message::<TmMessage>(&mut frame.as_slice(), &limits()));
    assert!(result.is_err());
    assert!(
        peak < 64 * 1024,
        "refusing the length allocated {peak} bytes"
    );
}

/// A frame of a few bytes whose inner length fields claim gigabytes.
#[test]
fn huge_inner_lengths_in_a_small_frame_allocate_little() {
    for frame in valid_frames() {
        for at in (4..frame.len().saturating_sub(8)).step_by(1) {
            let mut f = frame.clone();
            f[at..at + 8].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
            decode_everything(&f);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_correct_length_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        decode_everything(&frame);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..10,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        extend in proptest::collection::vec(any::<u8>(), 0..16),
        fix_length in any::<bool>(),
    ) {
        let frames = valid_frames();
        let mut f = frames[which % frames.len()].clone();
        for (at, byte) in edits {
            let at = at % f.len();
            f[at] = byte;
        }
        f.truncate(4 + cut % (f.len() - 3));
        f.extend_from_slice(&extend);
        if fix_length && f.len() >= 4 {
            let len = (f.len() - 4) as u32;
            f[..4].copy_from_slice(&len.to_le_bytes());
        }
        decode_everything(&f);
    }
}
