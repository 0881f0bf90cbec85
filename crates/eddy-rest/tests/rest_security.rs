//! The REST API against hostile or unwanted requests (issue 14, docs/security.md):
//! `web.submit.enable` / `web.cancel.enable`, the body size limit, malformed and unknown input,
//! cluster settings in a submission, and a seeded fuzz run. A real JobManager and TaskManager in
//! this process (TCP on 127.0.0.1) and the REST server on a free port; every test shuts its
//! cluster down through a guard, also when an assertion fails.

use eddy_cluster::{jobmanager, taskmanager, JobManagerHandle, TaskManagerHandle};
use eddy_core::config::Config;
use eddy_rest::client;
use eddy_rest::RestServer;
use eddy_runtime::data::now_millis;
use eddy_runtime::registry::{JobArgs, JobDefinition, JobRegistry};
use eddy_runtime::{Output, Result, Sink, Source, SourceStatus, StreamEnv, TaskInfo};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Emits one number every few milliseconds, forever.
#[derive(Clone)]
struct Ticks(u64);

impl Source for Ticks {
    type Out = u64;
    fn open(
        &mut self,
        _info: &TaskInfo,
        _r: Option<&eddy_runtime::snapshot::OperatorSnapshot>,
    ) -> Result<()> {
        Ok(())
    }
    fn poll_next(&mut self, out: &mut Output<u64>, _max: usize) -> Result<SourceStatus> {
        out.push(self.0);
        self.0 += 1;
        Ok(SourceStatus::IdleUntil(now_millis() + 5))
    }
}

struct Discard;

impl Sink for Discard {
    type In = u64;
    fn write_batch(&mut self, batch: &mut Vec<u64>) -> Result<()> {
        batch.clear();
        Ok(())
    }
}

/// `endless`: runs until cancelled.
fn endless_job(env: &StreamEnv, _args: &mut JobArgs) -> Result<()> {
    env.add_source("Ticks", || Ticks(0))
        .sink_to("Discard", || Discard);
    Ok(())
}

fn registry() -> Arc<JobRegistry> {
    let mut r = JobRegistry::new();
    r.register(JobDefinition {
        name: "endless",
        description: "unbounded test job",
        arguments: &[],
        build: endless_job,
    });
    Arc::new(r)
}

/// A JobManager, one TaskManager and the REST server; shut down on drop.
struct Cluster {
    jm: JobManagerHandle,
    tm: Option<TaskManagerHandle>,
    rest: Option<RestServer>,
    url: String,
    port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(rest) = self.rest.take() {
            rest.shutdown();
        }
        if let Some(tm) = self.tm.take() {
            tm.shutdown();
        }
        self.jm.shutdown();
    }
}

impl Cluster {
    /// `pairs`: the JobManager's configuration on top of two slots.
    fn start(pairs: &[(&str, &str)]) -> Cluster {
        let mut all = vec![("taskmanager.numberOfTaskSlots", "2")];
        all.extend_from_slice(pairs);
        let config = Config::from_pairs(&all).unwrap();
        let reg = registry();
        let jm = jobmanager::start(config.clone(), reg.clone(), "127.0.0.1", 0).unwrap();
        let tm = taskmanager::start(&config, reg, jm.rpc_address.clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while jm.taskmanagers().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the TaskManager did not register"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let rest = eddy_rest::start(jm.clone(), config, "127.0.0.1", 0).unwrap();
        Cluster {
            jm,
            tm: Some(tm),
            url: rest.url(),
            port: rest.address.port(),
            rest: Some(rest),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        client::request(
            &self.url,
            method,
            path,
            body.as_ref(),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn job_count(&self) -> usize {
        self.jm.list().unwrap().len()
    }

    /// Sends raw bytes as one request and returns the status code of the answer (`None` when
    /// the server closed the connection without one).
    fn raw(&self, request: &[u8]) -> Option<u16> {
        self.raw_with(request, false)
    }

    /// [`Cluster::raw`]; `half_close` ends the sending side after the bytes (for a request that
    /// announces more body than it sends, which the server would otherwise wait for).
    fn raw_with(&self, request: &[u8], half_close: bool) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        // The server may answer and close before reading everything (e.g. 413): not an error.
        let _ = s.write_all(request);
        if half_close {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
        status.parse().ok()
    }
}

fn error_line(v: &Value) -> String {
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {v}"));
    assert_eq!(errors.len(), 1, "{v}");
    let line = errors[0].as_str().unwrap().to_string();
    assert!(!line.contains('\n'), "{line}");
    line
}

#[test]
fn submission_and_cancellation_can_be_turned_off() {
    // Defaults (Flink's): both on.
    let on = Cluster::start(&[]);
    let (code, v) = on.call("POST", "/jobs", Some(json!({"job": "endless"})));
    assert_eq!(code, 202, "{v}");
    let id = v["jobid"].as_str().unwrap().to_string();
    let (code, v) = on.call("PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!(code, 202, "{v}");
    drop(on);

    let off = Cluster::start(&[
        ("web.submit.enable", "false"),
        ("web.cancel.enable", "false"),
    ]);
    let (code, v) = off.call("POST", "/jobs", Some(json!({"job": "endless"})));
    assert_eq!(code, 403, "{v}");
    assert!(error_line(&v).contains("web.submit.enable"), "{v}");
    assert_eq!(off.job_count(), 0, "a refused submission started a job");
    // A job submitted another way (here: the JobManager's own handle) cannot be cancelled.
    let spec = eddy_runtime::registry::JobSpec {
        name: "endless".into(),
        args: vec![],
        config: Config::default(),
        parallelism: 1,
    };
    let id = off.jm.submit(spec).unwrap();
    let (code, v) = off.call("PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!(code, 403, "{v}");
    assert!(error_line(&v).contains("web.cancel.enable"), "{v}");
    std::thread::sleep(Duration::from_millis(200));
    let (_, d) = off.call("GET", &format!("/jobs/{id}"), None);
    assert!(
        matches!(
            d["state"].as_str(),
            Some("RUNNING" | "CREATED" | "INITIALIZING")
        ),
        "the job was cancelled anyway: {d}"
    );
    // Reading stays allowed.
    assert_eq!(off.call("GET", "/jobs/overview", None).0, 200);
}

#[test]
fn hostile_bodies_get_one_line_4xx_and_change_nothing() {
    let c = Cluster::start(&[("rest.server.max-content-length", "4k")]);
    let big = json!({"job": "endless", "args": ["x".repeat(8 * 1024)]});
    let cases: Vec<(&str, Option<Value>, u16, &str)> = vec![
        // Over the limit: 413, naming the key.
        ("big", Some(big), 413, "rest.server.max-content-length"),
        // Cluster settings in a submission: 400 naming the key.
        (
            "ha",
            Some(
                json!({"job": "endless", "config": {"high-availability.storageDir": "/tmp/evil"}}),
            ),
            400,
            "high-availability.storageDir",
        ),
        (
            "dir",
            Some(json!({"job": "endless", "config": {"state.checkpoints.dir": "/tmp/evil"}})),
            400,
            "state.checkpoints.dir",
        ),
        (
            "port",
            Some(json!({"job": "endless", "config": {"rest.port": 1}})),
            400,
            "rest.port",
        ),
        // Unknown keys and fields.
        (
            "key",
            Some(json!({"job": "endless", "config": {"no.such.key": "1"}})),
            400,
            "no.such.key",
        ),
        (
            "field",
            Some(json!({"job": "endless", "jar": "/tmp/evil.jar"})),
            400,
            "jar",
        ),
        // Not what was expected.
        (
            "array",
            Some(json!([1, 2, 3])),
            400,
            "invalid job submission body",
        ),
        (
            "unknown job",
            Some(json!({"job": "../../etc/passwd"})),
            400,
            "unknown job",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (code, v) = c.call("POST", "/jobs", body);
        assert_eq!(code, status, "{what}: {v}");
        assert!(error_line(&v).contains(needle), "{what}: {v}");
    }
    // Raw bytes that are no JSON at all, and a truncated document.
    for body in [
        &b"{\"job\": \"endless\""[..],
        b"\xff\xfe\x00garbage",
        b"null",
    ] {
        let mut req = format!(
            "POST /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        assert_eq!(
            c.raw(&req),
            Some(400),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // A Content-Length far over the limit is refused without waiting for the body.
    let req = b"POST /jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{";
    assert_eq!(c.raw(req), Some(413));
    // Traversal in the URL path: no file is ever served, only 4xx.
    for path in [
        "/jobs/../../etc/passwd",
        "/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/../../etc/passwd",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let code = c.raw(req.as_bytes()).expect("an answer");
        assert!((400..500).contains(&code), "{path}: {code}");
    }
    assert_eq!(c.job_count(), 0, "a refused request started a job");
    // Still serving.
    assert_eq!(c.call("GET", "/overview", None).0, 200);
}

/// xorshift64*: a seeded, dependency-free generator for the fuzz run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SEGMENTS: &[&str] = &[
    "jobs",
    "overview",
    "config",
    "jobmanager",
    "taskmanagers",
    "metrics",
    "status",
    "checkpoints",
    "exceptions",
    "eddy-details",
    "..",
    ".",
    "%2e%2e",
    "%00",
    "%ff",
    "",
    "00000000000000000000000000000000",
    "ffffffffffffffffffffffffffffffff",
    "x",
    "~root",
    "jobs?mode=cancel",
    "?maxExceptions=-1",
    "?maxExceptions=99999999999999999999",
    "%",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO",
];

fn random_path(rng: &mut Rng) -> String {
    let mut path = String::new();
    for _ in 0..1 + rng.below(5) {
        path.push('/');
        let segment: &&str = rng.pick(SEGMENTS);
        path.push_str(segment);
    }
    if rng.below(10) == 0 {
        // A random printable tail, percent-encoded where needed.
        for _ in 0..rng.below(40) {
            let b = rng.below(256) as u8;
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                path.push(b as char);
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
    }
    path
}

fn random_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        1 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        2 => json!({"job": *rng.pick(&["endless", "", "nope", "../x"]), "parallelism": rng.next() % 5})
            .to_string()
            .into_bytes(),
        3 => json!({"job": "x", "config": {*rng.pick(&["rest.port", "no.key", "parallelism.default"]): *rng.pick(&["-1", "abc", "1"])}})
            .to_string()
            .into_bytes(),
        4 => {
            // A valid-looking document cut at a random point.
            let doc = json!({"job": "endless", "args": ["--a", "b"], "config": {}}).to_string();
            doc.as_bytes()[..rng.below(doc.len())].to_vec()
        }
        _ => b"{\"job\": \"endless\", \"parallelism\": 0}".to_vec(),
    }
}

#[test]
fn fuzzed_requests_never_get_a_5xx_and_the_server_stays_up() {
    // Submissions are off so that a body that happens to be valid cannot start jobs that fill
    // the slots; everything else answers as usual.
    let c = Cluster::start(&[
        ("web.submit.enable", "false"),
        ("rest.server.max-content-length", "1k"),
    ]);
    let seed = 0xedd7_u64 ^ 14;
    let mut rng = Rng(seed);
    const REQUESTS: usize = 600;
    let mut answered = 0;
    for i in 0..REQUESTS {
        let method = *rng.pick(METHODS);
        let path = random_path(&mut rng);
        let body = random_body(&mut rng);
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        let mut short = false;
        match rng.below(4) {
            0 => short = !body.is_empty(),
            1 => req.push_str(&format!("Content-Length: {}\r\n", body.len())),
            2 => req.push_str(&format!(
                "Content-Length: {}\r\nContent-Type: application/json\r\n",
                body.len()
            )),
            _ => {
                req.push_str(&format!(
                    "Content-Length: {}\r\n",
                    body.len() + 1 + rng.below(5000)
                ));
                short = true;
            }
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(&body);
        if rng.below(20) == 0 {
            // A request line that is no HTTP at all.
            bytes = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
            bytes.extend_from_slice(b"\r\n\r\n");
            short = true;
        }
        if let Some(code) = c.raw_with(&bytes, short) {
            answered += 1;
            assert!(
                code < 500,
                "request {i} (seed {seed}): {method} {path} answered {code}"
            );
        }
    }
    assert!(
        answered > REQUESTS / 2,
        "only {answered} of {REQUESTS} requests got an answer"
    );
    assert_eq!(c.job_count(), 0);
    let (code, v) = c.call("GET", "/overview", None);
    assert_eq!(code, 200, "{v}");
}
