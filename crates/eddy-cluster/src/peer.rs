//! The sending side of one RPC connection: a bounded queue drained by a writer thread that
//! writes with a timeout, so no caller — the JobManager loop, a TaskManager's task threads —
//! ever blocks on a peer that stopped reading (paused, partitioned, overloaded).
//!
//! A full queue or a write that times out closes the connection: the reader on either side
//! sees it at once, and the usual loss handling runs (the JobManager fails that TaskManager's
//! tasks; the TaskManager cancels them and registers again). Dropping a `Peer` closes the
//! connection gracefully: the writer sends what is queued, then shuts the socket down.

use crate::rpc::write_message;
use eddy_core::tls::ConnWriter;
use serde::Serialize;
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;

/// Messages queued per connection before the peer counts as not reading.
pub const QUEUE_CAPACITY: usize = 4096;

/// Why a message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The peer did not drain its queue: the connection was closed.
    Overloaded,
    /// The connection is closed already.
    Closed,
}

pub struct Peer<M> {
    queue: SyncSender<M>,
    stream: TcpStream,
}

impl<M: Serialize + Send + 'static> Peer<M> {
    /// Starts the writer thread for `stream`; a single write may block at most `write_timeout`.
    pub fn start(
        stream: impl Into<ConnWriter>,
        write_timeout: Duration,
        name: &str,
    ) -> std::io::Result<Self> {
        Self::with_capacity(stream, write_timeout, name, QUEUE_CAPACITY)
    }

    /// `stream`: the socket, or the writing half of a TLS connection.
    pub fn with_capacity(
        stream: impl Into<ConnWriter>,
        write_timeout: Duration,
        name: &str,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let mut out: ConnWriter = stream.into();
        let stream = out.socket().try_clone()?;
        out.socket()
            .set_write_timeout(Some(write_timeout.max(Duration::from_millis(1))))?;
        let (queue, rx) = sync_channel::<M>(capacity);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for msg in rx {
                    if let Err(e) = write_message(&mut out, &msg) {
                        tracing::debug!("closing a connection whose peer does not read: {e}");
                        break;
                    }
                }
                let _ = out.shutdown();
            })?;
        Ok(Peer { queue, stream })
    }

    /// Queues `msg` without blocking. A full queue closes the connection.
    pub fn send(&self, msg: M) -> Result<(), SendError> {
        match self.queue.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.abort();
                Err(SendError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(SendError::Closed),
        }
    }

    /// Closes the connection at once; queued messages are dropped.
    pub fn abort(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::read_message;
    use std::io::BufReader;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn messages_arrive_in_order_and_drop_drains_the_queue() {
        let (a, b) = pair();
        let peer = Peer::start(a, Duration::from_secs(5), "test-writer").unwrap();
        for i in 0..100u64 {
            peer.send(i).unwrap();
        }
        drop(peer);
        let mut r = BufReader::new(b);
        let limits = crate::rpc::rpc_limits(&eddy_core::config::Config::default());
        let got: Vec<u64> = (0..100)
            .map(|_| read_message(&mut r, &limits).unwrap())
            .collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert!(
            read_message::<u64>(&mut r, &limits).is_err(),
            "closed after draining"
        );
    }

    #[test]
    fn a_peer_that_never_reads_never_blocks_the_sender_and_gets_disconnected() {
        let (a, b) = pair(); // b never reads
        let peer = Peer::with_capacity(a, Duration::from_millis(200), "test-writer", 8).unwrap();
        let big = vec![7u8; 256 << 10];
        let mut refused = None;
        for i in 0..10_000 {
            if let Err(e) = peer.send(big.clone()) {
                refused = Some((i, e));
                break;
            }
        }
        // Every send returned at once; the queue filled or the writer gave up and closed.
        assert!(refused.is_some(), "a peer that never reads must be cut off");
        drop(b);
    }
}
