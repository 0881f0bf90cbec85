//! TLS from PEM files with rustls (ring provider): the REST server's and client's configurations
//! (`security.ssl.rest.*`), the mutual-TLS configurations of RPC and data connections
//! (`security.ssl.internal.*`), and [`TlsStream`], a blocking TLS connection over a
//! `std::net::TcpStream` whose handshake is done at connect/accept and which then splits into a
//! reader and a writer usable from two threads (as the protocol code uses a cloned `TcpStream`).
//!
//! This module must never decide what a protocol sends; it only carries bytes. Errors are one
//! line naming the key or file.

use crate::config::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use rustls;
pub use rustls::{ClientConfig, ServerConfig};

/// The crypto provider every configuration uses: ring (no aws-lc).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM files of one scope (`rest` or `internal`).
#[derive(Clone, Debug)]
struct Files {
    scope: &'static str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    trust: Option<PathBuf>,
}

impl Files {
    fn of(config: &Config, scope: &'static str) -> Files {
        Files {
            scope,
            cert: config.ssl_file(scope, "cert"),
            key: config.ssl_file(scope, "key"),
            trust: config.ssl_file(scope, "trust-cert"),
        }
    }

    fn need<'a>(&self, p: &'a Option<PathBuf>, file: &str) -> Result<&'a Path, String> {
        p.as_deref().ok_or_else(|| {
            format!(
                "security.ssl.{0}.enabled is true but security.ssl.{0}.{file} is not set (a PEM file; `eddy cert generate DIR` makes one, docs/security.md)",
                self.scope
            )
        })
    }

    fn cert_and_key(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let cert = self.need(&self.cert, "cert")?;
        let key = self.need(&self.key, "key")?;
        let key_name = format!("security.ssl.{}.key", self.scope);
        let certs = load_certs(cert, &format!("security.ssl.{}.cert", self.scope))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            format!(
                "{key_name}: cannot read a PEM private key from '{}': {e}",
                key.display()
            )
        })?;
        Ok((certs, key))
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, String> {
        let trust = self.need(&self.trust, "trust-cert")?;
        let what = format!("security.ssl.{}.trust-cert", self.scope);
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(trust, &what)? {
            roots.add(c).map_err(|e| {
                format!(
                    "{what}: '{}' holds a certificate that cannot be trusted: {e}",
                    trust.display()
                )
            })?;
        }
        Ok(Arc::new(roots))
    }
}

/// Every certificate of the PEM file `path` (at least one); `what` names the key in errors.
fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn std::fmt::Display| {
        format!(
            "{what}: cannot read PEM certificates from '{}': {e}",
            path.display()
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn server_config(
    files: &Files,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, String> {
    let (certs, key) = files.cert_and_key()?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "security.ssl.{0}.cert / security.ssl.{0}.key: unusable certificate and key: {e}",
            files.scope
        )
    })?;
    // No session tickets: nothing is written after the handshake unless the protocol writes.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The REST server's TLS configuration when `security.ssl.rest.enabled` is true (no client
/// certificates: REST clients authenticate with the bearer token).
pub fn rest_server_config(config: &Config) -> Result<Option<Arc<ServerConfig>>, String> {
    if !config.ssl_rest_enabled() {
        return Ok(None);
    }
    server_config(&Files::of(config, "rest"), None).map(Some)
}

/// The REST client's TLS configuration (the CLI) when `security.ssl.rest.enabled` is true: it
/// trusts the CA certificates of `security.ssl.rest.trust-cert` only.
pub fn rest_client_config(config: &Config) -> Result<Option<Arc<ClientConfig>>, String> {
    if !config.ssl_rest_enabled() {
        return Ok(None);
    }
    let files = Files::of(config, "rest");
    let roots = files.roots()?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// Mutual TLS for RPC and data connections (`security.ssl.internal.*`): both sides present the
/// cluster certificate and verify the peer's against the cluster CA.
#[derive(Clone)]
pub struct InternalTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalTls")
    }
}

/// How long a TLS handshake may take before the connection is dropped (a peer that connects and
/// sends nothing must not hold a connection forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl InternalTls {
    /// `Some` when `security.ssl.internal.enabled` is true; an error names a missing key or an
    /// unreadable file.
    pub fn from_config(config: &Config) -> Result<Option<InternalTls>, String> {
        if !config.ssl_internal_enabled() {
            return Ok(None);
        }
        let files = Files::of(config, "internal");
        let roots = files.roots()?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| format!("security.ssl.internal.trust-cert: {e}"))?;
        let server = server_config(&files, Some(verifier))?;
        let (certs, key) = files.cert_and_key()?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| {
                format!("security.ssl.internal.cert / security.ssl.internal.key: unusable certificate and key: {e}")
            })?;
        Ok(Some(InternalTls {
            server,
            client: Arc::new(client),
        }))
    }

    /// Handshakes as the client of `host` (the name or address connected to, which the peer's
    /// certificate must carry) over `sock`, bounded by [`HANDSHAKE_TIMEOUT`].
    pub fn connect(&self, sock: TcpStream, host: &str) -> io::Result<TlsStream> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS: '{host}' is not a valid server name: {e}"),
            )
        })?;
        let conn = rustls::ClientConnection::new(self.client.clone(), name)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        TlsStream::handshake(sock, conn.into())
    }

    /// Handshakes as the server over an accepted `sock`, bounded by [`HANDSHAKE_TIMEOUT`]; the
    /// peer must present a certificate signed by the cluster CA.
    pub fn accept(&self, sock: TcpStream) -> io::Result<TlsStream> {
        let conn = rustls::ServerConnection::new(self.server.clone())
            .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        TlsStream::handshake(sock, conn.into())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// The state the two halves of a [`TlsStream`] share. Lock order: `write` before `conn`.
struct Shared {
    conn: Mutex<rustls::Connection>,
    /// Serializes writes of TLS records to the socket (the writer's and the reader's alerts or
    /// post-handshake messages) in the order they were produced.
    write: Mutex<TcpStream>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Encrypts nothing new; sends every TLS byte the connection has queued.
    fn flush_tls(&self) -> io::Result<()> {
        let mut sock = lock(&self.write);
        let bytes = {
            let mut conn = lock(&self.conn);
            drain(&mut conn)?
        };
        if !bytes.is_empty() {
            sock.write_all(&bytes)?;
        }
        Ok(())
    }
}

fn drain(conn: &mut rustls::Connection) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    Ok(out)
}

/// A TLS connection over a blocking `TcpStream`, handshaken. Split it with
/// [`TlsStream::split`] to read and write from different threads; the reader blocks on the socket
/// without holding any lock.
pub struct TlsStream {
    shared: Arc<Shared>,
    sock: TcpStream,
}

impl TlsStream {
    fn handshake(mut sock: TcpStream, mut conn: rustls::Connection) -> io::Result<TlsStream> {
        let old_read = sock.read_timeout()?;
        let old_write = sock.write_timeout()?;
        sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        while conn.is_handshaking() {
            match conn.complete_io(&mut sock) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "TLS: connection closed during the handshake",
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    // Tell the peer why (an alert), if the connection still takes it.
                    let _ = conn.write_tls(&mut sock);
                    return Err(e);
                }
            }
        }
        // Anything queued after the handshake (e.g. the client's last flight) goes out now.
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        sock.set_read_timeout(old_read)?;
        sock.set_write_timeout(old_write)?;
        let write = sock.try_clone()?;
        Ok(TlsStream {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                write: Mutex::new(write),
            }),
            sock,
        })
    }

    /// The underlying socket (for timeouts, addresses and shutdown).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// The reading and the writing half. Dropping both does not close the socket until the
    /// last clone of it is dropped; use [`TlsWriter::shutdown`] for that.
    pub fn split(self) -> io::Result<(TlsReader, TlsWriter)> {
        let read_sock = self.sock.try_clone()?;
        Ok((
            TlsReader {
                shared: self.shared.clone(),
                sock: read_sock,
                buf: vec![0; 18 * 1024].into_boxed_slice(),
                start: 0,
                end: 0,
            },
            TlsWriter {
                shared: self.shared,
                sock: self.sock,
            },
        ))
    }
}

/// The reading half of a [`TlsStream`].
pub struct TlsReader {
    shared: Arc<Shared>,
    sock: TcpStream,
    /// Raw TLS bytes read from the socket and not yet given to the connection.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl TlsReader {
    /// The underlying socket (for timeouts).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

impl Read for TlsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let mut must_flush = false;
            let fed = self.start < self.end;
            {
                let mut conn = lock(&self.shared.conn);
                // Plaintext already decrypted comes first.
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if fed {
                    let n = conn.read_tls(&mut &self.buf[self.start..self.end])?;
                    self.start += n;
                    let state = conn.process_new_packets().map_err(|e| {
                        // Send the alert describing the error, then fail.
                        let _ = drain(&mut conn).map(|b| (&self.sock).write_all(&b));
                        tls_error(e)
                    })?;
                    must_flush = conn.wants_write();
                    if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                        return Ok(0);
                    }
                }
            }
            if must_flush {
                self.shared.flush_tls()?;
            }
            if fed {
                // Back to the top: what was just decrypted is read before blocking again.
                continue;
            }
            // Nothing buffered: block on the socket with no lock held.
            let n = loop {
                match self.sock.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if n == 0 {
                let mut conn = lock(&self.shared.conn);
                let _ = conn.read_tls(&mut &[][..]);
                conn.process_new_packets().map_err(tls_error)?;
                // 0 after the peer's close_notify, UnexpectedEof when the socket just closed.
                return conn.reader().read(out);
            }
            self.start = 0;
            self.end = n;
        }
    }
}

/// The writing half of a [`TlsStream`].
pub struct TlsWriter {
    shared: Arc<Shared>,
    sock: TcpStream,
}

impl TlsWriter {
    /// The underlying socket (for timeouts, shutdown).
    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    /// Sends close_notify (best effort) and shuts the socket down in both directions.
    pub fn shutdown(&self) -> io::Result<()> {
        {
            let mut conn = lock(&self.shared.conn);
            conn.send_close_notify();
        }
        let _ = self.shared.flush_tls();
        self.sock.shutdown(Shutdown::Both)
    }
}

impl Write for TlsWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut sock = lock(&self.shared.write);
        let (n, bytes) = {
            let mut conn = lock(&self.shared.conn);
            let n = conn.writer().write(data)?;
            (n, drain(&mut conn)?)
        };
        sock.write_all(&bytes)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.flush_tls()
    }
}

/// The reading side of an RPC or data connection: the socket itself, or a TLS reader.
pub enum ConnReader {
    Plain(TcpStream),
    Tls(TlsReader),
}

/// The writing side of an RPC or data connection: the socket itself, or a TLS writer.
pub enum ConnWriter {
    Plain(TcpStream),
    Tls(TlsWriter),
}

impl ConnReader {
    /// The underlying socket (for timeouts, addresses and shutdown).
    pub fn socket(&self) -> &TcpStream {
        match self {
            ConnReader::Plain(s) => s,
            ConnReader::Tls(r) => r.socket(),
        }
    }
}

impl ConnWriter {
    /// The underlying socket (for timeouts, addresses and shutdown).
    pub fn socket(&self) -> &TcpStream {
        match self {
            ConnWriter::Plain(s) => s,
            ConnWriter::Tls(w) => w.socket(),
        }
    }

    /// Closes the connection in both directions (TLS: after a close_notify, best effort).
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            ConnWriter::Plain(s) => s.shutdown(Shutdown::Both),
            ConnWriter::Tls(w) => w.shutdown(),
        }
    }
}

impl From<TcpStream> for ConnWriter {
    fn from(s: TcpStream) -> Self {
        ConnWriter::Plain(s)
    }
}

impl Read for ConnReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ConnReader::Plain(s) => s.read(buf),
            ConnReader::Tls(r) => r.read(buf),
        }
    }
}

impl Write for ConnWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ConnWriter::Plain(s) => s.write(buf),
            ConnWriter::Tls(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            ConnWriter::Plain(s) => s.flush(),
            ConnWriter::Tls(w) => w.flush(),
        }
    }
}

fn split(stream: io::Result<TlsStream>) -> io::Result<(ConnReader, ConnWriter)> {
    let (r, w) = stream?.split()?;
    Ok((ConnReader::Tls(r), ConnWriter::Tls(w)))
}

/// The reader and writer of an accepted connection; with `tls`, after a mutual-TLS handshake
/// as the server (an error: the peer is not a member of the cluster, or sent no handshake).
pub fn accept(
    stream: TcpStream,
    tls: Option<&InternalTls>,
) -> io::Result<(ConnReader, ConnWriter)> {
    match tls {
        None => Ok((
            ConnReader::Plain(stream.try_clone()?),
            ConnWriter::Plain(stream),
        )),
        Some(t) => split(t.accept(stream)),
    }
}

/// The reader and writer of a connection opened to `address` (`host:port`); with `tls`, after a
/// mutual-TLS handshake as the client, checking that the peer's certificate names `host`.
pub fn connect(
    stream: TcpStream,
    tls: Option<&InternalTls>,
    address: &str,
) -> io::Result<(ConnReader, ConnWriter)> {
    match tls {
        None => Ok((
            ConnReader::Plain(stream.try_clone()?),
            ConnWriter::Plain(stream),
        )),
        Some(t) => split(t.connect(stream, host_of(address))),
    }
}

/// The host of `host:port` or `[v6]:port`.
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The file names `eddy cert generate` writes in its directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";
