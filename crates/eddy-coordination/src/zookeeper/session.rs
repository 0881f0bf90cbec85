//! A ZooKeeper session's credentials (id and password), learnt from the handshake, and ending
//! the session of a process known dead, so its ephemeral nodes vanish at once instead of after
//! the session timeout.
//!
//! `zookeeper-client` 0.11 can resume a session only from its own `SessionInfo`, whose password
//! it never exposes, so both halves speak the ZooKeeper wire protocol (jute) directly:
//!
//! * [`SessionRelay`] sits between this process's client and each ZooKeeper server on
//!   127.0.0.1: it copies every byte unchanged both ways and decodes only the first frame the
//!   server sends on a connection, the `ConnectResponse` (protocol version, timeout, session id,
//!   password). Every session the client establishes or resumes is published.
//! * [`close_session`] opens a plain TCP connection, sends a `ConnectRequest` carrying the id and
//!   password (which resumes the session) and then a `closeSession` request: ZooKeeper deletes
//!   the session's ephemeral nodes and answers.
//!
//! Must never close a session on a guess: [`close_session`] is for a process whose death was
//! observed (`waitpid`); nothing here decides that. Even a failed attempt is not harmless for a
//! live holder: ZooKeeper drops the connection that currently holds a session as soon as anyone
//! tries to resume it, before it checks the password (seen with 3.8; see the tests).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream as AsyncTcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `closeSession` in ZooKeeper's `OpCode`.
const OP_CLOSE_SESSION: i32 = -11;
/// Largest handshake frame accepted (a ConnectResponse is about 40 bytes).
const MAX_HANDSHAKE_FRAME: usize = 4096;

/// What ends a ZooKeeper session from outside: its id and password (and the timeout it was
/// negotiated with, for the record).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredentials {
    pub id: i64,
    pub password: Vec<u8>,
    pub timeout_ms: i32,
}

impl std::fmt::Debug for SessionCredentials {
    // The password is a secret: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SessionCredentials {{ id: {:#x}, timeout_ms: {} }}",
            self.id, self.timeout_ms
        )
    }
}

/// Decodes a `ConnectResponse` body (after the length prefix): `int protocolVersion, int timeOut,
/// long sessionId, buffer passwd[, bool readOnly]`. `None` when it is malformed or refuses the
/// session (ZooKeeper answers an expired or unknown session with id 0 and timeout 0).
pub fn decode_connect_response(body: &[u8]) -> Option<SessionCredentials> {
    let int = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?))
    };
    let timeout_ms = int(4)?;
    let id = i64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    let len = usize::try_from(int(16)?).ok()?;
    let password = body.get(20..20 + len)?.to_vec();
    (id != 0 && timeout_ms > 0).then_some(SessionCredentials {
        id,
        password,
        timeout_ms,
    })
}

/// A framed `ConnectRequest` resuming `creds`: `int protocolVersion (0), long lastZxidSeen (0),
/// int timeOut, long sessionId, buffer passwd, bool readOnly (false)`.
fn encode_connect_request(creds: &SessionCredentials) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes());
    body.extend_from_slice(&creds.timeout_ms.max(1).to_be_bytes());
    body.extend_from_slice(&creds.id.to_be_bytes());
    body.extend_from_slice(&(creds.password.len() as i32).to_be_bytes());
    body.extend_from_slice(&creds.password);
    body.push(0);
    frame(&body)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_HANDSHAKE_FRAME)
        .ok_or_else(|| std::io::Error::other(format!("bad frame length {len}")))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(body)
}

/// How [`close_session`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// ZooKeeper closed the session; its ephemeral nodes are gone.
    Closed,
    /// ZooKeeper no longer knew the session (it had expired or was closed already).
    AlreadyEnded,
}

/// Ends the session `creds` at one of the `host:port` servers of `quorum` (a chroot suffix is
/// ignored), trying each in turn; each attempt is bounded by `timeout`.
pub fn close_session(
    quorum: &str,
    creds: &SessionCredentials,
    timeout: Duration,
) -> Result<CloseOutcome, String> {
    let mut errors = Vec::new();
    for server in servers(quorum) {
        match close_at(&server, creds, timeout) {
            Ok(outcome) => return Ok(outcome),
            Err(e) => errors.push(format!("{server}: {e}")),
        }
    }
    Err(format!(
        "cannot close ZooKeeper session {:#x} at '{quorum}': {}",
        creds.id,
        if errors.is_empty() {
            "no server in the quorum".to_string()
        } else {
            errors.join("; ")
        }
    ))
}

/// The `host:port` entries of a connect string, without a chroot suffix.
fn servers(quorum: &str) -> Vec<String> {
    let hosts = quorum.split('/').next().unwrap_or("");
    hosts
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn close_at(
    server: &str,
    creds: &SessionCredentials,
    timeout: Duration,
) -> Result<CloseOutcome, String> {
    let addrs: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let addr = addrs.first().ok_or("resolves to no address")?;
    let mut s = TcpStream::connect_timeout(addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .and_then(|_| s.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    s.write_all(&encode_connect_request(creds))
        .map_err(|e| format!("send ConnectRequest: {e}"))?;
    let response = match read_frame(&mut s) {
        Ok(r) => r,
        // A server that refuses the session may close the connection without an answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(CloseOutcome::AlreadyEnded)
        }
        Err(e) => return Err(format!("read ConnectResponse: {e}")),
    };
    match decode_connect_response(&response) {
        Some(resumed) if resumed.id == creds.id => {}
        _ => return Ok(CloseOutcome::AlreadyEnded),
    }
    // RequestHeader {int xid, int type}; closeSession has no body.
    let mut header = Vec::with_capacity(8);
    header.extend_from_slice(&1i32.to_be_bytes());
    header.extend_from_slice(&OP_CLOSE_SESSION.to_be_bytes());
    s.write_all(&frame(&header))
        .map_err(|e| format!("send closeSession: {e}"))?;
    // ReplyHeader {int xid, long zxid, int err}.
    let reply = read_frame(&mut s).map_err(|e| format!("read closeSession reply: {e}"))?;
    let err = reply
        .get(12..16)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or_else(|| format!("short closeSession reply ({} bytes)", reply.len()))?;
    if err != 0 {
        return Err(format!("closeSession answered error code {err}"));
    }
    Ok(CloseOutcome::Closed)
}

/// Relays this process's ZooKeeper connections through 127.0.0.1 listeners to learn the
/// credentials of every session established on them. Dropping it stops accepting; connections
/// already relayed end when either side closes.
pub struct SessionRelay {
    /// The connect string the client must use (one local listener per server, same order).
    pub connect_string: String,
    credentials: watch::Receiver<Option<SessionCredentials>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SessionRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SessionRelay {
    /// Binds one listener per server of `quorum`. `connect_timeout` bounds each upstream connect.
    pub async fn start(quorum: &str, connect_timeout: Duration) -> std::io::Result<SessionRelay> {
        let (tx, rx) = watch::channel(None);
        let tx = std::sync::Arc::new(tx);
        let chroot = quorum.find('/').map(|i| &quorum[i..]).unwrap_or("");
        let mut local = Vec::new();
        let mut tasks = Vec::new();
        for server in servers(quorum) {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            local.push(listener.local_addr()?.to_string());
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        // E.g. out of file descriptors: do not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let (server, tx) = (server.clone(), tx.clone());
                    tokio::spawn(async move {
                        relay(client, &server, connect_timeout, &tx).await;
                    });
                }
            }));
        }
        Ok(SessionRelay {
            connect_string: format!("{}{chroot}", local.join(",")),
            credentials: rx,
            tasks,
        })
    }

    /// The credentials of the latest session a server granted on a relayed connection.
    pub fn credentials(&self) -> watch::Receiver<Option<SessionCredentials>> {
        self.credentials.clone()
    }
}

/// One relayed connection: bytes pass unchanged; the server's first frame is decoded.
async fn relay(
    client: AsyncTcpStream,
    server: &str,
    connect_timeout: Duration,
    creds: &watch::Sender<Option<SessionCredentials>>,
) {
    let upstream =
        match tokio::time::timeout(connect_timeout, AsyncTcpStream::connect(server)).await {
            Ok(Ok(s)) => s,
            // The client sees its connection close and tries again, as with a refused connect.
            _ => return,
        };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let to_server = async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
    };
    let to_client = async move {
        let mut len = [0u8; 4];
        if ur.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = i32::from_be_bytes(len);
        let Some(n) = usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_HANDSHAKE_FRAME)
        else {
            return;
        };
        let mut body = vec![0u8; n];
        if ur.read_exact(&mut body).await.is_err() {
            return;
        }
        if let Some(c) = decode_connect_response(&body) {
            creds.send_if_modified(|cur| {
                let changed = cur.as_ref() != Some(&c);
                *cur = Some(c);
                changed
            });
        }
        if cw.write_all(&len).await.is_err() || cw.write_all(&body).await.is_err() {
            return;
        }
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(to_server, to_client);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_response_is_decoded_and_a_refusal_is_none() {
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&4000i32.to_be_bytes());
        body.extend_from_slice(&0x1234_5678_9abci64.to_be_bytes());
        body.extend_from_slice(&16i32.to_be_bytes());
        body.extend_from_slice(&[0xEEu8; 16]);
        body.push(0);
        let c = decode_connect_response(&body).expect("decoded");
        assert_eq!(c.id, 0x1234_5678_9abc);
        assert_eq!(c.timeout_ms, 4000);
        assert_eq!(c.password, vec![0xEEu8; 16]);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("238") && !shown.contains("password"),
            "no password in Debug: {shown}"
        );

        let mut refused = Vec::new();
        refused.extend_from_slice(&0i32.to_be_bytes());
        refused.extend_from_slice(&0i32.to_be_bytes());
        refused.extend_from_slice(&0i64.to_be_bytes());
        refused.extend_from_slice(&16i32.to_be_bytes());
        refused.extend_from_slice(&[0u8; 16]);
        assert_eq!(decode_connect_response(&refused), None);
        assert_eq!(decode_connect_response(&body[..10]), None, "truncated");
    }

    #[test]
    fn connect_string_servers_drop_the_chroot() {
        assert_eq!(
            servers("a:1, b:2/eddy/x"),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
    }
}
