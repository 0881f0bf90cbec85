//! A TaskManager's Prometheus endpoint: `GET /metrics` on the first free port of
//! `metrics.reporter.prom.port` (bound on `taskmanager.host`), served by one thread of its own
//! with blocking sockets (a scrape every few seconds needs no more).
//!
//! What it writes is rendered by the caller (`taskmanager.rs`, with the names of
//! `eddy_core::metrics`); this file owns only the socket, and must never let a slow or
//! malformed request stop the TaskManager.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long one request may take to arrive and to be answered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

pub(crate) type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds the first free port of `from..=to` on `host`. `Ok(None)`: no port was free and the
/// range is the default one (the TaskManager runs without the endpoint); a configured range
/// with no free port is an error.
pub(crate) fn bind(
    host: &str,
    (from, to): (u16, u16),
    configured: bool,
) -> Result<Option<TcpListener>, String> {
    let mut last_error = None;
    for port in from..=to {
        match TcpListener::bind((host, port)) {
            Ok(l) => return Ok(Some(l)),
            Err(e) => last_error = Some(e),
        }
    }
    let range = if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    };
    let why = last_error.map(|e| e.to_string()).unwrap_or_default();
    if configured {
        Err(format!(
            "cannot bind the TaskManager's metrics endpoint to {host}:{range} (metrics.reporter.prom.port): {why}"
        ))
    } else {
        tracing::warn!(
            "no free port in the default metrics range {host}:{range} ({why}); this TaskManager runs without /metrics (set metrics.reporter.prom.port)"
        );
        Ok(None)
    }
}

/// Serves `listener` on a thread until `stopped()`.
pub(crate) fn serve(
    listener: TcpListener,
    render: Render,
    stopped: Arc<dyn Fn() -> bool + Send + Sync>,
) -> Result<SocketAddr, String> {
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the metrics endpoint's address: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the metrics socket {address}: {e}"))?;
    std::thread::Builder::new()
        .name("tm-metrics".into())
        .spawn(move || {
            while !stopped() {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = answer(stream, &render) {
                            tracing::debug!("metrics request on {address}: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        tracing::warn!("metrics endpoint {address}: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(address)
}

/// Reads one request head and answers it: `GET /metrics` → 200 with the text, another path →
/// 404, another method → 405. The connection is closed after the answer.
fn answer(mut stream: TcpStream, render: &Render) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", eddy_core::metrics::CONTENT_TYPE, render()),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            format!("Not found: {path} (this TaskManager serves GET /metrics)\n"),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            format!("method {method} is not allowed (this TaskManager serves GET /metrics)\n"),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}
