//! Length-prefixed frames (`u32 little-endian length | body`) read from a peer we do not trust,
//! and the bounded bincode decoding of what they carry.
//!
//! Both TCP protocols (the RPC between JobManager and TaskManagers, the data plane between
//! TaskManagers) read through here, so garbage on any port gets an error, after which the caller
//! closes the connection; never a panic, an allocation beyond the configured frame size, or a
//! thread stuck forever:
//! - a length above the configured maximum is refused before anything is allocated, naming the
//!   key that sets the maximum;
//! - a frame's body is buffered only as its bytes arrive, so a peer that announces a large frame
//!   and sends nothing costs nothing;
//! - a frame that has begun must be complete within `frame_timeout`, and (where the protocol has
//!   heartbeats) the stream may be silent between frames for at most `idle_timeout`. The socket's
//!   read timeout must be set to [`FrameLimits::socket_read_timeout`] (or shorter) for these
//!   deadlines to be noticed while no byte arrives.
//!
//! This file never interprets a frame's body.

use serde::de::DeserializeOwned;
use std::io::{self, ErrorKind, Read};
use std::time::{Duration, Instant};

/// The bounds a reader applies to one stream.
#[derive(Clone, Debug)]
pub struct FrameLimits {
    /// Largest accepted body (the bytes after the 4-byte length).
    pub max_len: u32,
    /// The configuration key that sets `max_len`, named in errors.
    pub key: &'static str,
    /// How long a frame may take from its first byte to its last.
    pub frame_timeout: Duration,
    /// How long the stream may be silent between two frames; `None`: forever.
    pub idle_timeout: Option<Duration>,
}

/// Bodies are buffered in steps of this size as they arrive.
const CHUNK: usize = 64 * 1024;

impl FrameLimits {
    /// A socket read timeout short enough for the deadlines to be checked while no byte arrives.
    pub fn socket_read_timeout(&self) -> Duration {
        let shortest = self
            .idle_timeout
            .map_or(self.frame_timeout, |i| i.min(self.frame_timeout));
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Reads one frame's body into `buf` (cleared first). Errors: `UnexpectedEof` when the peer
/// closed (inside a frame or between frames), `InvalidData` for a length above the maximum,
/// `TimedOut` when a deadline passed, or the stream's own error.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, limits: &FrameLimits) -> io::Result<()> {
    let mut progress = Progress {
        idle_since: Instant::now(),
        started: None,
        limits,
    };
    let mut head = [0u8; 4];
    progress.fill(r, &mut head)?;
    let len = u32::from_le_bytes(head);
    if len > limits.max_len {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "a frame of {len} bytes exceeds {} ({} bytes)",
                limits.key, limits.max_len
            ),
        ));
    }
    let len = len as usize;
    buf.clear();
    while buf.len() < len {
        let from = buf.len();
        buf.resize(from + (len - from).min(CHUNK), 0);
        progress.fill(r, &mut buf[from..])?;
    }
    Ok(())
}

/// Where the current frame stands against its deadlines.
struct Progress<'a> {
    idle_since: Instant,
    /// When the frame's first byte arrived.
    started: Option<Instant>,
    limits: &'a FrameLimits,
}

impl Progress<'_> {
    fn fill(&mut self, r: &mut impl Read, dst: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < dst.len() {
            match r.read(&mut dst[filled..]) {
                Ok(0) => {
                    let what = if self.started.is_some() {
                        "the peer closed the connection inside a frame"
                    } else {
                        "the peer closed the connection"
                    };
                    return Err(io::Error::new(ErrorKind::UnexpectedEof, what));
                }
                Ok(n) => {
                    filled += n;
                    self.started.get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
            self.check_deadlines()?;
        }
        Ok(())
    }

    fn check_deadlines(&self) -> io::Result<()> {
        let late = match self.started {
            Some(t) if t.elapsed() > self.limits.frame_timeout => format!(
                "a frame begun {:?} ago is still incomplete (limit {:?})",
                t.elapsed(),
                self.limits.frame_timeout
            ),
            None => match self.limits.idle_timeout {
                Some(idle) if self.idle_since.elapsed() > idle => {
                    format!("the peer sent nothing for {idle:?}")
                }
                _ => return Ok(()),
            },
            Some(_) => return Ok(()),
        };
        Err(io::Error::new(ErrorKind::TimedOut, late))
    }
}

/// The bincode options of `bincode::serialize` (fixed-size integers, little endian), plus a limit
/// of `limit` bytes on what decoding may read or pre-allocate, and no trailing bytes.
pub fn bincode_options(limit: u64) -> impl bincode::Options + Copy {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(limit)
}

/// Decodes a value written by `bincode::serialize` from a peer's bytes: a length field inside
/// can never make it allocate more than the bytes there are, and trailing garbage is an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    bincode_options(bytes.len() as u64).deserialize(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn limits(max_len: u32) -> FrameLimits {
        FrameLimits {
            max_len,
            key: "test.framesize",
            frame_timeout: Duration::from_millis(200),
            idle_timeout: None,
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn frames_are_read_back_to_back() {
        let mut bytes = frame(b"hello");
        bytes.extend(frame(b""));
        bytes.extend(frame(&[7; 200_000]));
        let mut r = bytes.as_slice();
        let mut buf = Vec::new();
        read_frame(&mut r, &mut buf, &limits(1 << 20)).unwrap();
        assert_eq!(buf, b"hello");
        read_frame(&mut r, &mut buf, &limits(1 << 20)).unwrap();
        assert!(buf.is_empty());
        read_frame(&mut r, &mut buf, &limits(1 << 20)).unwrap();
        assert_eq!(buf, vec![7; 200_000]);
        let end = read_frame(&mut r, &mut buf, &limits(1 << 20)).unwrap_err();
        assert_eq!(end.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_length_above_the_maximum_is_refused_naming_the_key_before_allocating() {
        let bytes = (500u32 << 20).to_le_bytes();
        let mut buf = Vec::new();
        let e = read_frame(&mut bytes.as_slice(), &mut buf, &limits(4 << 20)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "a frame of 524288000 bytes exceeds test.framesize (4194304 bytes)"
        );
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn a_truncated_frame_is_an_eof_and_buffers_only_what_arrived() {
        let mut bytes = (4u32 << 20).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut buf = Vec::new();
        let e = read_frame(&mut bytes.as_slice(), &mut buf, &limits(8 << 20)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(buf.capacity() <= 2 * CHUNK, "{}", buf.capacity());
    }

    /// A reader that hands out its bytes one at a time, then reports a read timeout forever.
    struct Trickle(VecDeque<u8>);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                Some(b) if !out.is_empty() => {
                    out[0] = b;
                    Ok(1)
                }
                _ => {
                    std::thread::sleep(Duration::from_millis(5));
                    Err(io::Error::new(ErrorKind::WouldBlock, "read timeout"))
                }
            }
        }
    }

    #[test]
    fn a_peer_that_sends_part_of_a_frame_and_stops_times_out() {
        let mut r = Trickle(frame(b"abcdef")[..7].iter().copied().collect());
        let e = read_frame(&mut r, &mut Vec::new(), &limits(100)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    }

    #[test]
    fn silence_between_frames_is_fine_without_an_idle_timeout_and_fatal_with_one() {
        let mut l = limits(100);
        l.frame_timeout = Duration::from_millis(50);
        // Without an idle timeout, silence is waited out: the reader never returns on its own,
        // so check with a bounded number of polls instead of blocking the test.
        struct Polls(u32);
        impl Read for Polls {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Ok(0);
                }
                self.0 -= 1;
                std::thread::sleep(Duration::from_millis(10));
                Err(io::Error::new(ErrorKind::WouldBlock, "read timeout"))
            }
        }
        // 20 polls of 10 ms: 200 ms of silence, longer than frame_timeout, ends in EOF, not a timeout.
        let e = read_frame(&mut Polls(20), &mut Vec::new(), &l).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
        l.idle_timeout = Some(Duration::from_millis(50));
        let e = read_frame(&mut Polls(1000), &mut Vec::new(), &l).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    }

    #[test]
    fn bounded_decoding_reads_what_bincode_serialize_writes() {
        let value: (u32, String, Vec<i64>, Option<u128>) =
            (7, "x".repeat(300), vec![-1, 2, 3], Some(u128::MAX));
        let bytes = bincode::serialize(&value).unwrap();
        assert_eq!(
            decode::<(u32, String, Vec<i64>, Option<u128>)>(&bytes).unwrap(),
            value
        );
        use bincode::Options;
        assert_eq!(bincode_options(u64::MAX).serialize(&value).unwrap(), bytes);
    }

    #[test]
    fn bounded_decoding_refuses_lengths_beyond_the_bytes_and_trailing_garbage() {
        let mut huge_vec = u64::MAX.to_le_bytes().to_vec();
        huge_vec.extend_from_slice(&[0; 16]);
        assert!(decode::<Vec<u64>>(&huge_vec).is_err());
        assert!(decode::<String>(&huge_vec).is_err());
        let mut trailing = bincode::serialize(&5u32).unwrap();
        trailing.push(0);
        assert!(decode::<u32>(&trailing).is_err());
    }
}
