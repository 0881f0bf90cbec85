//! The data plane between TaskManagers: one TCP connection per (producer TM, consumer TM) pair,
//! multiplexing the logical channels of every job, with credits flowing back on the same
//! connection.
//!
//! Frame: `u32 length | u8 kind | u64 channel id | payload`. Producer → consumer: OPEN, BATCH
//! (bincode `Vec<T>`), WATERMARK (i64), BARRIER (u64), END_OF_DATA, END. Consumer → producer:
//! CREDIT (u32).
//! A producer opens a channel and waits for credits; the consumer grants the first credits only
//! once the consuming task registered the channel, so nothing is ever sent into the void.
//! Data for an unknown channel (an older deployment's) is dropped.

use crate::error::{JobError, Result};
use crate::task::channel::{
    ChannelEvent, ChannelId, ChannelWriter, CreditReturn, Credits, InputEndpoint, MailboxItem,
    Payload, CHANNEL_CREDITS,
};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
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

/// Largest frame accepted (a corrupt length must not allocate gigabytes).
const MAX_FRAME: u32 = 256 << 20;

/// One TCP connection to a peer TaskManager (either direction).
pub struct PeerConnection {
    writer: Mutex<BufWriter<TcpStream>>,
    /// Producer side: credits per channel, granted by the consumer.
    credits: Mutex<HashMap<ChannelId, Arc<Credits>>>,
    broken: AtomicBool,
    peer: String,
}

impl PeerConnection {
    fn new(stream: TcpStream) -> Result<Arc<Self>> {
        stream.set_nodelay(true)?;
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        Ok(Arc::new(PeerConnection {
            writer: Mutex::new(BufWriter::with_capacity(64 * 1024, stream)),
            credits: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
            peer,
        }))
    }

    fn write_frame(&self, kind: u8, id: ChannelId, payload: &[u8]) -> Result<()> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(JobError::new(format!(
                "data connection to TaskManager {} is broken",
                self.peer
            )));
        }
        let mut w = self
            .writer
            .lock()
            .map_err(|_| JobError::new("connection lock poisoned"))?;
        let len = (1 + 8 + payload.len()) as u32;
        let r = (|| {
            w.write_all(&len.to_le_bytes())?;
            w.write_all(&[kind])?;
            w.write_all(&id.to_le_bytes())?;
            w.write_all(payload)?;
            w.flush()
        })();
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
}

fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<(u8, ChannelId)> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)?;
    let len = u32::from_le_bytes(head);
    if !(9..=MAX_FRAME).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    buf.resize(len as usize, 0);
    r.read_exact(buf)?;
    let kind = buf[0];
    let id = u64::from_le_bytes(buf[1..9].try_into().unwrap_or([0; 8]));
    Ok((kind, id))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.get(..8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8]))
}

/// A TaskManager's data plane: the listener, the registry of input channels, and the outgoing
/// connections.
pub struct NetworkEnvironment {
    address: SocketAddr,
    registry: Mutex<HashMap<ChannelId, InputEndpoint>>,
    registered: Condvar,
    /// Remote producers that opened a channel before its consumer registered.
    pending_opens: Mutex<HashMap<ChannelId, Arc<PeerConnection>>>,
    peers: Mutex<HashMap<String, Arc<PeerConnection>>>,
}

impl NetworkEnvironment {
    /// Binds the data port (0 = any free port) and starts accepting producers.
    pub fn start(host: &str, port: u16) -> Result<Arc<Self>> {
        let listener = TcpListener::bind((host, port))
            .map_err(|e| JobError::new(format!("cannot bind the data port {host}:{port}: {e}")))?;
        let address = listener.local_addr()?;
        let env = Arc::new(NetworkEnvironment {
            address,
            registry: Mutex::new(HashMap::new()),
            registered: Condvar::new(),
            pending_opens: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&env);
        std::thread::Builder::new()
            .name("data-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Some(env) = weak.upgrade() else { return };
                    let Ok(stream) = stream else { continue };
                    let env2 = env.clone();
                    let _ = std::thread::Builder::new()
                        .name("data-in".into())
                        .spawn(move || env2.serve_producer(stream));
                }
            })?;
        Ok(env)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Reads one producer connection until it closes.
    fn serve_producer(self: Arc<Self>, stream: TcpStream) {
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let Ok(conn) = PeerConnection::new(stream) else {
            return;
        };
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        let mut buf = Vec::new();
        // Cache of endpoints looked up on this connection.
        let mut cache: HashMap<ChannelId, InputEndpoint> = HashMap::new();
        while let Ok((kind, id)) = read_frame(&mut reader, &mut buf) {
            let payload = &buf[9..];
            if kind == OPEN {
                let ep = self.registry.lock().ok().and_then(|r| r.get(&id).cloned());
                match ep {
                    Some(_) => conn.send_credit(id, CHANNEL_CREDITS),
                    None => {
                        if let Ok(mut p) = self.pending_opens.lock() {
                            p.insert(id, conn.clone());
                        }
                    }
                }
                continue;
            }
            let ep = match cache.get(&id) {
                Some(ep) => ep.clone(),
                None => match self.registry.lock().ok().and_then(|r| r.get(&id).cloned()) {
                    Some(ep) => {
                        cache.insert(id, ep.clone());
                        ep
                    }
                    None => continue, // an older deployment's channel
                },
            };
            let event = match kind {
                BATCH => ChannelEvent::Batch(Payload::Bytes(payload.to_vec())),
                WATERMARK => ChannelEvent::Watermark(le_u64(payload) as i64),
                BARRIER => ChannelEvent::Barrier(le_u64(payload)),
                END_OF_DATA => ChannelEvent::EndOfData,
                END => ChannelEvent::EndOfPartition,
                _ => continue,
            };
            let item = MailboxItem::Channel {
                index: ep.index,
                event,
                credit: CreditReturn::Remote(conn.clone(), id),
            };
            if ep.mailbox.send(item).is_err() {
                cache.remove(&id); // the task ended
            }
        }
    }

    /// Registers a consuming task's input channel; a remote producer waiting on it gets its
    /// first credits now.
    pub fn register_input(&self, id: ChannelId, endpoint: InputEndpoint) {
        if let Ok(mut r) = self.registry.lock() {
            r.insert(id, endpoint);
        }
        self.registered.notify_all();
        let pending = self
            .pending_opens
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&id));
        if let Some(conn) = pending {
            conn.send_credit(id, CHANNEL_CREDITS);
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
                return Ok(ChannelWriter::local(ep.clone(), cancel));
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
        Ok(ChannelWriter::remote(conn, id, credits, cancel))
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
        let read_half = stream.try_clone()?;
        let conn = PeerConnection::new(stream)?;
        let c2 = conn.clone();
        std::thread::Builder::new()
            .name("data-credits".into())
            .spawn(move || {
                let mut reader = BufReader::new(read_half);
                let mut buf = Vec::new();
                while let Ok((kind, id)) = read_frame(&mut reader, &mut buf) {
                    if kind == CREDIT {
                        let n = u32::from_le_bytes(buf[9..13].try_into().unwrap_or([0; 4]));
                        let c = c2.credits.lock().ok().and_then(|m| m.get(&id).cloned());
                        if let Some(c) = c {
                            c.grant(n);
                        }
                    }
                }
                // Wake every producer waiting for credits: its next write fails with the broken
                // connection instead of hanging until it is canceled.
                c2.broken.store(true, Ordering::Relaxed);
                if let Ok(m) = c2.credits.lock() {
                    for c in m.values() {
                        c.grant(u32::MAX / 2);
                    }
                }
            })?;
        peers.insert(addr.to_string(), conn.clone());
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
