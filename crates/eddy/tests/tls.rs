//! TLS end to end (issue 14 item 4, docs/security.md): `eddy cert generate`, HTTPS on the REST
//! port with the CLI as its client. Real `eddy jobmanager` / `eddy taskmanager` processes on free
//! ports, killed by PID when the test ends (also on failure).

mod common;

use common::*;
use eddy_core::config::Config;
use eddy_core::tls::ClientConfig;
use eddy_rest::client;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const START_LIMIT: Duration = Duration::from_secs(30);

/// A process killed (SIGKILL) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `eddy cert generate DIR`, asserting success.
fn generate(dir: &Path, hosts: &[&str]) {
    let mut args = vec!["cert", "generate", dir.to_str().expect("UTF-8 path")];
    for h in hosts {
        args.extend(["--host", h]);
    }
    let out = eddy(&args, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// The REST client configuration a CLI with `security.ssl.rest.trust-cert: <ca>` builds.
fn rest_client_trusting(ca: &Path) -> Arc<ClientConfig> {
    let config = Config::from_pairs(&[
        ("security.ssl.rest.enabled", "true"),
        ("security.ssl.rest.trust-cert", ca.to_str().unwrap()),
    ])
    .expect("config");
    eddy_core::tls::rest_client_config(&config)
        .expect("TLS client config")
        .expect("TLS is on")
}

/// One JobManager process (and TaskManagers) from a conf dir of its own.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    rest_port: u16,
    rpc_port: u16,
    procs: Vec<Proc>,
}

impl Cluster {
    fn start(extra: &[(&str, String)], tls: Option<&Arc<ClientConfig>>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf");
        std::fs::create_dir_all(&conf).expect("conf dir");
        let ports = free_ports(2);
        let keys: Vec<(String, String)> = [
            ("jobmanager.rpc.address", "127.0.0.1".to_string()),
            ("jobmanager.rpc.port", ports[1].to_string()),
            ("rest.address", "127.0.0.1".to_string()),
            ("rest.port", ports[0].to_string()),
            ("taskmanager.host", "127.0.0.1".to_string()),
            ("taskmanager.numberOfTaskSlots", "4".to_string()),
            ("heartbeat.interval", "200 ms".to_string()),
            ("heartbeat.timeout", "4 s".to_string()),
            ("execution.checkpointing.interval", "300 ms".to_string()),
            ("env.log.dir", dir.path().join("log").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_config_yaml(&conf, keys, extra);
        let mut c = Cluster {
            dir,
            conf,
            rest_port: ports[0],
            rpc_port: ports[1],
            procs: Vec::new(),
        };
        c.spawn("jobmanager");
        let deadline = Instant::now() + START_LIMIT;
        while !matches!(c.get("/overview", tls), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "the JobManager did not answer on {}: {}",
                c.rest(),
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn spawn(&mut self, role: &str) {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("{role}-{}.log", self.procs.len())),
        )
        .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([role, "--conf", self.conf.to_str().expect("UTF-8 path")])
            .env("EDDY_LOG", "info")
            .env_remove("EDDY_CONF_DIR")
            .env_remove("EDDY_FAULT_POINTS")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start eddy");
        self.procs.push(Proc(child));
    }

    fn rest(&self) -> String {
        format!("127.0.0.1:{}", self.rest_port)
    }

    fn get(
        &self,
        path: &str,
        tls: Option<&Arc<ClientConfig>>,
    ) -> Result<(u16, serde_json::Value), String> {
        client::request_with(&self.rest(), "GET", path, None, HTTP_TIMEOUT, None, tls)
    }

    /// `eddy run sequence` through the CLI with this cluster's configuration; returns the output
    /// directory after asserting the exactly-once witness.
    fn run_witness_job(&self, keys: u64, per_key: u64, parallelism: u32) {
        let output = self.dir.path().join(format!("out-{keys}-{per_key}"));
        let (k, n, p) = (
            keys.to_string(),
            per_key.to_string(),
            parallelism.to_string(),
        );
        let out = eddy(
            &[
                "run",
                "sequence",
                "--keys",
                &k,
                "--per-key",
                &n,
                "--rate",
                "5000",
                "--output",
                output.to_str().unwrap(),
                "-p",
                &p,
                "--conf",
                self.conf.to_str().unwrap(),
                "-m",
                &self.rest(),
            ],
            Duration::from_secs(120),
        );
        assert_eq!(out.code, 0, "{}{}\n{}", out.stdout, out.stderr, self.log());
        assert_eq!(
            witness(&committed_lines(&output), keys, per_key),
            (0, 0, 0),
            "the exactly-once witness does not hold"
        );
    }

    /// Waits until `n` TaskManagers are registered.
    fn wait_for_taskmanagers(&self, n: u64, tls: Option<&Arc<ClientConfig>>) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok((200, v)) = self.get("/overview", tls) {
                if v["taskmanagers"] == n {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{n} TaskManagers did not register\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for i in 0..self.procs.len() {
            for role in ["jobmanager", "taskmanager"] {
                let p = self.dir.path().join(format!("{role}-{i}.log"));
                if let Ok(t) = std::fs::read_to_string(&p) {
                    out.push_str(&format!("--- {}\n{t}", p.display()));
                }
            }
        }
        out
    }
}

/// Sends a plain HTTP request to `addr` and returns what came back (empty when the server just
/// closed the connection).
fn plain_http(addr: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let _ = s.write_all(b"GET /overview HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn cert_generate_writes_a_ca_and_a_cluster_certificate_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    generate(&certs, &["tm-1.example", "10.1.2.3"]);
    for (file, mode) in [
        ("ca.pem", 0o644),
        ("ca-key.pem", 0o600),
        ("cert.pem", 0o644),
        ("key.pem", 0o600),
    ] {
        let meta = std::fs::metadata(certs.join(file)).expect(file);
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
        let text = std::fs::read_to_string(certs.join(file)).unwrap();
        assert!(text.starts_with("-----BEGIN "), "{file}: {text}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The files are what the TLS keys read: both scopes load.
    let c = certs.display().to_string();
    let (cert, key, ca) = (
        format!("{c}/cert.pem"),
        format!("{c}/key.pem"),
        format!("{c}/ca.pem"),
    );
    let config = Config::from_pairs(&[
        ("security.ssl.rest.enabled", "true"),
        ("security.ssl.rest.cert", &cert),
        ("security.ssl.rest.key", &key),
        ("security.ssl.rest.trust-cert", &ca),
    ])
    .unwrap();
    assert!(eddy_core::tls::rest_server_config(&config)
        .unwrap()
        .is_some());
    let before = std::fs::read(certs.join("ca.pem")).unwrap();
    let out = eddy(
        &["cert", "generate", certs.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("exists already") && out.stderr.trim().lines().count() == 1,
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(certs.join("ca.pem")).unwrap(), before);
    let out = eddy(
        &[
            "cert",
            "generate",
            dir.path().join("other").to_str().unwrap(),
            "--host",
            "a b",
        ],
        Duration::from_secs(60),
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--host 'a b'"), "{}", out.stderr);
}

#[test]
fn rest_over_tls_runs_the_witness_job_from_the_cli_and_refuses_plain_and_foreign_clients() {
    let certs = tempfile::tempdir().unwrap();
    let ours = certs.path().join("ours");
    let theirs = certs.path().join("theirs");
    generate(&ours, &[]);
    generate(&theirs, &[]);
    let o = ours.display().to_string();
    let tls = rest_client_trusting(&ours.join("ca.pem"));
    let mut c = Cluster::start(
        &[
            ("security.ssl.rest.enabled", "true".into()),
            ("security.ssl.rest.cert", format!("{o}/cert.pem")),
            ("security.ssl.rest.key", format!("{o}/key.pem")),
            ("security.ssl.rest.trust-cert", format!("{o}/ca.pem")),
        ],
        Some(&tls),
    );
    c.spawn("taskmanager");

    // A plain-HTTP client gets no HTTP answer: the server expects a TLS ClientHello.
    let got = plain_http(&c.rest());
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&got)
    );
    let e = c.get("/overview", None).unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    // A TLS client that trusts another CA refuses the server's certificate.
    let foreign = rest_client_trusting(&theirs.join("ca.pem"));
    let e = c.get("/overview", Some(&foreign)).unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    // A client that connects and sends nothing does not block the others.
    let _silent = TcpStream::connect(c.rest()).unwrap();

    // The CLI reads security.ssl.rest.* from its configuration and speaks TLS.
    c.run_witness_job(3, 300, 2);
    let out = eddy(
        &[
            "list",
            "--all",
            "--conf",
            c.conf.to_str().unwrap(),
            "-m",
            &format!("https://{}", c.rest()),
        ],
        HTTP_TIMEOUT,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FINISHED"), "{}", out.stdout);
    // ... and refuses a plain http:// address instead of sending in clear text.
    let out = eddy(
        &[
            "list",
            "--conf",
            c.conf.to_str().unwrap(),
            "-m",
            &format!("http://{}", c.rest()),
        ],
        HTTP_TIMEOUT,
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("security.ssl.rest.enabled"),
        "{}",
        out.stderr
    );
    // The refused clients did not stop the server.
    let (code, v) = c.get("/overview", Some(&tls)).unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["taskmanagers"], 1, "{v}");
}

#[test]
fn rest_tls_without_its_files_is_one_line_naming_the_key() {
    let c = Config::from_pairs(&[("security.ssl.rest.enabled", "true")]).unwrap();
    let e = eddy_core::tls::rest_server_config(&c).unwrap_err();
    assert!(
        e.contains("security.ssl.rest.cert is not set") && !e.contains('\n'),
        "{e}"
    );
    let e = eddy_core::tls::rest_client_config(&c).unwrap_err();
    assert!(e.contains("security.ssl.rest.trust-cert"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-pem.txt");
    std::fs::write(&bad, "hello").unwrap();
    let b = bad.display().to_string();
    let c = Config::from_pairs(&[
        ("security.ssl.rest.enabled", "true"),
        ("security.ssl.rest.trust-cert", b.as_str()),
    ])
    .unwrap();
    let e = eddy_core::tls::rest_client_config(&c).unwrap_err();
    assert!(
        e.contains("security.ssl.rest.trust-cert") && e.contains(&b) && !e.contains('\n'),
        "{e}"
    );
}

/// The internal TLS of a process holding `cert_dir`'s certificate and trusting `ca_dir`'s CA.
fn internal_tls(cert_dir: &Path, ca_dir: &Path) -> eddy_core::tls::InternalTls {
    let (cert, key, ca) = (
        cert_dir.join("cert.pem").display().to_string(),
        cert_dir.join("key.pem").display().to_string(),
        ca_dir.join("ca.pem").display().to_string(),
    );
    let config = Config::from_pairs(&[
        ("security.ssl.internal.enabled", "true"),
        ("security.ssl.internal.cert", &cert),
        ("security.ssl.internal.key", &key),
        ("security.ssl.internal.trust-cert", &ca),
    ])
    .expect("config");
    eddy_core::tls::InternalTls::from_config(&config)
        .expect("internal TLS")
        .expect("enabled")
}

/// Tries to register a TaskManager at the RPC port `addr`, over plain TCP (`tls` None) or TLS;
/// returns the JobManager's reply, or the error that ended the attempt.
fn try_register(addr: &str, tls: Option<&eddy_core::tls::InternalTls>) -> Result<String, String> {
    use eddy_cluster::rpc::{read_message, write_message, JmMessage, TmMessage};
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let (mut r, mut w) = match tls {
        None => eddy_core::tls::accept(sock, None),
        Some(t) => eddy_core::tls::connect(sock, Some(t), addr),
    }
    .map_err(|e| format!("handshake: {e}"))?;
    write_message(
        &mut w,
        &TmMessage::Register {
            tm_id: "tm-intruder".into(),
            data_address: "127.0.0.1:1".into(),
            slots: 8,
            pid: 1,
        },
    )
    .map_err(|e| format!("write: {e}"))?;
    let limits = eddy_cluster::rpc::rpc_limits(&Config::default());
    read_message::<JmMessage>(&mut r, &limits)
        .map(|m| format!("{m:?}"))
        .map_err(|e| format!("read: {e}"))
}

/// Sends a data frame to the data port `addr` over plain TCP or TLS and waits until the peer
/// closes the connection; returns the local address (which the TaskManager's log names if it
/// read the frame).
fn send_data_frame(addr: &str, tls: Option<&eddy_core::tls::InternalTls>) -> String {
    let sock = TcpStream::connect(addr).expect("connect");
    let local = sock.local_addr().unwrap().to_string();
    sock.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let halves = match tls {
        None => eddy_core::tls::accept(sock, None),
        Some(t) => eddy_core::tls::connect(sock, Some(t), addr),
    };
    let Ok((mut r, mut w)) = halves else {
        return local;
    };
    // A credit frame for channel 7: [len u32][kind u8][channel u64][n u32].
    let mut frame = 13u32.to_le_bytes().to_vec();
    frame.push(6);
    frame.extend_from_slice(&7u64.to_le_bytes());
    frame.extend_from_slice(&1u32.to_le_bytes());
    let _ = w.write_all(&frame);
    let _ = w.flush();
    // Plain: the TLS server's alert, then the close; TLS: the server's alert or nothing.
    let mut buf = Vec::new();
    let closed = match r.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "the data connection from {local} stayed open");
    local
}

#[test]
fn internal_mutual_tls_runs_the_witness_job_across_taskmanagers_and_refuses_outsiders() {
    let certs = tempfile::tempdir().unwrap();
    let ours = certs.path().join("ours");
    let theirs = certs.path().join("theirs");
    generate(&ours, &[]);
    generate(&theirs, &[]);
    let o = ours.display().to_string();
    let mut c = Cluster::start(
        &[
            ("security.ssl.internal.enabled", "true".into()),
            ("security.ssl.internal.cert", format!("{o}/cert.pem")),
            ("security.ssl.internal.key", format!("{o}/key.pem")),
            ("security.ssl.internal.trust-cert", format!("{o}/ca.pem")),
            ("taskmanager.numberOfTaskSlots", "2".into()),
        ],
        None,
    );
    c.spawn("taskmanager");
    c.spawn("taskmanager");
    c.wait_for_taskmanagers(2, None);
    let (_, tms) = c.get("/taskmanagers", None).unwrap();
    let data_ports: Vec<String> = tms["taskmanagers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(data_ports.len(), 2, "{tms}");
    let rpc = format!("127.0.0.1:{}", c.rpc_port);
    // Trusts our CA (so it accepts the servers) but holds a certificate of another CA.
    let foreign = internal_tls(&theirs, &ours);
    let mut intruders = Vec::new();

    std::thread::scope(|s| {
        // -p 4 over 2 TaskManagers of 2 slots: the keyed exchange crosses TaskManagers.
        let job = s.spawn(|| c.run_witness_job(4, 3000, 4));
        std::thread::sleep(Duration::from_millis(300));
        let plain = try_register(&rpc, None);
        assert!(plain.is_err(), "a plain-TCP registration got {plain:?}");
        let tls = try_register(&rpc, Some(&foreign));
        assert!(
            tls.is_err(),
            "a foreign certificate's registration got {tls:?}"
        );
        for d in &data_ports {
            intruders.push(send_data_frame(d, None));
            intruders.push(send_data_frame(d, Some(&foreign)));
        }
        job.join().expect("the witness job");
    });
    // Nobody else registered, and the refusals are the TLS layer's.
    c.wait_for_taskmanagers(2, None);
    let log = c.log();
    assert!(
        log.matches("refused an RPC connection").count() >= 2,
        "{log}"
    );
    assert!(
        log.matches("refused a data connection").count() >= 4,
        "{log}"
    );
    assert!(!log.contains("tm-intruder"), "{log}");
    for local in &intruders {
        // A frame that was read would have closed its connection naming it (unknown channel).
        assert!(
            !log.contains(&format!("closing the data connection from {local}")),
            "{local}: {log}"
        );
    }
}

#[test]
fn internal_tls_needs_its_three_files() {
    let e = Config::from_pairs(&[("security.ssl.internal.enabled", "true")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("security.ssl.internal.cert") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn a_split_tls_stream_delivers_each_message_without_waiting_for_more_bytes() {
    // Request/response over the reader and writer halves, as RPC does: a reader that kept
    // decrypted bytes until the next packet arrived would hang here (each side waits for the
    // other), so every read is bounded by a socket timeout.
    let certs = tempfile::tempdir().unwrap();
    let ours = certs.path().join("ours");
    generate(&ours, &[]);
    let tls = internal_tls(&ours, &ours);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server_tls = tls.clone();
    let server = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let (mut r, mut w) = eddy_core::tls::accept(sock, Some(&server_tls)).unwrap();
        r.socket().set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
        let mut buf = [0u8; 4];
        for i in 0..200u32 {
            r.read_exact(&mut buf).expect("request");
            assert_eq!(u32::from_le_bytes(buf), i);
            w.write_all(&(i + 1).to_le_bytes()).unwrap();
            w.flush().unwrap();
        }
    });
    let sock = TcpStream::connect(&addr).unwrap();
    let (mut r, mut w) = eddy_core::tls::connect(sock, Some(&tls), &addr).unwrap();
    r.socket().set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let mut buf = [0u8; 4];
    for i in 0..200u32 {
        w.write_all(&i.to_le_bytes()).unwrap();
        w.flush().unwrap();
        r.read_exact(&mut buf).expect("response");
        assert_eq!(u32::from_le_bytes(buf), i + 1);
    }
    server.join().unwrap();
}
