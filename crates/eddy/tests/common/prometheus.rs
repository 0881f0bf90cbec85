//! A real Prometheus text parser for the tests: the Python `prometheus_client` package's, in the
//! project's venv (`$EDDY_VENV`, default /var/tmp/eddy-venv, made by scripts/pyenv.sh).

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Reads exposition text on stdin; prints `{family: {"type", "samples": [[name, labels, value]]}}`.
pub const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;

pub fn venv_python() -> Result<PathBuf, String> {
    let venv = std::env::var("EDDY_VENV").unwrap_or_else(|_| "/var/tmp/eddy-venv".into());
    let python = Path::new(&venv).join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "no prometheus_client in the venv {venv} (run scripts/pyenv.sh, or set EDDY_VENV)"
        ))
    }
}

/// `GET http://address/path`: status and body.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(address).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// Scrapes `address` and parses the text with prometheus_client; panics if it does not parse.
pub fn scrape(python: &Path, address: &str) -> Value {
    let (status, text) = http_get(address, "/metrics");
    assert_eq!(status, 200, "GET {address}/metrics: {text}");
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "prometheus_client cannot parse {address}/metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The sum of family `family`'s samples named `sample` whose labels include `labels`.
pub fn sum(parsed: &Value, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(samples) = parsed[family]["samples"].as_array() else {
        panic!("no family {family} in {parsed}");
    };
    samples
        .iter()
        .filter(|s| s[0] == sample)
        .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map(|s| s[2].as_f64().expect("value"))
        .sum()
}
