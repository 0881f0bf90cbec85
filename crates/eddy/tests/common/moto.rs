//! A local S3-compatible server for one test: moto's `moto_server` (from the project's venv,
//! `$EDDY_VENV`, default /var/tmp/eddy-venv; `scripts/pyenv.sh` installs it) on 127.0.0.1 and a
//! free port, SIGKILLed by pid on drop. Buckets are created and objects listed with plain HTTP,
//! independent of the S3 client under test.

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "eddy-test";
pub const SECRET_KEY: &str = "eddy-test-secret";
pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` logging into `log`; returns once it answers.
    pub fn start(log: &Path) -> Moto {
        let venv = std::env::var("EDDY_VENV").unwrap_or_else(|_| "/var/tmp/eddy-venv".into());
        let bin = PathBuf::from(venv).join("bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/pyenv.sh (or set EDDY_VENV)",
            bin.display()
        );
        let port = free_ports(1)[0];
        let out = std::fs::File::create(log).expect("moto log file");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("moto log file"))
            .stderr(out)
            .spawn()
            .expect("start moto_server");
        let moto = Moto { port, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.http("GET", "/", b"").is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on 127.0.0.1:{port} within 60 s: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `s3.*` keys that reach this server.
    pub fn config_keys(&self) -> Vec<(&'static str, String)> {
        vec![
            ("s3.endpoint", self.endpoint()),
            ("s3.region", REGION.to_string()),
            ("s3.access-key", ACCESS_KEY.to_string()),
            ("s3.secret-key", SECRET_KEY.to_string()),
            ("s3.path.style.access", "true".to_string()),
        ]
    }

    /// `PUT /bucket` (object_store cannot create buckets).
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self
            .http("PUT", &format!("/{bucket}"), b"")
            .expect("create bucket");
        assert_eq!(status, 200, "create bucket {bucket}: {body}");
    }

    /// Every key in `bucket` under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={prefix}");
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={t}"));
            }
            let (status, body) = self.http("GET", &path, b"").expect("list objects");
            assert_eq!(status, 200, "list {bucket}/{prefix}: {body}");
            keys.extend(tags(&body, "Key"));
            token = tags(&body, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// One HTTP/1.0 request (unsigned: moto does not check signatures); status and body.
    fn http(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        )?;
        s.write_all(body)?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not HTTP: {resp}")))?;
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// The texts of every `<tag>…</tag>` in `xml`.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Child::kill is SIGKILL to this child's pid; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
