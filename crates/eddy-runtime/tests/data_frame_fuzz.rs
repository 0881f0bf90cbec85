//! Fuzzing the data-plane decoder with proptest: `framing::read_frame` then
//! `network::decode_frame`, and a BATCH payload through the bounded bincode decoding, over random
//! bytes and over valid frames with bytes overwritten, cut short or extended. Whatever arrives,
//! decoding returns (a frame or an error), never panics, and allocates no more than a small
//! multiple of the frame it read (measured by a counting allocator).

use eddy_runtime::framing::{self, FrameLimits};
use eddy_runtime::task::channel::MAX_CHANNEL_CREDITS;
use eddy_runtime::task::network::{decode_frame, frame_limits, DataFrame};
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
    frame_limits(MAX_FRAME, Duration::from_secs(5))
}

/// A record type like the built-in jobs': a key, a number and a text.
type Batch = Vec<(u64, i64, String)>;

/// Reads and checks one frame from `bytes`, decoding a BATCH payload as the input gate would.
fn decode_everything(bytes: &[u8]) {
    let (_, peak) = peak_allocation(|| {
        let mut buf = Vec::new();
        let mut r = bytes;
        while framing::read_frame(&mut r, &mut buf, &limits()).is_ok() {
            match decode_frame(&buf) {
                Ok(DataFrame::Batch(_, payload)) => {
                    let _ = framing::decode::<Batch>(payload);
                }
                Ok(DataFrame::Credit(_, n)) => assert!((1..=MAX_CHANNEL_CREDITS).contains(&n)),
                Ok(DataFrame::Multi(events)) => {
                    for e in events {
                        if let DataFrame::Batch(_, payload) = e {
                            let _ = framing::decode::<Batch>(payload);
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    assert!(
        peak <= 16 * bytes.len() + 4 * (1 << 20),
        "decoding {} bytes allocated {peak} bytes",
        bytes.len()
    );
}

fn frame(kind: u8, channel: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = ((9 + payload.len()) as u32).to_le_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(&channel.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// One valid frame of each kind (OPEN, BATCH, WATERMARK, BARRIER, END, CREDIT, MULTI).
fn valid_frames() -> Vec<Vec<u8>> {
    let batch: Batch = (0..20).map(|i| (i, -(i as i64), format!("v{i}"))).collect();
    vec![
        frame(1, 7, &[]),
        frame(2, 7, &bincode::serialize(&batch).expect("encode")),
        frame(3, 7, &1234i64.to_le_bytes()),
        frame(4, 7, &5u64.to_le_bytes()),
        frame(5, 7, &[]),
        frame(6, 7, &3u32.to_le_bytes()),
        frame(
            10,
            0,
            &[frame(4, 7, &5u64.to_le_bytes()), frame(5, 8, &[])].concat(),
        ),
    ]
}

fn decode_one(bytes: &[u8]) -> Result<DataFrame<'static>, String> {
    let mut buf = Vec::new();
    framing::read_frame(&mut &bytes[..], &mut buf, &limits()).map_err(|e| e.to_string())?;
    let leaked: &'static [u8] = Box::leak(buf.into_boxed_slice());
    decode_frame(leaked)
}

#[test]
fn valid_frames_decode_to_their_kind() {
    let f = valid_frames();
    assert_eq!(decode_one(&f[0]), Ok(DataFrame::Open(7)));
    assert!(matches!(decode_one(&f[1]), Ok(DataFrame::Batch(7, _))));
    assert_eq!(decode_one(&f[2]), Ok(DataFrame::Watermark(7, 1234)));
    assert_eq!(decode_one(&f[3]), Ok(DataFrame::Barrier(7, 5)));
    assert_eq!(decode_one(&f[4]), Ok(DataFrame::End(7)));
    assert_eq!(decode_one(&f[5]), Ok(DataFrame::Credit(7, 3)));
    assert_eq!(
        decode_one(&f[6]),
        Ok(DataFrame::Multi(vec![
            DataFrame::Barrier(7, 5),
            DataFrame::End(8)
        ]))
    );
}

/// Table of malformed frames and the one-line reason each is refused with.
#[test]
fn malformed_frames_are_refused_with_a_reason() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            frame(6, 7, &u32::MAX.to_le_bytes()),
            "a credit of 4294967295 on channel 7: a channel holds 1 to 17408",
        ),
        (
            frame(6, 7, &0u32.to_le_bytes()),
            "a credit of 0 on channel 7: a channel holds 1 to 17408",
        ),
        (
            frame(6, 7, &[1]),
            "a data frame of kind 6 on channel 7 carries 1 payload bytes, expected 4",
        ),
        (
            frame(3, 7, &[1, 2, 3]),
            "a data frame of kind 3 on channel 7 carries 3 payload bytes, expected 8",
        ),
        (
            frame(1, 7, &[0]),
            "a data frame of kind 1 on channel 7 carries 1 payload bytes, expected 0",
        ),
        (
            frame(10, 0, &frame(10, 0, &frame(5, 7, &[]))),
            "a multi-channel frame carries Multi([End(7)]); only channel events may",
        ),
        (
            frame(10, 0, &frame(5, 7, &[])[..12]),
            "an event of 9 bytes in a multi-channel frame with 8 bytes left",
        ),
        (
            frame(10, 0, &[9, 0]),
            "a multi-channel frame ends inside an event's length (2 bytes left)",
        ),
        (
            frame(99, 7, &[]),
            "unknown data frame kind 99 on channel 7 (known: 1 to 10)",
        ),
        (
            vec![3, 0, 0, 0, 2, 0, 0],
            "a data frame of 3 bytes is shorter than its 9-byte header",
        ),
        (
            (500u32 << 20).to_le_bytes().to_vec(),
            "a frame of 524288000 bytes exceeds taskmanager.network.max-frame-size (1048576 bytes)",
        ),
    ];
    for (bytes, reason) in cases {
        assert_eq!(decode_one(&bytes), Err(reason.to_string()), "{bytes:?}");
    }
}

#[test]
fn a_500_mb_length_prefix_allocates_nothing_of_it() {
    let mut bytes = (500u32 << 20).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[2; 100]);
    let (r, peak) =
        peak_allocation(|| framing::read_frame(&mut bytes.as_slice(), &mut Vec::new(), &limits()));
    assert!(r.is_err());
    assert!(
        peak < 64 * 1024,
        "refusing the length allocated {peak} bytes"
    );
}

#[test]
fn huge_inner_lengths_in_a_batch_allocate_little() {
    let f = &valid_frames()[1];
    for at in 13..f.len() - 8 {
        let mut m = f.clone();
        m[at..at + 8].copy_from_slice(&(u64::MAX / 5).to_le_bytes());
        decode_everything(&m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn random_frames_of_every_kind_never_panic(
        kind in 0u8..11,
        channel in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        decode_everything(&frame(kind, channel, &payload));
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        which in 0usize..7,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        extend in proptest::collection::vec(any::<u8>(), 0..16),
        fix_length in any::<bool>(),
    ) {
        let frames = valid_frames();
        let mut f = frames[which].clone();
        for (at, byte) in edits {
            let at = at % f.len();
            f[at] = byte;
        }
        f.truncate(4 + cut % (f.len() - 3));
        f.extend_from_slice(&extend);
        if fix_length {
            let len = (f.len() - 4) as u32;
            f[..4].copy_from_slice(&len.to_le_bytes());
        }
        // Back to back with a valid frame: a reader must stop at the first bad one.
        f.extend(frames[0].clone());
        decode_everything(&f);
    }
}
