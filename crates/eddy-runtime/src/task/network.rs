//! The data plane between TaskManagers: one TCP connection per (producer TM, consumer TM) pair,
//! multiplexing the logical channels of every job, with credits flowing back on the same
//! connection.
//!
//! Every plain connection is non-blocking and driven by [`IO_THREADS`] I/O threads (tokio's
//! reactor), whatever the number of peers and channels: the threads read frames and hand them to
//! the consuming tasks' mailboxes; tasks write their own frames on their own threads. With
//! mutual TLS, each connection keeps a blocking reader thread.
//!
//! Frame: `u32 length | u8 kind | u64 channel id | payload`. Producer → consumer: OPEN, OPENS
//! (channel id 0, payload: the ids of up to [`MAX_IDS_PER_FRAME`] channels, u64 each), BATCH
//! (bincode `Vec<T>`), WATERMARK (i64), BARRIER (u64), END_OF_DATA, END, and MULTI (channel id
//! 0, payload: several of the five before, each a complete frame, of any channels: what one
//! producer task's flush or broadcast has for this peer, see [`MultiFrame`]; the reader expands
//! it in order, as if the events had come one by one). Consumer → producer:
//! CREDIT (u32), CREDITS (channel id 0, payload: up to [`MAX_IDS_PER_FRAME`] pairs of channel id
//! u64 and credit u32).
//! A producer opens a channel and waits for credits; the consumer grants the first credits only
//! once the consuming task registered the channel, so nothing is ever sent into the void. A
//! starting task opens all its channels to one peer TaskManager with one OPENS frame, and the
//! consumer grants the registered ones with one CREDITS frame (a -p 400 keyed exchange on 100
//! TaskManagers: 400 × 99 frames each way instead of 160,000).
//! Data for an unknown channel (an older deployment's) is dropped.
//!
//! Frames come from peers we do not trust: each is read with `framing::read_frame` (at most
//! `taskmanager.network.max-frame-size` bytes, complete within `heartbeat.timeout` once begun) and
//! checked by [`decode_frame`] (a known kind, the exact payload length of its kind, a credit of at
//! most [`MAX_CHANNEL_CREDITS`]). Anything else closes the connection; it never panics.
//!
//! Credits are network buffers of the consumer (`task/buffers.rs`): a channel opens with its
//! exclusive buffers (`taskmanager.network.memory.buffers-per-channel`) and may be lent floating
//! ones of its gate; a consumer granting a channel more than exclusive + floating-per-gate is
//! refused, so every TaskManager of a cluster must use the same network buffer keys.

use crate::error::{JobError, Result};
use crate::framing::{self, FrameLimits};
use crate::task::buffers::{BufferPoolConfig, NetworkBufferPool};
use crate::task::channel::{
    ChannelEvent, ChannelId, ChannelWriter, CreditReturn, Credits, InputEndpoint, MailboxItem,
    Payload, MAX_CHANNEL_CREDITS,
};
use eddy_core::tls::{self, ConnWriter, InternalTls};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const OPEN: u8 = 1;
const BATCH: u8 = 2;
const WATERMARK: u8 = 3;
const BARRIER: u8 = 4;
const END: u8 = 5;
const CREDIT: u8 = 6;
const END_OF_DATA: u8 = 7;
const OPENS: u8 = 8;
const CREDITS: u8 = 9;
const MULTI: u8 = 10;

/// Channels one OPENS or CREDITS frame lists at most (48 KiB of CREDITS payload: within the
/// smallest `taskmanager.network.max-frame-size`, 64 KiB).
pub const MAX_IDS_PER_FRAME: usize = 4096;

/// Bytes of a frame before its payload: kind and channel id.
const FRAME_HEAD: usize = 1 + 8;

/// The configuration key that bounds a data frame, named in errors.
pub const MAX_FRAME_KEY: &str = "taskmanager.network.max-frame-size";

/// One frame of the data plane, checked: a known kind with the payload length of its kind.
#[derive(Debug, PartialEq, Eq)]
pub enum DataFrame<'a> {
    Open(ChannelId),
    Batch(ChannelId, &'a [u8]),
    Watermark(ChannelId, i64),
    Barrier(ChannelId, u64),
    /// FLIP-147: the producer's data ended (it finished); END follows after its final checkpoint.
    EndOfData(ChannelId),
    End(ChannelId),
    /// `1..=MAX_CHANNEL_CREDITS` credits: a channel never holds more.
    Credit(ChannelId, u32),
    /// Channels opened together: `1..=MAX_IDS_PER_FRAME` ids.
    Opens(Vec<ChannelId>),
    /// Credits of several channels, each as [`DataFrame::Credit`].
    Credits(Vec<(ChannelId, u32)>),
    /// Events of several channels from one producer task in one frame (channel id 0, payload:
    /// complete BATCH, WATERMARK, BARRIER, END_OF_DATA or END frames, length included), in the
    /// order they were sent.
    Multi(Vec<DataFrame<'a>>),
}

/// Checks a frame's body (everything after its length); the error says what was wrong.
pub fn decode_frame(body: &[u8]) -> std::result::Result<DataFrame<'_>, String> {
    if body.len() < FRAME_HEAD {
        return Err(format!(
            "a data frame of {} bytes is shorter than its {FRAME_HEAD}-byte header",
            body.len()
        ));
    }
    let kind = body[0];
    let mut id = [0u8; 8];
    id.copy_from_slice(&body[1..FRAME_HEAD]);
    let id = ChannelId::from_le_bytes(id);
    let payload = &body[FRAME_HEAD..];
    let fixed = |n: usize| -> std::result::Result<&[u8], String> {
        if payload.len() == n {
            Ok(payload)
        } else {
            Err(format!(
                "a data frame of kind {kind} on channel {id} carries {} payload bytes, expected {n}",
                payload.len()
            ))
        }
    };
    let le8 = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        a
    };
    Ok(match kind {
        OPEN => {
            fixed(0)?;
            DataFrame::Open(id)
        }
        BATCH => DataFrame::Batch(id, payload),
        WATERMARK => DataFrame::Watermark(id, i64::from_le_bytes(le8(fixed(8)?))),
        BARRIER => DataFrame::Barrier(id, u64::from_le_bytes(le8(fixed(8)?))),
        END_OF_DATA => {
            fixed(0)?;
            DataFrame::EndOfData(id)
        }
        END => {
            fixed(0)?;
            DataFrame::End(id)
        }
        CREDIT => {
            let b = fixed(4)?;
            let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !(1..=MAX_CHANNEL_CREDITS).contains(&n) {
                return Err(format!(
                    "a credit of {n} on channel {id}: a channel holds 1 to {MAX_CHANNEL_CREDITS}"
                ));
            }
            DataFrame::Credit(id, n)
        }
        OPENS | CREDITS => {
            let entry = if kind == OPENS { 8 } else { 12 };
            let n = payload.len() / entry;
            if id != 0
                || !payload.len().is_multiple_of(entry)
                || !(1..=MAX_IDS_PER_FRAME).contains(&n)
            {
                return Err(format!(
                    "a frame of kind {kind} with channel {id} and {} payload bytes; expected \
                     channel 0 and 1 to {MAX_IDS_PER_FRAME} entries of {entry} bytes",
                    payload.len()
                ));
            }
            let mut entries = payload.chunks_exact(entry);
            if kind == OPENS {
                DataFrame::Opens(entries.map(|b| ChannelId::from_le_bytes(le8(b))).collect())
            } else {
                let mut credits = Vec::with_capacity(n);
                for b in entries.by_ref() {
                    let (id, c) = (ChannelId::from_le_bytes(le8(&b[..8])), &b[8..]);
                    let c = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    if !(1..=MAX_CHANNEL_CREDITS).contains(&c) {
                        return Err(format!(
                            "a credit of {c} on channel {id}: a channel holds 1 to {MAX_CHANNEL_CREDITS}"
                        ));
                    }
                    credits.push((id, c));
                }
                DataFrame::Credits(credits)
            }
        }
        MULTI => {
            if id != 0 || payload.is_empty() {
                return Err(format!(
                    "a frame of kind {kind} with channel {id} and {} payload bytes; expected \
                     channel 0 and at least one event",
                    payload.len()
                ));
            }
            let mut events = Vec::new();
            let mut rest = payload;
            while !rest.is_empty() {
                let Some((len, body)) = rest.split_first_chunk::<4>() else {
                    return Err(format!(
                        "a multi-channel frame ends inside an event's length ({} bytes left)",
                        rest.len()
                    ));
                };
                let len = u32::from_le_bytes(*len) as usize;
                if body.len() < len {
                    return Err(format!(
                        "an event of {len} bytes in a multi-channel frame with {} bytes left",
                        body.len()
                    ));
                }
                let event = decode_frame(&body[..len])?;
                match event {
                    DataFrame::Batch(..)
                    | DataFrame::Watermark(..)
                    | DataFrame::Barrier(..)
                    | DataFrame::EndOfData(_)
                    | DataFrame::End(_) => events.push(event),
                    other => {
                        return Err(format!(
                            "a multi-channel frame carries {other:?}; only channel events may"
                        ))
                    }
                }
                rest = &body[len..];
            }
            DataFrame::Multi(events)
        }
        other => {
            return Err(format!(
                "unknown data frame kind {other} on channel {id} (known: {OPEN} to {MULTI})"
            ))
        }
    })
}

/// How the data plane bounds what peers send: frame size (`taskmanager.network.max-frame-size`),
/// and how long a begun frame may take (`heartbeat.timeout`: a peer that slow is lost anyway).
/// Connections may be idle between frames for as long as they like.
pub fn frame_limits(max_frame: u32, frame_timeout: Duration) -> FrameLimits {
    FrameLimits {
        max_len: max_frame,
        key: MAX_FRAME_KEY,
        frame_timeout,
        idle_timeout: None,
    }
}

/// The fixed number of I/O threads that drive every plain data connection of a TaskManager,
/// whatever the number of peers and channels (Flink's netty threads).
pub const IO_THREADS: usize = 2;

/// How a connection's bytes move.
enum Link {
    /// Plain TCP: the socket is non-blocking and registered with the data plane's I/O threads,
    /// which read it ([`read_frames`]); tasks write their frames on their own threads
    /// ([`write_all`]).
    Plain {
        /// The frame being written (reused; also serializes writers).
        out: Mutex<Vec<u8>>,
        /// A handle on the same socket, to write and to shut it down.
        socket: TcpStream,
    },
    /// Mutual TLS (`security.ssl.internal.enabled`): blocking halves, one reader thread per
    /// connection.
    Tls(Mutex<BufWriter<ConnWriter>>),
}

/// One TCP connection to a peer TaskManager (either direction).
pub struct PeerConnection {
    link: Link,
    /// Largest frame this side sends (the peer refuses larger ones).
    max_frame: u32,
    /// Producer side: credits per channel, granted by the consumer.
    credits: Mutex<HashMap<ChannelId, Arc<Credits>>>,
    broken: AtomicBool,
    peer: String,
}

impl PeerConnection {
    fn new(link: Link, peer: String, max_frame: u32) -> Arc<Self> {
        Arc::new(PeerConnection {
            link,
            max_frame,
            credits: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
            peer,
        })
    }

    fn tls(stream: ConnWriter, max_frame: u32) -> Result<Arc<Self>> {
        stream.socket().set_nodelay(true)?;
        let peer = stream
            .socket()
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let link = Link::Tls(Mutex::new(BufWriter::with_capacity(64 * 1024, stream)));
        Ok(Self::new(link, peer, max_frame))
    }

    /// A plain connection driven by the I/O threads of `io` (the caller spawns its reader).
    fn plain(
        socket: TcpStream,
        io: &tokio::runtime::Handle,
        max_frame: u32,
    ) -> Result<(Arc<Self>, Arc<tokio::net::TcpStream>)> {
        socket.set_nodelay(true)?;
        let peer = socket
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let shut = socket.try_clone()?;
        socket.set_nonblocking(true)?;
        let stream = {
            let _guard = io.enter();
            Arc::new(tokio::net::TcpStream::from_std(socket)?)
        };
        let link = Link::Plain {
            out: Mutex::new(Vec::new()),
            socket: shut,
        };
        Ok((Self::new(link, peer, max_frame), stream))
    }

    /// Closes the connection in both directions.
    fn shutdown(&self) {
        self.broken.store(true, Ordering::Relaxed);
        let _ = match &self.link {
            Link::Plain { socket, .. } => socket.shutdown(std::net::Shutdown::Both),
            Link::Tls(w) => match w.lock() {
                Ok(w) => w.get_ref().socket().shutdown(std::net::Shutdown::Both),
                Err(_) => Ok(()),
            },
        };
    }

    fn write_frame(&self, kind: u8, id: ChannelId, payload: &[u8]) -> Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(JobError::new(format!(
                "data connection to TaskManager {} is broken",
                self.peer
            )));
        }
        let len = FRAME_HEAD + payload.len();
        if len > self.max_frame as usize {
            return Err(JobError::new(format!(
                "a data frame of {len} bytes for channel {id} exceeds {MAX_FRAME_KEY} ({} bytes); \
                 raise it on every TaskManager, or send smaller records",
                self.max_frame
            )));
        }
        let len = len as u32;
        let r = match &self.link {
            Link::Plain { socket, out } => {
                let mut out = out
                    .lock()
                    .map_err(|_| JobError::new("connection lock poisoned"))?;
                out.clear();
                out.extend_from_slice(&len.to_le_bytes());
                out.push(kind);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(payload);
                let r = write_all(socket, &out);
                if out.capacity() > 256 * 1024 {
                    *out = Vec::new(); // a rare large frame does not pin its buffer
                }
                r
            }
            Link::Tls(w) => {
                let mut w = w
                    .lock()
                    .map_err(|_| JobError::new("connection lock poisoned"))?;
                (|| {
                    w.write_all(&len.to_le_bytes())?;
                    w.write_all(&[kind])?;
                    w.write_all(&id.to_le_bytes())?;
                    w.write_all(payload)?;
                    w.flush()
                })()
            }
        };
        r.map_err(|e| {
            self.broken.store(true, Ordering::Relaxed);
            JobError::new(format!(
                "lost the data connection to TaskManager {}: {e}",
                self.peer
            ))
        })
    }

    /// Writes complete, encoded frames (a [`MultiFrame`]'s) as they are.
    fn write_encoded(&self, bytes: &[u8]) -> Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(JobError::new(format!(
                "data connection to TaskManager {} is broken",
                self.peer
            )));
        }
        let r = match &self.link {
            Link::Plain { socket, out } => {
                // The lock serializes writers, as in `write_frame`.
                let _out = out
                    .lock()
                    .map_err(|_| JobError::new("connection lock poisoned"))?;
                write_all(socket, bytes)
            }
            Link::Tls(w) => {
                let mut w = w
                    .lock()
                    .map_err(|_| JobError::new("connection lock poisoned"))?;
                w.write_all(bytes).and_then(|()| w.flush())
            }
        };
        r.map_err(|e| {
            self.broken.store(true, Ordering::Relaxed);
            JobError::new(format!(
                "lost the data connection to TaskManager {}: {e}",
                self.peer
            ))
        })
    }

    pub fn send_event(&self, id: ChannelId, event: &ChannelEvent) -> Result<()> {
        match event {
            ChannelEvent::Batch(Payload::Bytes(b)) => self.write_frame(BATCH, id, b),
            ChannelEvent::Batch(Payload::Local(_)) => {
                Err(JobError::new("internal: a local batch sent over TCP"))
            }
            ChannelEvent::Watermark(wm) => self.write_frame(WATERMARK, id, &wm.to_le_bytes()),
            ChannelEvent::Barrier(c) => self.write_frame(BARRIER, id, &c.to_le_bytes()),
            ChannelEvent::EndOfData => self.write_frame(END_OF_DATA, id, &[]),
            ChannelEvent::EndOfPartition => self.write_frame(END, id, &[]),
        }
    }

    /// Returns credits to the producer; a failure means the producer is gone, which its own
    /// TaskManager will report.
    pub fn send_credit(&self, id: ChannelId, n: u32) {
        let _ = self.write_frame(CREDIT, id, &n.to_le_bytes());
    }

    /// Grants credits on several channels with as few frames as fit (one CREDITS frame per
    /// [`MAX_IDS_PER_FRAME`] channels); a failure means the producer is gone.
    fn send_credits(&self, grants: &[(ChannelId, u32)]) {
        if let [(id, n)] = grants {
            return self.send_credit(*id, *n);
        }
        for chunk in grants.chunks(MAX_IDS_PER_FRAME) {
            let mut payload = Vec::with_capacity(chunk.len() * 12);
            for (id, n) in chunk {
                payload.extend_from_slice(&id.to_le_bytes());
                payload.extend_from_slice(&n.to_le_bytes());
            }
            if self.write_frame(CREDITS, 0, &payload).is_err() {
                return;
            }
        }
    }
}

/// The events of one producer task for one peer TaskManager, gathered while the task flushes its
/// output or broadcasts a barrier, watermark or end, and written as one MULTI frame (a single
/// event as its own frame): a sparse exchange sends one frame per peer and flush, not one per
/// channel. Each event must hold its channel's credit before it is added. The buffer is kept
/// for the next flush.
pub struct MultiFrame {
    conn: Arc<PeerConnection>,
    /// The MULTI header's room, then the events as complete frames.
    buf: Vec<u8>,
    events: usize,
}

/// Bytes of a frame's length, kind and channel id.
const MULTI_HEAD: usize = 4 + FRAME_HEAD;

impl MultiFrame {
    pub fn new(conn: Arc<PeerConnection>) -> Self {
        MultiFrame {
            conn,
            buf: vec![0; MULTI_HEAD],
            events: 0,
        }
    }

    /// The connection this frame goes out on.
    pub fn connection(&self) -> &Arc<PeerConnection> {
        &self.conn
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Adds `event` of channel `id`; writes what was gathered first when the frame would pass
    /// `taskmanager.network.max-frame-size`.
    pub fn push(&mut self, id: ChannelId, event: &ChannelEvent) -> Result<()> {
        let (kind, payload): (u8, &[u8]) = match event {
            ChannelEvent::Batch(Payload::Bytes(b)) => (BATCH, b),
            ChannelEvent::Batch(Payload::Local(_)) => {
                return Err(JobError::new("internal: a local batch sent over TCP"))
            }
            ChannelEvent::Watermark(wm) => return self.push_raw(WATERMARK, id, &wm.to_le_bytes()),
            ChannelEvent::Barrier(c) => return self.push_raw(BARRIER, id, &c.to_le_bytes()),
            ChannelEvent::EndOfData => (END_OF_DATA, &[]),
            ChannelEvent::EndOfPartition => (END, &[]),
        };
        self.push_raw(kind, id, payload)
    }

    fn push_raw(&mut self, kind: u8, id: ChannelId, payload: &[u8]) -> Result<()> {
        let len = FRAME_HEAD + payload.len();
        let max = self.conn.max_frame as usize;
        // As a MULTI frame (its length excluded) this would be `buf.len() + len` bytes.
        if self.events > 0 && self.buf.len() + len > max {
            self.write_out()?;
        }
        if len > max {
            // Too large even alone: `write_frame` refuses it naming the key.
            return self.conn.write_frame(kind, id, payload);
        }
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        self.buf.push(kind);
        self.buf.extend_from_slice(&id.to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.events += 1;
        Ok(())
    }

    /// Writes the gathered events (nothing when there are none).
    pub fn write_out(&mut self) -> Result<()> {
        let r = match self.events {
            0 => Ok(()),
            1 => self.conn.write_encoded(&self.buf[MULTI_HEAD..]),
            _ => {
                let len = (self.buf.len() - 4) as u32;
                self.buf[..4].copy_from_slice(&len.to_le_bytes());
                self.buf[4] = MULTI;
                self.buf[5..MULTI_HEAD].copy_from_slice(&0u64.to_le_bytes());
                self.conn.write_encoded(&self.buf)
            }
        };
        self.events = 0;
        self.buf.truncate(MULTI_HEAD);
        if self.buf.capacity() > 256 * 1024 {
            self.buf.shrink_to(64 * 1024); // a rare large flush does not pin its buffer
        }
        r
    }
}

/// Writes `bytes` to a non-blocking socket from the calling thread (the reactor only reads);
/// while the socket's send buffer is full, waits in `poll(2)` for it to drain (on an I/O thread
/// — a credit granted by a reader — handing that thread's other connections to a stand-in).
fn write_all(socket: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match (&*socket).write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if ON_IO_THREAD.with(|c| c.get()) {
                    tokio::task::block_in_place(|| wait_writable(socket))?;
                } else {
                    wait_writable(socket)?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Blocks until `socket` can take more bytes (or has an error for the next write to report),
/// at most 1 s.
fn wait_writable(socket: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd that outlives the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, 1000) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

thread_local! {
    /// Set on the data plane's I/O threads.
    static ON_IO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Each I/O thread's read buffer: a connection keeps only the bytes of its unfinished frame.
    static READ_CHUNK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Reads length-prefixed frames from a non-blocking socket on the I/O threads, with the bounds
/// of [`framing::read_frame`] (a length above `limits.max_len` is refused before anything is
/// buffered; a begun frame must complete within `limits.frame_timeout`; silence between frames
/// is fine), handing each frame's body to `on_frame` until it, the peer or a bound ends the
/// connection; returns why.
async fn read_frames(
    stream: &tokio::net::TcpStream,
    limits: &FrameLimits,
    mut on_frame: impl FnMut(&[u8]) -> std::result::Result<(), String>,
) -> String {
    let mut buf: Vec<u8> = Vec::new();
    // When the first byte of the unfinished frame in `buf` arrived.
    let mut started: Option<Instant> = None;
    loop {
        let mut pos = 0;
        while buf.len() - pos >= 4 {
            let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
            if len > limits.max_len {
                return format!(
                    "a frame of {len} bytes exceeds {} ({} bytes)",
                    limits.key, limits.max_len
                );
            }
            let end = pos + 4 + len as usize;
            if buf.len() < end {
                break;
            }
            if let Err(why) = on_frame(&buf[pos + 4..end]) {
                return why;
            }
            pos = end;
            started = None;
        }
        buf.drain(..pos);
        if buf.is_empty() {
            started = None;
            if buf.capacity() > 256 * 1024 {
                buf = Vec::new();
            }
        } else if started.is_none() {
            started = Some(Instant::now());
        }
        let read = async {
            loop {
                stream.readable().await?;
                let r = READ_CHUNK.with(|chunk| {
                    let mut chunk = chunk.borrow_mut();
                    let r = stream.try_read(&mut chunk);
                    if let Ok(n) = r {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    r
                });
                match r {
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) => {}
                    r => return r,
                }
            }
        };
        let n = match started {
            Some(t) => {
                let deadline = tokio::time::Instant::from_std(t + limits.frame_timeout);
                match tokio::time::timeout_at(deadline, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        return format!(
                            "a frame begun {:?} ago is still incomplete (limit {:?})",
                            t.elapsed(),
                            limits.frame_timeout
                        )
                    }
                }
            }
            None => read.await,
        };
        match n {
            Ok(0) if buf.is_empty() => return "the peer closed the connection".into(),
            Ok(0) => return "the peer closed the connection inside a frame".into(),
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
    }
}

/// How long the parallel connects of [`NetworkEnvironment::connect_peers`] may take; a peer not
/// connected by then is connected (or its failure reported) one at a time.
const PARALLEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TaskManager's data plane: the listener, the registry of input channels, and the outgoing
/// connections.
pub struct NetworkEnvironment {
    address: SocketAddr,
    registry: Mutex<HashMap<ChannelId, InputEndpoint>>,
    registered: Condvar,
    /// Remote producers that opened a channel before its consumer registered.
    pending_opens: Mutex<HashMap<ChannelId, Arc<PeerConnection>>>,
    peers: Mutex<HashMap<String, Arc<PeerConnection>>>,
    limits: FrameLimits,
    /// Mutual TLS on every data connection (`security.ssl.internal.enabled`).
    tls: Option<InternalTls>,
    /// The [`IO_THREADS`] threads that accept and read every plain connection.
    io: tokio::runtime::Runtime,
    /// This TaskManager's network buffers.
    buffers: Arc<NetworkBufferPool>,
}

impl NetworkEnvironment {
    /// Binds the data port (0 = any free port) and starts accepting producers; `limits` bound
    /// the frames of every connection ([`frame_limits`]).
    pub fn start(host: &str, port: u16, limits: FrameLimits) -> Result<Arc<Self>> {
        let buffers = NetworkBufferPool::new(BufferPoolConfig::default());
        Self::start_with_tls(host, port, limits, None, buffers)
    }

    /// [`NetworkEnvironment::start`]; with `tls`, every connection, in and out, is mutual TLS;
    /// the tasks' network buffers come from `buffers`.
    pub fn start_with_tls(
        host: &str,
        port: u16,
        limits: FrameLimits,
        tls: Option<InternalTls>,
        buffers: Arc<NetworkBufferPool>,
    ) -> Result<Arc<Self>> {
        let listener = TcpListener::bind((host, port))
            .map_err(|e| JobError::new(format!("cannot bind the data port {host}:{port}: {e}")))?;
        let address = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(IO_THREADS)
            .max_blocking_threads(IO_THREADS)
            .thread_name("data-io")
            .on_thread_start(|| ON_IO_THREAD.with(|c| c.set(true)))
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                JobError::new(format!("cannot start the data plane's I/O threads: {e}"))
            })?;
        let listener = {
            let _guard = io.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let env = Arc::new(NetworkEnvironment {
            address,
            registry: Mutex::new(HashMap::new()),
            registered: Condvar::new(),
            pending_opens: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            limits,
            tls,
            io,
            buffers,
        });
        let weak = Arc::downgrade(&env);
        env.io.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let Some(env) = weak.upgrade() else { return };
                env.accepted(stream);
            }
        });
        Ok(env)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// This TaskManager's network buffer pool.
    pub fn buffers(&self) -> &Arc<NetworkBufferPool> {
        &self.buffers
    }

    /// Serves an accepted producer connection: plain on the I/O threads, TLS on a thread of its
    /// own (after the handshake).
    fn accepted(self: Arc<Self>, stream: tokio::net::TcpStream) {
        let Ok(stream) = stream.into_std() else {
            return;
        };
        if self.tls.is_some() {
            let _ = std::thread::Builder::new()
                .name("data-in".into())
                .spawn(move || {
                    if stream.set_nonblocking(false).is_ok() {
                        self.serve_tls_producer(stream)
                    }
                });
            return;
        }
        let Ok((conn, stream)) =
            PeerConnection::plain(stream, self.io.handle(), self.limits.max_len)
        else {
            return;
        };
        let env = self.clone();
        self.io.spawn(async move {
            let mut consumer = Consumer::new(&env, &conn);
            let why = read_frames(&stream, &env.limits, |body| consumer.frame(body)).await;
            drop(consumer);
            env.producer_closed(&conn, &why);
        });
    }

    /// Reads one TLS producer connection until it closes or breaks the protocol (then it is
    /// closed).
    fn serve_tls_producer(self: Arc<Self>, stream: TcpStream) {
        // With TLS, a peer without the cluster's certificate fails here: no frame is read.
        let (read_half, stream) = match tls::accept(stream, self.tls.as_ref()) {
            Ok(halves) => halves,
            Err(e) => {
                tracing::warn!("refused a data connection: {e}");
                return;
            }
        };
        if read_half
            .socket()
            .set_read_timeout(Some(self.limits.socket_read_timeout()))
            .is_err()
        {
            return;
        }
        let Ok(conn) = PeerConnection::tls(stream, self.limits.max_len) else {
            return;
        };
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        let mut consumer = Consumer::new(&self, &conn);
        let mut buf = Vec::new();
        let why = loop {
            if let Err(e) = framing::read_frame(&mut reader, &mut buf, &self.limits) {
                break e.to_string();
            }
            if let Err(why) = consumer.frame(&buf) {
                break why;
            }
        };
        drop(consumer);
        self.producer_closed(&conn, &why);
    }

    fn producer_closed(&self, conn: &Arc<PeerConnection>, why: &str) {
        tracing::warn!("closing the data connection from {}: {why}", conn.peer);
        conn.shutdown();
        if let Ok(mut p) = self.pending_opens.lock() {
            p.retain(|_, c| !Arc::ptr_eq(c, conn));
        }
    }

    /// Registers a consuming task's input channel; a remote producer waiting on it gets its
    /// first credits now.
    pub fn register_input(&self, id: ChannelId, endpoint: InputEndpoint) {
        let exclusive = endpoint.gate.exclusive();
        let pending = match self.registry.lock() {
            Ok(mut r) => {
                r.insert(id, endpoint);
                self.pending_opens
                    .lock()
                    .ok()
                    .and_then(|mut p| p.remove(&id))
            }
            Err(_) => None,
        };
        self.registered.notify_all();
        if let Some(conn) = pending {
            conn.send_credit(id, exclusive);
        }
    }

    /// Registers all input channels of a consuming task at once; remote producers waiting on
    /// some of them get their first credits with one frame per connection.
    pub fn register_inputs(&self, inputs: Vec<(ChannelId, InputEndpoint)>) {
        // Per producer connection, the channels it waits on.
        type Grants = Vec<(ChannelId, u32)>;
        let mut waiting: Vec<(Arc<PeerConnection>, Grants)> = Vec::new();
        if let Ok(mut r) = self.registry.lock() {
            let mut pending = self.pending_opens.lock().ok();
            for (id, endpoint) in inputs {
                let exclusive = endpoint.gate.exclusive();
                r.insert(id, endpoint);
                if let Some(conn) = pending.as_mut().and_then(|p| p.remove(&id)) {
                    match waiting.iter_mut().find(|(c, _)| Arc::ptr_eq(c, &conn)) {
                        Some((_, grants)) => grants.push((id, exclusive)),
                        None => waiting.push((conn, vec![(id, exclusive)])),
                    }
                }
            }
        }
        self.registered.notify_all();
        for (conn, grants) in waiting {
            conn.send_credits(&grants);
        }
    }

    pub fn unregister_inputs(&self, ids: &[ChannelId]) {
        if let Ok(mut r) = self.registry.lock() {
            for id in ids {
                r.remove(id);
            }
        }
        if let Ok(mut p) = self.pending_opens.lock() {
            for id in ids {
                p.remove(id);
            }
        }
    }

    /// A writer to a consumer on this TaskManager; waits until the consumer registered.
    pub fn local_writer(
        &self,
        id: ChannelId,
        cancel: Arc<AtomicBool>,
        timeout: Duration,
    ) -> Result<ChannelWriter> {
        let deadline = Instant::now() + timeout;
        let mut r = self
            .registry
            .lock()
            .map_err(|_| JobError::new("registry lock poisoned"))?;
        loop {
            if let Some(ep) = r.get(&id) {
                let segment = self.buffers.config().segment_size as usize;
                return Ok(ChannelWriter::local(ep.clone(), cancel, segment));
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(JobError::new("task canceled"));
            }
            if Instant::now() > deadline {
                return Err(JobError::new(format!(
                    "the consumer of channel {id} did not start within {timeout:?}"
                )));
            }
            r = self
                .registered
                .wait_timeout(r, Duration::from_millis(50))
                .map_err(|_| JobError::new("registry lock poisoned"))?
                .0;
        }
    }

    /// A writer to a consumer on another TaskManager at `addr`.
    pub fn remote_writer(
        &self,
        addr: &str,
        id: ChannelId,
        cancel: Arc<AtomicBool>,
    ) -> Result<ChannelWriter> {
        let conn = self.peer(addr)?;
        let credits = Credits::new(0);
        conn.credits
            .lock()
            .map_err(|_| JobError::new("credit map poisoned"))?
            .insert(id, credits.clone());
        conn.write_frame(OPEN, id, &[])?;
        let segment = self.buffers.config().segment_size as usize;
        Ok(ChannelWriter::remote(conn, id, credits, cancel, segment))
    }

    /// Writers to consumers of the TaskManager at `addr`, one per id in order, opened with one
    /// OPENS frame per [`MAX_IDS_PER_FRAME`] channels.
    pub fn remote_writers(
        &self,
        addr: &str,
        ids: &[ChannelId],
        cancel: &Arc<AtomicBool>,
    ) -> Result<Vec<ChannelWriter>> {
        let conn = self.peer(addr)?;
        let segment = self.buffers.config().segment_size as usize;
        let credits: Vec<Arc<Credits>> = ids.iter().map(|_| Credits::new(0)).collect();
        {
            let mut m = conn
                .credits
                .lock()
                .map_err(|_| JobError::new("credit map poisoned"))?;
            for (id, c) in ids.iter().zip(&credits) {
                m.insert(*id, c.clone());
            }
        }
        for chunk in ids.chunks(MAX_IDS_PER_FRAME) {
            let payload: Vec<u8> = chunk.iter().flat_map(|id| id.to_le_bytes()).collect();
            conn.write_frame(OPENS, 0, &payload)?;
        }
        Ok(ids
            .iter()
            .zip(credits)
            .map(|(&id, c)| ChannelWriter::remote(conn.clone(), id, c, cancel.clone(), segment))
            .collect())
    }

    /// The (cached) connection to a consumer TaskManager; a broken one is replaced.
    fn peer(&self, addr: &str) -> Result<Arc<PeerConnection>> {
        let mut peers = self
            .peers
            .lock()
            .map_err(|_| JobError::new("peer map poisoned"))?;
        if let Some(p) = peers.get(addr) {
            if !p.broken.load(Ordering::Relaxed) {
                return Ok(p.clone());
            }
        }
        let stream = TcpStream::connect(addr).map_err(|e| {
            JobError::new(format!(
                "cannot connect to TaskManager data port {addr}: {e}"
            ))
        })?;
        let conn = if self.tls.is_some() {
            self.tls_peer(stream, addr)?
        } else {
            self.plain_peer(stream)?
        };
        peers.insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// Connects to every consumer TaskManager of `addrs` not connected yet, all at once (a
    /// source of a keyed exchange at -p 400 has 100 of them: one after the other, the connects
    /// alone took most of a second under load). A connect that fails here is left to
    /// [`Self::peer`], which retries it and reports the error; with TLS the handshakes stay
    /// one at a time in `peer`.
    pub fn connect_peers<'a>(&self, addrs: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let addrs: Vec<&str> = addrs.into_iter().collect();
        if self.tls.is_some() || addrs.len() < 2 {
            return Ok(());
        }
        // Held while connecting: the task's siblings wait for these connections, not connect
        // the same peers again.
        let mut peers = self
            .peers
            .lock()
            .map_err(|_| JobError::new("peer map poisoned"))?;
        let missing: Vec<String> = addrs
            .into_iter()
            .filter(|a| {
                peers
                    .get(*a)
                    .is_none_or(|p| p.broken.load(Ordering::Relaxed))
            })
            .map(str::to_string)
            .collect();
        if missing.len() < 2 {
            return Ok(());
        }
        let connected: Vec<(String, std::io::Result<tokio::net::TcpStream>)> =
            self.io.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for addr in missing {
                    set.spawn(async move {
                        let s = tokio::time::timeout(
                            PARALLEL_CONNECT_TIMEOUT,
                            tokio::net::TcpStream::connect(addr.clone()),
                        )
                        .await
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
                        (addr, s)
                    });
                }
                let mut out = Vec::new();
                while let Some(r) = set.join_next().await {
                    out.extend(r.ok());
                }
                out
            });
        for (addr, stream) in connected {
            let Ok(stream) = stream.and_then(|s| s.into_std()) else {
                continue;
            };
            peers.insert(addr, self.plain_peer(stream)?);
        }
        Ok(())
    }

    /// A plain connection to a consumer TaskManager, its credits read on the I/O threads.
    fn plain_peer(&self, stream: TcpStream) -> Result<Arc<PeerConnection>> {
        let (conn, stream) = PeerConnection::plain(stream, self.io.handle(), self.limits.max_len)?;
        let c2 = conn.clone();
        let limits = self.limits.clone();
        let max = self.buffers.config().max_channel_credits();
        self.io.spawn(async move {
            let why = read_frames(&stream, &limits, |body| apply_credit(&c2, body, max)).await;
            producer_connection_closed(&c2, &why);
        });
        Ok(conn)
    }

    /// A TLS connection to a consumer TaskManager, its credits read by a thread of its own.
    fn tls_peer(&self, stream: TcpStream, addr: &str) -> Result<Arc<PeerConnection>> {
        let (read_half, stream) = tls::connect(stream, self.tls.as_ref(), addr).map_err(|e| {
            JobError::new(format!(
                "cannot open a data connection to TaskManager {addr}: {e}"
            ))
        })?;
        read_half
            .socket()
            .set_read_timeout(Some(self.limits.socket_read_timeout()))?;
        let conn = PeerConnection::tls(stream, self.limits.max_len)?;
        let c2 = conn.clone();
        let limits = self.limits.clone();
        let max = self.buffers.config().max_channel_credits();
        std::thread::Builder::new()
            .name("data-credits".into())
            .spawn(move || {
                let mut reader = BufReader::new(read_half);
                let mut buf = Vec::new();
                let why = loop {
                    if let Err(e) = framing::read_frame(&mut reader, &mut buf, &limits) {
                        break e.to_string();
                    }
                    if let Err(why) = apply_credit(&c2, &buf, max) {
                        break why;
                    }
                };
                producer_connection_closed(&c2, &why);
            })?;
        Ok(conn)
    }

    /// Forgets the producer-side credits of channels (their task ended).
    pub fn release_outputs(&self, ids: &[ChannelId]) {
        if let Ok(peers) = self.peers.lock() {
            for p in peers.values() {
                if let Ok(mut c) = p.credits.lock() {
                    for id in ids {
                        c.remove(id);
                    }
                }
            }
        }
    }
}

/// The consumer side of one producer connection: hands the producer's frames to the consuming
/// tasks.
struct Consumer<'a> {
    env: &'a NetworkEnvironment,
    conn: &'a Arc<PeerConnection>,
    /// Cache of endpoints looked up on this connection.
    cache: HashMap<ChannelId, InputEndpoint>,
}

impl<'a> Consumer<'a> {
    fn new(env: &'a NetworkEnvironment, conn: &'a Arc<PeerConnection>) -> Self {
        Consumer {
            env,
            conn,
            cache: HashMap::new(),
        }
    }

    /// One frame's body; `Err(why)` closes the connection.
    fn frame(&mut self, body: &[u8]) -> std::result::Result<(), String> {
        let (id, event) = match decode_frame(body)? {
            DataFrame::Open(id) => {
                // Under the registry lock, so a consumer registering meanwhile either is seen
                // here or finds the pending open (and grants its credits).
                let Ok(registry) = self.env.registry.lock() else {
                    return Err("registry lock poisoned".into());
                };
                if let Some(exclusive) = registry.get(&id).map(|ep| ep.gate.exclusive()) {
                    drop(registry);
                    self.conn.send_credit(id, exclusive);
                } else if let Ok(mut p) = self.env.pending_opens.lock() {
                    p.insert(id, self.conn.clone());
                }
                return Ok(());
            }
            DataFrame::Opens(ids) => {
                let mut grants = Vec::new();
                {
                    // As for OPEN: under the registry lock.
                    let Ok(registry) = self.env.registry.lock() else {
                        return Err("registry lock poisoned".into());
                    };
                    let mut pending = self.env.pending_opens.lock().ok();
                    for id in ids {
                        if let Some(ep) = registry.get(&id) {
                            grants.push((id, ep.gate.exclusive()));
                        } else if let Some(p) = pending.as_mut() {
                            p.insert(id, self.conn.clone());
                        }
                    }
                }
                self.conn.send_credits(&grants);
                return Ok(());
            }
            DataFrame::Credit(id, _) => {
                return Err(format!(
                    "a producer sent a credit (channel {id}); credits flow from consumers"
                ))
            }
            DataFrame::Credits(_) => {
                return Err("a producer sent credits; credits flow from consumers".into())
            }
            DataFrame::Multi(events) => {
                // Expanded in order: each event reaches its channel's queue as if it had come
                // in a frame of its own.
                for event in events {
                    if let Some((id, event)) = channel_event(event) {
                        self.deliver(id, event)?;
                    }
                }
                return Ok(());
            }
            event => match channel_event(event) {
                Some(e) => e,
                None => return Ok(()),
            },
        };
        self.deliver(id, event)
    }

    /// Hands one event to the task that consumes channel `id`.
    fn deliver(&mut self, id: ChannelId, event: ChannelEvent) -> std::result::Result<(), String> {
        let ep = match self.cache.get(&id) {
            Some(ep) => ep.clone(),
            None => match self
                .env
                .registry
                .lock()
                .ok()
                .and_then(|r| r.get(&id).cloned())
            {
                Some(ep) => {
                    self.cache.insert(id, ep.clone());
                    ep
                }
                None => return Ok(()), // an older deployment's channel
            },
        };
        let credit = CreditReturn::remote(ep.gate.clone(), ep.index, self.conn.clone(), id);
        credit.arrived();
        let item = MailboxItem::Channel {
            index: ep.index,
            event,
            credit,
        };
        // A mailbox holds its channels' credits, so a producer within its credits never finds
        // it full; if it ever is (control messages), wait without stalling the I/O thread's
        // other connections.
        let sent = match ep.mailbox.try_send(item) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::TrySendError::Full(item)) => {
                if ON_IO_THREAD.with(|c| c.get()) {
                    tokio::task::block_in_place(|| ep.mailbox.send(item)).map_err(|_| ())
                } else {
                    ep.mailbox.send(item).map_err(|_| ())
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(()),
        };
        if sent.is_err() {
            self.cache.remove(&id); // the task ended
        }
        Ok(())
    }
}

/// The channel event a data frame carries (`None` for the other kinds).
fn channel_event(frame: DataFrame<'_>) -> Option<(ChannelId, ChannelEvent)> {
    Some(match frame {
        DataFrame::Batch(id, b) => (id, ChannelEvent::Batch(Payload::Bytes(b.to_vec()))),
        DataFrame::Watermark(id, wm) => (id, ChannelEvent::Watermark(wm)),
        DataFrame::Barrier(id, c) => (id, ChannelEvent::Barrier(c)),
        DataFrame::EndOfData(id) => (id, ChannelEvent::EndOfData),
        DataFrame::End(id) => (id, ChannelEvent::EndOfPartition),
        _ => return None,
    })
}

/// Applies one frame a consumer sent on a producer connection. A consumer never grants a
/// channel more credits than it has buffers for (`max`: exclusive + floating per gate), so one
/// that does is refused (the connection closes) instead of clamped into place.
fn apply_credit(conn: &PeerConnection, body: &[u8], max: u32) -> std::result::Result<(), String> {
    let grant = |id: ChannelId, n: u32| {
        let c = conn.credits.lock().ok().and_then(|m| m.get(&id).cloned());
        if let Some(c) = c {
            if let Err(had) = c.grant_within(n, max) {
                return Err(format!(
                    "a credit of {n} on channel {id}, which already has {had} of at most \
                     {max} (taskmanager.network.memory.buffers-per-channel + \
                     floating-buffers-per-gate)"
                ));
            }
        }
        Ok(())
    };
    match decode_frame(body)? {
        DataFrame::Credit(id, n) => grant(id, n),
        DataFrame::Credits(grants) => grants.into_iter().try_for_each(|(id, n)| grant(id, n)),
        other => Err(format!("a consumer sent {other:?}; only credits flow back")),
    }
}

/// A producer connection ended: close it and wake every producer waiting for credits, whose next
/// write fails with the broken connection instead of hanging until it is canceled.
fn producer_connection_closed(conn: &PeerConnection, why: &str) {
    if !conn.broken.load(Ordering::Relaxed) {
        tracing::warn!("closing the data connection to {}: {why}", conn.peer);
    }
    conn.shutdown();
    if let Ok(m) = conn.credits.lock() {
        for c in m.values() {
            c.grant(MAX_CHANNEL_CREDITS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::channel::Credits;
    use std::io::Read;
    use std::sync::mpsc::{sync_channel, Receiver};

    const MAX: u32 = 64 * 1024;

    fn start_env() -> Arc<NetworkEnvironment> {
        NetworkEnvironment::start(
            "127.0.0.1",
            0,
            frame_limits(MAX, Duration::from_millis(300)),
        )
        .expect("start the data plane")
    }

    const EXCLUSIVE: u32 = 2;

    fn endpoint(index: u32) -> (InputEndpoint, Receiver<MailboxItem>) {
        let (tx, rx) = sync_channel(64);
        let ep = InputEndpoint {
            mailbox: tx,
            index,
            local_credits: Credits::new(EXCLUSIVE),
            gate: crate::task::buffers::GateBuffers::new(index as usize + 1, EXCLUSIVE, 8),
        };
        (ep, rx)
    }

    fn raw_frame(kind: u8, id: ChannelId, payload: &[u8]) -> Vec<u8> {
        let mut f = ((FRAME_HEAD + payload.len()) as u32).to_le_bytes().to_vec();
        f.push(kind);
        f.extend_from_slice(&id.to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Whether the peer closes `s` within 10 s (a bound on a hang, not a speed requirement),
    /// discarding whatever it sends before.
    fn closed_by_peer(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut b = [0u8; 256];
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// A consumer's channel 5 still gets a producer's watermark through `env`.
    fn still_serves(env: &Arc<NetworkEnvironment>, producer: &Arc<NetworkEnvironment>, id: u64) {
        let (ep, rx) = endpoint(0);
        env.register_input(id, ep);
        let w = producer
            .remote_writer(
                &env.address().to_string(),
                id,
                Arc::new(AtomicBool::new(false)),
            )
            .expect("a writer");
        w.send(ChannelEvent::Watermark(77)).expect("send");
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(MailboxItem::Channel {
                event: ChannelEvent::Watermark(77),
                ..
            }) => {}
            _ => panic!("the watermark did not arrive"),
        }
    }

    #[test]
    fn malformed_frames_close_their_connection_and_the_port_keeps_serving() {
        let env = start_env();
        let producer = start_env();
        let garbage: Vec<Vec<u8>> = vec![
            raw_frame(99, 1, &[]),
            raw_frame(CREDIT, 1, &u32::MAX.to_le_bytes()),
            raw_frame(WATERMARK, 1, &[1]),
            raw_frame(OPENS, 1, &7u64.to_le_bytes()),
            raw_frame(OPENS, 0, &[1, 2, 3]),
            raw_frame(OPENS, 0, &[]),
            raw_frame(OPENS, 0, &vec![0; (MAX_IDS_PER_FRAME + 1) * 8]),
            raw_frame(CREDITS, 0, &[0; 12]),
            raw_frame(MULTI, 1, &raw_frame(END, 1, &[])),
            raw_frame(MULTI, 0, &[]),
            raw_frame(MULTI, 0, &raw_frame(OPEN, 1, &[])),
            raw_frame(MULTI, 0, &raw_frame(CREDIT, 1, &1u32.to_le_bytes())),
            raw_frame(MULTI, 0, &raw_frame(MULTI, 0, &raw_frame(END, 1, &[]))),
            raw_frame(MULTI, 0, &raw_frame(WATERMARK, 1, &[1])),
            raw_frame(MULTI, 0, &raw_frame(END, 1, &[])[..10]),
            raw_frame(MULTI, 0, &[1, 0]),
            vec![3, 0, 0, 0, 1, 2, 3],
            (500u32 << 20).to_le_bytes().to_vec(),
            (MAX + 1).to_le_bytes().to_vec(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ];
        for bytes in garbage {
            let mut s = TcpStream::connect(env.address()).expect("connect");
            s.write_all(&bytes).expect("send garbage");
            assert!(closed_by_peer(&mut s), "{bytes:?} left the connection open");
        }
        still_serves(&env, &producer, 5);
    }

    #[test]
    fn a_peer_that_sends_part_of_a_frame_and_stops_is_dropped() {
        let env = start_env();
        let frame = raw_frame(WATERMARK, 1, &5i64.to_le_bytes());
        let mut s = TcpStream::connect(env.address()).expect("connect");
        for b in &frame[..6] {
            s.write_all(&[*b]).expect("send a byte");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            closed_by_peer(&mut s),
            "a stalled frame kept its connection"
        );
    }

    #[test]
    fn an_idle_connection_between_frames_is_kept() {
        let env = start_env();
        let mut s = TcpStream::connect(env.address()).expect("connect");
        s.write_all(&raw_frame(OPEN, 3, &[])).expect("open");
        // Three frame timeouts of silence: a data connection may idle for as long as it likes.
        std::thread::sleep(Duration::from_millis(900));
        let (ep, rx) = endpoint(0);
        env.register_input(3, ep);
        let mut credit = [0u8; 4 + FRAME_HEAD + 4];
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.read_exact(&mut credit)
            .expect("the pending open gets its credits");
        assert_eq!(
            decode_frame(&credit[4..]),
            Ok(DataFrame::Credit(3, EXCLUSIVE))
        );
        s.write_all(&raw_frame(BARRIER, 3, &9u64.to_le_bytes()))
            .expect("barrier");
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(MailboxItem::Channel {
                event: ChannelEvent::Barrier(9),
                ..
            })
        ));
    }

    #[test]
    fn a_consumer_granting_more_credits_than_a_channel_holds_breaks_the_connection() {
        let producer = start_env();
        let consumer = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = consumer.local_addr().expect("address").to_string();
        let cancel = Arc::new(AtomicBool::new(false));
        let w = producer.remote_writer(&addr, 4, cancel).expect("a writer");
        let (mut s, _) = consumer.accept().expect("accept");
        let mut open = [0u8; 4 + FRAME_HEAD];
        s.read_exact(&mut open).expect("the OPEN frame");
        // Exclusive + floating per gate: all a channel can hold.
        let max = BufferPoolConfig::default().max_channel_credits();
        s.write_all(&raw_frame(CREDIT, 4, &max.to_le_bytes()))
            .expect("credits");
        s.write_all(&raw_frame(CREDIT, 4, &1u32.to_le_bytes()))
            .expect("one credit too many");
        assert!(
            closed_by_peer(&mut s),
            "the over-granting consumer stayed connected"
        );
        // The producer is not left waiting: its sends fail once the connection is broken.
        let failed = (0..=max + 1).any(|_| w.send(ChannelEvent::Watermark(1)).is_err());
        assert!(failed, "sends on a broken connection kept succeeding");
    }

    #[test]
    fn a_batch_above_the_frame_size_fails_the_sender_naming_the_key() {
        let env = start_env();
        let producer = start_env();
        let (ep, _rx) = endpoint(0);
        env.register_input(8, ep);
        let w = producer
            .remote_writer(
                &env.address().to_string(),
                8,
                Arc::new(AtomicBool::new(false)),
            )
            .expect("a writer");
        let e = w
            .send(ChannelEvent::Batch(Payload::Bytes(vec![0; MAX as usize])))
            .expect_err("too big");
        assert!(e.to_string().contains(MAX_FRAME_KEY), "{e}");
    }

    #[test]
    fn credits_frames_are_checked_entry_by_entry() {
        let mut payload = 5u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&MAX_CHANNEL_CREDITS.to_le_bytes());
        payload.extend_from_slice(&6u64.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            decode_frame(&raw_frame(CREDITS, 0, &payload)[4..]),
            Ok(DataFrame::Credits(vec![(5, MAX_CHANNEL_CREDITS), (6, 1)]))
        );
        payload[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode_frame(&raw_frame(CREDITS, 0, &payload)[4..]),
            Err(format!(
                "a credit of 0 on channel 5: a channel holds 1 to {MAX_CHANNEL_CREDITS}"
            ))
        );
        assert!(decode_frame(&raw_frame(CREDITS, 0, &payload[..11])[4..]).is_err());
    }

    /// Reads one frame's body from a blocking socket.
    fn read_body(s: &mut TcpStream) -> Vec<u8> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("a frame length");
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut body).expect("a frame body");
        body
    }

    #[test]
    fn a_task_opens_its_channels_to_one_peer_with_one_frame_per_4096_and_one_credits_frame_grants_them(
    ) {
        let producer = start_env();
        let consumer = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = consumer.local_addr().expect("address").to_string();
        let ids: Vec<ChannelId> = (1..=5000).collect();
        let cancel = Arc::new(AtomicBool::new(false));
        let writers = producer
            .remote_writers(&addr, &ids, &cancel)
            .expect("writers");
        assert_eq!(writers.len(), 5000);
        let (mut s, _) = consumer.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut opened = Vec::new();
        for expected in [MAX_IDS_PER_FRAME, 5000 - MAX_IDS_PER_FRAME] {
            match decode_frame(&read_body(&mut s)) {
                Ok(DataFrame::Opens(ids)) => {
                    assert_eq!(ids.len(), expected);
                    opened.extend(ids);
                }
                other => panic!("expected OPENS, got {other:?}"),
            }
        }
        assert_eq!(opened, ids, "every channel once, in order");
        // Nothing else was sent: no OPEN per channel.
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut b = [0u8; 1];
        assert!(s.read(&mut b).is_err(), "more than the OPENS frames");
        // One CREDITS frame for the first 3 channels: exactly those can send.
        let mut grants = Vec::new();
        for id in 1..=3u64 {
            grants.extend_from_slice(&id.to_le_bytes());
            grants.extend_from_slice(&1u32.to_le_bytes());
        }
        s.write_all(&raw_frame(CREDITS, 0, &grants))
            .expect("credits");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        for (k, w) in writers[..3].iter().enumerate() {
            w.send(ChannelEvent::Watermark(k as i64)).expect("send");
            assert_eq!(
                decode_frame(&read_body(&mut s)),
                Ok(DataFrame::Watermark(k as u64 + 1, k as i64))
            );
        }
    }

    #[test]
    fn channels_opened_together_reach_registered_and_later_registered_consumers() {
        let env = start_env();
        let producer = start_env();
        let (a, rx_a) = endpoint(0);
        let (b, rx_b) = endpoint(1);
        env.register_inputs(vec![(21, a.clone()), (22, b)]);
        let cancel = Arc::new(AtomicBool::new(false));
        let writers = producer
            .remote_writers(&env.address().to_string(), &[21, 22, 23, 24], &cancel)
            .expect("writers");
        for (w, wm) in writers.iter().zip([1, 2]) {
            w.send(ChannelEvent::Watermark(wm)).expect("send");
        }
        let got = |rx: &Receiver<MailboxItem>| match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(MailboxItem::Channel {
                index,
                event: ChannelEvent::Watermark(wm),
                ..
            }) => (index, wm),
            _ => panic!("no watermark"),
        };
        assert_eq!(got(&rx_a), (0, 1));
        assert_eq!(got(&rx_b), (1, 2));
        // 23 and 24 were pending: registering them grants their first credits.
        let (c, rx_c) = endpoint(2);
        let (d, rx_d) = endpoint(3);
        env.register_inputs(vec![(23, c), (24, d)]);
        writers[2].send(ChannelEvent::Watermark(3)).expect("send");
        writers[3].send(ChannelEvent::Watermark(4)).expect("send");
        assert_eq!(got(&rx_c), (2, 3));
        assert_eq!(got(&rx_d), (3, 4));
    }

    /// A record writer over `writers` (rebalance: record k goes to channel k mod n).
    fn rebalance_writer(writers: Vec<ChannelWriter>) -> crate::task::writer::RecordWriter<u64> {
        crate::task::writer::RecordWriter::new(
            writers,
            crate::task::writer::Partitioner::Rebalance(0),
            Arc::new(crate::task::metrics::TaskMetrics::default()),
        )
    }

    #[test]
    fn a_multi_channel_frame_decodes_to_its_events_in_order() {
        let mut payload = raw_frame(BATCH, 3, b"abc");
        payload.extend(raw_frame(BARRIER, 3, &9u64.to_le_bytes()));
        payload.extend(raw_frame(END_OF_DATA, 4, &[]));
        assert_eq!(
            decode_frame(&raw_frame(MULTI, 0, &payload)[4..]),
            Ok(DataFrame::Multi(vec![
                DataFrame::Batch(3, b"abc"),
                DataFrame::Barrier(3, 9),
                DataFrame::EndOfData(4),
            ]))
        );
        let nested = raw_frame(MULTI, 0, &raw_frame(OPEN, 2, &[]));
        assert_eq!(
            decode_frame(&nested[4..]),
            Err("a multi-channel frame carries Open(2); only channel events may".into())
        );
    }

    #[test]
    fn a_flush_and_a_broadcast_send_one_frame_per_peer_for_all_its_channels() {
        use crate::task::chain::{Control, Emit};
        let producer = start_env();
        let consumer = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = consumer.local_addr().expect("address").to_string();
        let ids: Vec<ChannelId> = (1..=4).collect();
        let cancel = Arc::new(AtomicBool::new(false));
        let writers = producer
            .remote_writers(&addr, &ids, &cancel)
            .expect("writers");
        let (mut s, _) = consumer.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        assert!(matches!(
            decode_frame(&read_body(&mut s)),
            Ok(DataFrame::Opens(_))
        ));
        let mut grants = Vec::new();
        for id in &ids {
            grants.extend_from_slice(&id.to_le_bytes());
            grants.extend_from_slice(&2u32.to_le_bytes());
        }
        s.write_all(&raw_frame(CREDITS, 0, &grants))
            .expect("credits");
        // Let the producer's I/O thread apply them: a channel still without credit would send
        // what was gathered before it (correct, but not what this test looks at).
        std::thread::sleep(Duration::from_millis(500));
        let mut w = rebalance_writer(writers);
        // Records on channels 1, 2 and 3 (not 4), then a flush: one frame with three batches.
        w.records(&mut vec![10, 11, 12]).expect("records");
        w.flush().expect("flush");
        let body = read_body(&mut s);
        let Ok(DataFrame::Multi(events)) = decode_frame(&body) else {
            panic!("expected one MULTI frame, got {:?}", decode_frame(&body));
        };
        let batches: Vec<(ChannelId, Vec<u64>)> = events
            .iter()
            .map(|e| match e {
                DataFrame::Batch(id, b) => (*id, bincode::deserialize(b).expect("a batch")),
                other => panic!("expected batches, got {other:?}"),
            })
            .collect();
        assert_eq!(batches, vec![(1, vec![10]), (2, vec![11]), (3, vec![12])]);
        // A record on channel 4, then a watermark: the watermark on every channel, behind
        // channel 4's batch, all in one frame.
        w.records(&mut vec![13]).expect("records");
        w.watermark(77).expect("watermark");
        let body = read_body(&mut s);
        let Ok(DataFrame::Multi(events)) = decode_frame(&body) else {
            panic!("expected one MULTI frame, got {:?}", decode_frame(&body));
        };
        let batch = bincode::serialize(&vec![13u64]).expect("serialize");
        assert_eq!(
            events,
            [
                DataFrame::Watermark(1, 77),
                DataFrame::Watermark(2, 77),
                DataFrame::Watermark(3, 77),
                DataFrame::Batch(4, &batch),
                DataFrame::Watermark(4, 77)
            ]
        );
        // Nothing else was written: no frame per channel.
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut b = [0u8; 1];
        assert!(s.read(&mut b).is_err(), "more than one frame per flush");
    }

    #[test]
    fn a_gathered_frame_reaches_each_consumer_in_order_and_waits_for_one_that_registers_late() {
        use crate::task::chain::{Control, Emit};
        let env = start_env();
        let producer = start_env();
        let (a, rx_a) = endpoint(0);
        let (b, rx_b) = endpoint(1);
        env.register_inputs(vec![(41, a), (42, b)]);
        let cancel = Arc::new(AtomicBool::new(false));
        let writers = producer
            .remote_writers(&env.address().to_string(), &[41, 42, 43], &cancel)
            .expect("writers");
        let mut w = rebalance_writer(writers);
        // Channel 43 has no consumer yet, so no credit: the writer sends what it gathered for
        // 41 and 42 and waits for 43's credit.
        let sender = std::thread::spawn(move || {
            w.records(&mut vec![1, 2, 3, 4]).expect("records");
            w.end_of_input().expect("end of data");
        });
        let next = |rx: &Receiver<MailboxItem>| match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(MailboxItem::Channel { event, credit, .. }) => {
                credit.release();
                match event {
                    ChannelEvent::Batch(Payload::Bytes(b)) => {
                        format!("{:?}", bincode::deserialize::<Vec<u64>>(&b).expect("batch"))
                    }
                    ChannelEvent::EndOfData => "end of data".to_string(),
                    _ => "other".to_string(),
                }
            }
            _ => "nothing".to_string(),
        };
        // What was gathered for 41 and 42 went out before the wait: each channel in order.
        assert_eq!(next(&rx_a), "[1, 4]");
        assert_eq!(next(&rx_a), "end of data");
        assert_eq!(next(&rx_b), "[2]");
        assert_eq!(next(&rx_b), "end of data");
        assert!(!sender.is_finished(), "sent on 43 without its credit");
        let (c, rx_c) = endpoint(2);
        env.register_inputs(vec![(43, c)]);
        assert_eq!(next(&rx_c), "[3]");
        assert_eq!(next(&rx_c), "end of data");
        sender.join().expect("the sender finished");
    }
}
