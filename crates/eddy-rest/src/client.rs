//! A tiny blocking HTTP/1.1 client on `std::net::TcpStream` for the CLI (`eddy run/list/cancel`)
//! and tests: one request per connection (`Connection: close`), JSON in, JSON out; responses
//! with `Content-Length`, `Transfer-Encoding: chunked` or neither (read to end of stream).
//!
//! With a TLS configuration ([`set_tls`], from `security.ssl.rest.*`) every request speaks TLS
//! (rustls, verifying the server against the configured CA) and `http://` addresses are refused;
//! without one, `https://` addresses are refused. It must never wait longer than the caller's
//! timeout and never follow redirects. Errors are one line naming the address.

use eddy_core::tls::rustls;
use eddy_core::tls::ClientConfig;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest response accepted (a job list of many thousands of jobs is far below this).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The bearer token [`request`] sends (`eddy.rest.auth.token-file`), set once by the CLI after
/// it loaded its configuration.
static BEARER_TOKEN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Makes every later [`request`] of this process send `Authorization: Bearer <token>`.
pub fn set_bearer_token(token: Option<String>) {
    if let Ok(mut t) = BEARER_TOKEN.lock() {
        *t = token;
    }
}

/// The TLS configuration [`request`] uses (`security.ssl.rest.enabled`), set once by the CLI.
static TLS: std::sync::Mutex<Option<Arc<ClientConfig>>> = std::sync::Mutex::new(None);

/// Makes every later [`request`] of this process speak TLS with `config` (`None`: plain HTTP).
pub fn set_tls(config: Option<Arc<ClientConfig>>) {
    if let Ok(mut t) = TLS.lock() {
        *t = config;
    }
}

/// Sends `method path` to the REST endpoint at `base` (`http://host:port` or `host:port`) with
/// an optional JSON body, and returns the status code and the response body: parsed JSON,
/// `Value::Null` when empty, or `Value::String` when it is not JSON (e.g. `/metrics`).
/// `timeout` bounds the whole exchange (connect, send, receive). Sends the process's bearer
/// token ([`set_bearer_token`]), if any.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let token = BEARER_TOKEN.lock().ok().and_then(|t| t.clone());
    request_with_token(base, method, path, body, timeout, token.as_deref())
}

/// [`request`] with an explicit bearer token (`None`: no `Authorization` header).
pub fn request_with_token(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
    token: Option<&str>,
) -> Result<(u16, Value), String> {
    let tls = TLS.lock().ok().and_then(|t| t.clone());
    request_with(base, method, path, body, timeout, token, tls.as_ref())
}

/// [`request_with_token`] with an explicit TLS configuration (`None`: plain HTTP).
pub fn request_with(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
    token: Option<&str>,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(u16, Value), String> {
    let endpoint = Endpoint::parse(base, tls.is_some())?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let what = format!("{method} {scheme}://{}{path}", endpoint.authority);
    let deadline = Instant::now() + timeout;
    let tcp = endpoint.connect(deadline)?;
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            let name =
                rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                    format!("{what}: '{}' is not a TLS server name: {e}", endpoint.host)
                })?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| format!("{what}: TLS: {e}"))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    let payload = match body {
        Some(v) => Some(
            serde_json::to_vec(v)
                .map_err(|e| format!("{what}: cannot encode the request body: {e}"))?,
        ),
        None => None,
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: eddy/{}\r\n",
        endpoint.authority,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    match &payload {
        Some(p) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            p.len()
        )),
        None if !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS") => {
            head.push_str("Content-Length: 0\r\n")
        }
        None => {}
    }
    head.push_str("\r\n");
    let io_err = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!("{what}: no answer within {timeout:?}")
        } else {
            format!("{what}: {e}")
        }
    };
    set_timeouts(stream.tcp(), deadline).map_err(|e| format!("{what}: {e}"))?;
    stream.write_all(head.as_bytes()).map_err(io_err)?;
    if let Some(p) = &payload {
        stream.write_all(p).map_err(io_err)?;
    }
    stream.flush().map_err(io_err)?;
    let mut reader = Reader {
        stream,
        buf: Vec::new(),
        pos: 0,
        deadline,
    };
    let response = read_response(&mut reader, method == "HEAD").map_err(|e| match e {
        ReadError::Io(e) => io_err(e),
        ReadError::Invalid(m) => format!("{what}: invalid HTTP response: {m}"),
    })?;
    let value = if response.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&response.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into_owned()))
    };
    Ok((response.status, value))
}

/// `host:port` of a base address.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// As written in the `Host` header, e.g. `localhost:8081` or `[::1]:8081`.
    authority: String,
    host: String,
    port: u16,
}

impl Endpoint {
    fn parse(base: &str, tls: bool) -> Result<Endpoint, String> {
        let trimmed = base.trim();
        if trimmed.starts_with("https://") && !tls {
            return Err(format!(
                "cannot reach '{trimmed}': https needs security.ssl.rest.enabled: true and security.ssl.rest.trust-cert in the configuration; else use http://host:port"
            ));
        }
        if trimmed.starts_with("http://") && tls {
            return Err(format!(
                "cannot reach '{trimmed}' over plain http: the configuration sets security.ssl.rest.enabled: true; use https://host:port or host:port"
            ));
        }
        let (scheme, rest) = match trimmed.strip_prefix("https://") {
            Some(r) => ("https", r),
            None => ("http", trimmed.strip_prefix("http://").unwrap_or(trimmed)),
        };
        let authority = rest.split('/').next().unwrap_or("");
        let bad = || {
            format!("invalid REST address '{trimmed}': expected {scheme}://host:port or host:port")
        };
        if authority.is_empty() {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h.to_string(), p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => (h.to_string(), 80),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad())?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Endpoint {
            authority,
            host,
            port,
        })
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, String> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve the REST address {}: {e}", self.authority))?
            .collect();
        let mut last = format!(
            "cannot resolve the REST address {}: no addresses",
            self.authority
        );
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "cannot connect to the REST endpoint at {}: timed out",
                    self.authority
                ));
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => {
                    last = format!(
                        "cannot connect to the REST endpoint at {} ({addr}): {e}",
                        self.authority
                    )
                }
            }
        }
        Err(last)
    }
}

/// A connection to the REST endpoint, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn set_timeouts(stream: &TcpStream, deadline: Instant) -> std::io::Result<()> {
    // A zero duration means "no timeout" to the socket API: use the smallest real one.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))
}

enum ReadError {
    Io(std::io::Error),
    Invalid(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn invalid(m: impl Into<String>) -> ReadError {
    ReadError::Invalid(m.into())
}

/// Buffered reads that stop at the caller's deadline.
struct Reader {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Reader {
    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> Result<usize, ReadError> {
        if Instant::now() >= self.deadline {
            return Err(ReadError::Io(std::io::ErrorKind::TimedOut.into()));
        }
        set_timeouts(self.stream.tcp(), self.deadline)?;
        if self.buf.len() - self.pos > MAX_RESPONSE_BYTES {
            return Err(invalid(format!(
                "response larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// One line without its CRLF (or LF).
    fn line(&mut self, limit: usize) -> Result<String, ReadError> {
        loop {
            if let Some(i) = self.available().iter().position(|b| *b == b'\n') {
                let raw = &self.buf[self.pos..self.pos + i];
                let line =
                    String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
                self.pos += i + 1;
                return Ok(line);
            }
            if self.available().len() > limit {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(invalid("connection closed in the middle of a line"));
            }
        }
    }

    fn exact(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        if n > MAX_RESPONSE_BYTES {
            return Err(invalid(format!(
                "body of {n} bytes is larger than {MAX_RESPONSE_BYTES}"
            )));
        }
        while self.available().len() < n {
            if self.fill()? == 0 {
                return Err(invalid(format!(
                    "connection closed after {} of {n} body bytes",
                    self.available().len()
                )));
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    fn rest_of_stream(&mut self) -> Result<Vec<u8>, ReadError> {
        while self.fill()? > 0 {}
        let out = self.available().to_vec();
        self.pos = self.buf.len();
        Ok(out)
    }
}

struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

fn read_response(r: &mut Reader, head_only: bool) -> Result<RawResponse, ReadError> {
    loop {
        let status_line = r.line(MAX_HEADER_BYTES)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(invalid(format!(
                "unexpected status line '{}'",
                truncate(&status_line)
            )));
        }
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            invalid(format!(
                "unexpected status line '{}'",
                truncate(&status_line)
            ))
        })?;
        let mut content_length: Option<usize> = None;
        let mut chunked = false;
        let mut header_bytes = 0;
        loop {
            let line = r.line(MAX_HEADER_BYTES)?;
            if line.is_empty() {
                break;
            }
            header_bytes += line.len();
            if header_bytes > MAX_HEADER_BYTES {
                return Err(invalid("headers too large"));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid(format!("malformed header '{}'", truncate(&line))));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length =
                    Some(value.parse().map_err(|_| {
                        invalid(format!("bad Content-Length '{}'", truncate(value)))
                    })?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .to_ascii_lowercase()
                    .split(',')
                    .any(|t| t.trim() == "chunked");
            }
        }
        // Informational answers (100 Continue, ...) precede the real one.
        if (100..200).contains(&status) {
            continue;
        }
        let body = if head_only || status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            read_chunked(r)?
        } else if let Some(n) = content_length {
            r.exact(n)?
        } else {
            r.rest_of_stream()?
        };
        return Ok(RawResponse { status, body });
    }
}

fn read_chunked(r: &mut Reader) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = r.line(1024)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size '{}'", truncate(&line))))?;
        if size == 0 {
            // Trailers, then the blank line.
            while !r.line(MAX_HEADER_BYTES)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_RESPONSE_BYTES {
            return Err(invalid(format!(
                "response larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend(r.exact(size)?);
        if !r.line(2)?.is_empty() {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::TcpListener;

    /// Serves one connection with `response`, returning the request it received.
    fn one_shot_server(response: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and, if any, the announced body.
            loop {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(response).unwrap();
            String::from_utf8_lossy(&req).to_string()
        });
        (addr, t)
    }

    #[test]
    fn decodes_a_chunked_json_response() {
        let (addr, t) = one_shot_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n7\r\n{\"a\": 1\r\n3;ext=1\r\n, \"\r\n6\r\nb\": 2}\r\n0\r\nX-Trailer: x\r\n\r\n",
        );
        let (status, v) = request(
            &format!("http://{addr}/"),
            "GET",
            "/jobs",
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(v, json!({"a": 1, "b": 2}));
        let req = t.join().unwrap();
        assert!(req.starts_with("GET /jobs HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Connection: close\r\n"));
    }

    #[test]
    fn sends_a_json_body_and_reads_content_length() {
        let (addr, t) = one_shot_server(
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 17\r\n\r\n{\"jobid\": \"abc\"}\n",
        );
        let body = json!({"job": "sequence"});
        let (status, v) =
            request(&addr, "POST", "jobs", Some(&body), Duration::from_secs(5)).unwrap();
        assert_eq!(status, 202);
        assert_eq!(v["jobid"], "abc");
        let req = t.join().unwrap();
        assert!(req.starts_with("POST /jobs HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Content-Type: application/json\r\n"));
        assert!(req.ends_with("{\"job\":\"sequence\"}"), "{req}");
    }

    #[test]
    fn non_json_bodies_come_back_as_text_and_empty_ones_as_null() {
        let (addr, t) =
            one_shot_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\neddy_up 1\n");
        let (_, v) = request(&addr, "GET", "/metrics", None, Duration::from_secs(5)).unwrap();
        assert_eq!(v, Value::String("eddy_up 1\n".into()));
        t.join().unwrap();
        let (addr, t) = one_shot_server(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
        let (status, v) = request(&addr, "PATCH", "/jobs/x", None, Duration::from_secs(5)).unwrap();
        assert_eq!((status, v), (202, Value::Null));
        assert!(t.join().unwrap().contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn connection_errors_name_the_address_on_one_line() {
        // Bind then drop: nothing listens on the port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = request(
            &format!("127.0.0.1:{port}"),
            "GET",
            "/jobs",
            None,
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let e = request(&addr, "GET", "/jobs", None, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(e.contains(&addr) && e.contains("no answer"), "{e}");
        drop(listener);
    }

    #[test]
    fn base_addresses_parse() {
        let e = Endpoint::parse("http://localhost:8081/", false).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str()),
            ("localhost", 8081, "localhost:8081")
        );
        let e = Endpoint::parse("[::1]:9000", false).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str()),
            ("::1", 9000, "[::1]:9000")
        );
        assert_eq!(Endpoint::parse("example.org", false).unwrap().port, 80);
        assert!(Endpoint::parse("https://x:1", false)
            .unwrap_err()
            .contains("https"));
        assert!(Endpoint::parse("http://x:1", true)
            .unwrap_err()
            .contains("security.ssl.rest.enabled"));
        assert_eq!(Endpoint::parse("https://x:1/", true).unwrap().port, 1);
        assert!(Endpoint::parse("host:notaport", false).is_err());
        assert!(Endpoint::parse("", false).is_err());
    }
}
