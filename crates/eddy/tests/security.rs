//! Security end to end (issue 14, docs/security.md): what a default configuration exposes, and
//! that test hooks are refused unless the cluster enables them. Real `eddy jobmanager` /
//! `eddy taskmanager` processes on free ports, killed by PID when the test ends (also on failure).

mod common;

use common::*;
use eddy_rest::client;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// One JobManager process (and optionally TaskManagers) from a conf dir of its own.
struct Jm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    rest_port: u16,
    procs: Vec<Proc>,
}

impl Jm {
    /// Writes config.yaml with free RPC and REST ports plus `extra`, and starts `eddy jobmanager`.
    /// `rest.bind-address` is left to `extra`: its default is what the tests look at.
    fn start(extra: &[(&str, &str)]) -> Jm {
        Self::start_with_token(extra, "")
    }

    /// [`Jm::start`] for a JobManager whose REST API needs `token` (empty: none).
    fn start_with_token(extra: &[(&str, &str)], token: &str) -> Jm {
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
            ("heartbeat.interval", "200 ms".to_string()),
            ("heartbeat.timeout", "2 s".to_string()),
            ("env.log.dir", dir.path().join("log").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let extra: Vec<(&str, String)> = extra.iter().map(|(k, v)| (*k, v.to_string())).collect();
        write_config_yaml(&conf, keys, &extra);
        let mut jm = Jm {
            dir,
            conf,
            rest_port: ports[0],
            procs: Vec::new(),
        };
        jm.spawn("jobmanager");
        let deadline = Instant::now() + START_LIMIT;
        let t = (!token.is_empty()).then_some(token);
        while !matches!(
            client::request_with_token(&jm.rest(), "GET", "/overview", None, HTTP_TIMEOUT, t),
            Ok((200, _))
        ) {
            assert!(
                Instant::now() < deadline,
                "the JobManager did not answer on {}: {}",
                jm.rest(),
                jm.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        jm
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

    fn pid(&self) -> u32 {
        self.procs[0].0.id()
    }

    fn rest(&self) -> String {
        format!("127.0.0.1:{}", self.rest_port)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        client::request(&self.rest(), method, path, body, HTTP_TIMEOUT)
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

/// The local addresses on which `pid` listens on TCP `port` (from /proc/PID/net/tcp{,6}).
fn listening_addresses(pid: u32, port: u16) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (file, v6) in [("tcp", false), ("tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols[1] = local "ADDR:PORT" in hex, cols[3] = state (0A = LISTEN).
            let (Some(local), Some("0A")) = (cols.get(1), cols.get(3).copied()) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            let ip = if v6 {
                let mut bytes = [0u8; 16];
                for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                    let word = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).expect("hex");
                    chunk.copy_from_slice(&word.to_le_bytes());
                }
                IpAddr::from(bytes)
            } else {
                let word = u32::from_str_radix(addr, 16).expect("hex");
                IpAddr::V4(Ipv4Addr::from(word.to_le_bytes()))
            };
            out.push(ip);
        }
    }
    out
}

/// This machine's IPv4 addresses that are not loopback (from getifaddrs).
fn non_loopback_ipv4() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let sin = &*(addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() {
                    out.push(ip);
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

fn reachable(ip: Ipv4Addr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_secs(2)).is_ok()
}

#[test]
fn by_default_rest_listens_on_loopback_only_and_bind_address_opens_it() {
    let others = non_loopback_ipv4();
    let jm = Jm::start(&[]);
    let bound = listening_addresses(jm.pid(), jm.rest_port);
    assert_eq!(
        bound,
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        "default REST bind address"
    );
    for ip in &others {
        assert!(
            !reachable(*ip, jm.rest_port),
            "REST reachable on {ip}:{} with the default configuration",
            jm.rest_port
        );
    }
    // The JobManager's RPC port is loopback too (jobmanager.rpc.address here is 127.0.0.1).
    drop(jm);

    // The control: with rest.bind-address 0.0.0.0 the same check sees all interfaces, so the
    // assertions above can fail.
    let jm = Jm::start(&[("rest.bind-address", "0.0.0.0")]);
    let bound = listening_addresses(jm.pid(), jm.rest_port);
    assert_eq!(bound, vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
    for ip in &others {
        assert!(reachable(*ip, jm.rest_port), "{ip}:{}", jm.rest_port);
    }
}

/// The `POST /jobs` body of a `sequence` job writing to `output` with `args` appended.
fn sequence_body(output: &Path, args: &[&str], config: Value) -> Value {
    let mut all = vec![
        "--keys".to_string(),
        "2".into(),
        "--per-key".into(),
        "1000000".into(),
        "--rate".into(),
        "200".into(),
        "--output".into(),
        output.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    json!({"job": "sequence", "args": all, "parallelism": 1, "config": config})
}

fn first_error(v: &Value) -> String {
    v["errors"][0].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_rest_submitted_test_hook_is_refused_unless_the_cluster_enables_hooks() {
    let jm = Jm::start(&[]);
    let trigger = jm.dir.path().join("precious");
    std::fs::write(&trigger, "keep me").unwrap();
    let output = jm.dir.path().join("out");
    let t = trigger.display().to_string();
    // Every hook of `sequence`, alone.
    for hook in [
        &["--fail-on-file", t.as_str()][..],
        &["--fail-every", "5"],
        &["--fail-probability", "0.5"],
        &["--fail-subtask", "0"],
        &["--snapshot-delay-ms", "100"],
        &["--slow-snapshots", "1"],
        &["--cancel-delay-ms", "100"],
    ] {
        let (code, v) = jm
            .call(
                "POST",
                "/jobs",
                Some(&sequence_body(&output, hook, json!({}))),
            )
            .expect("POST /jobs");
        let e = first_error(&v);
        assert_eq!(code, 400, "{hook:?}: {v}");
        assert!(
            e.contains(hook[0]) && e.contains("eddy.test-hooks.enabled") && !e.contains('\n'),
            "{hook:?}: {e}"
        );
    }
    // A submitted job cannot switch hooks on for itself.
    let body = sequence_body(
        &output,
        &["--fail-on-file", &t],
        json!({"eddy.test-hooks.enabled": "true"}),
    );
    let (code, v) = jm.call("POST", "/jobs", Some(&body)).unwrap();
    assert_eq!(code, 400, "{v}");
    assert!(
        first_error(&v).starts_with(
            "configuration key 'eddy.test-hooks.enabled' cannot be set by a submitted job"
        ),
        "{v}"
    );
    // Path arguments may not climb with '..' (nor carry control characters).
    let climbing = jm
        .dir
        .path()
        .join("out")
        .join("..")
        .join("..")
        .join("escaped");
    let (code, v) = jm
        .call(
            "POST",
            "/jobs",
            Some(&sequence_body(&climbing, &[], json!({}))),
        )
        .unwrap();
    assert_eq!(code, 400, "{v}");
    assert!(first_error(&v).contains("may not contain '..'"), "{v}");
    let body = json!({"job": "word-count", "args": ["--input", "/tmp/../etc/passwd", "--output", output.display().to_string()]});
    let (code, v) = jm.call("POST", "/jobs", Some(&body)).unwrap();
    assert_eq!(code, 400, "{v}");
    assert!(first_error(&v).contains("--input"), "{v}");
    assert!(!jm.dir.path().parent().unwrap().join("escaped").exists());
    // No side effect: the file is untouched, no output directory, no job.
    assert_eq!(std::fs::read_to_string(&trigger).unwrap(), "keep me");
    assert!(
        !output.exists(),
        "a refused job created its output directory"
    );
    let (_, jobs) = jm.call("GET", "/jobs", None).unwrap();
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
}

#[test]
fn with_test_hooks_enabled_the_same_hook_works() {
    // The control of the test above: the hook is refused because of the key, not the body.
    let mut jm = Jm::start(&[("eddy.test-hooks.enabled", "true")]);
    jm.spawn("taskmanager");
    let trigger = jm.dir.path().join("fail-now");
    std::fs::write(&trigger, "").unwrap();
    let output = jm.dir.path().join("out");
    let t = trigger.display().to_string();
    let body = sequence_body(&output, &["--fail-on-file", &t], json!({}));
    let (code, v) = jm.call("POST", "/jobs", Some(&body)).unwrap();
    assert_eq!(code, 202, "{v}\n{}", jm.log());
    let deadline = Instant::now() + Duration::from_secs(60);
    while trigger.exists() {
        assert!(
            Instant::now() < deadline,
            "the job never consumed --fail-on-file\n{}",
            jm.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fault_points_need_the_key_or_the_process_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let rest = format!("rest.port={}", ports[0]);
    let rpc = format!("jobmanager.rpc.port={}", ports[1]);
    let env = [
        ("EDDY_FAULT_POINTS", "jm.job-result.before-dirty"),
        ("EDDY_LOG", "warn"),
    ];
    let args = [
        "jobmanager",
        "-D",
        &rest,
        "-D",
        &rpc,
        "-D",
        "jobmanager.rpc.address=127.0.0.1",
    ];
    let out = eddy_with_env(&args, &env, Duration::from_secs(30));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("EDDY_FAULT_POINTS"))
        .unwrap_or_default();
    assert!(line.contains("eddy.test-hooks.enabled"), "{}", out.stderr);
    // `eddy local` follows the same rule, for fault points and for job hooks.
    let output = dir.path().join("out");
    let o = output.to_str().unwrap();
    let local = [
        "local",
        "sequence",
        "--keys",
        "1",
        "--per-key",
        "10",
        "--output",
        o,
    ];
    let out = eddy_with_env(&local, &env, Duration::from_secs(30));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("eddy.test-hooks.enabled"),
        "{}",
        out.stderr
    );
    let mut hooked = local.to_vec();
    hooked.extend(["--fail-every", "5"]);
    let out = eddy(&hooked, Duration::from_secs(30));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("--fail-every is a test hook")
            && out.stderr.contains("eddy.test-hooks.enabled"),
        "{}",
        out.stderr
    );
    assert!(!output.exists());
    let mut slowed = local.to_vec();
    slowed.extend(["--count-delay-us", "100"]);
    let out = eddy(&slowed, Duration::from_secs(30));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("--count-delay-us is a test hook"),
        "{}",
        out.stderr
    );
    assert!(!output.exists());
    // With the key, both are accepted and the job runs to its end (that fault points then fire
    // is what the HA tests' crashes show).
    let mut enabled = local.to_vec();
    enabled.extend(["--fail-subtask", "0", "-D", "eddy.test-hooks.enabled=true"]);
    let out = eddy_with_env(&enabled, &env, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(witness(&committed_lines(&output), 1, 10), (0, 0, 0));
}

#[test]
fn rest_needs_the_bearer_token_and_the_cli_sends_it_from_its_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("rest.token");
    std::fs::write(&token_file, "s3cret-Token_1\n").unwrap();
    let tf = token_file.display().to_string();
    let jm = Jm::start_with_token(&[("eddy.rest.auth.token-file", &tf)], "s3cret-Token_1");
    let call = |method: &str, path: &str, body: Option<&Value>, token: Option<&str>| {
        client::request_with_token(&jm.rest(), method, path, body, HTTP_TIMEOUT, token)
            .expect("request")
    };
    for path in [
        "/overview",
        "/jobs",
        "/jobmanager/config",
        "/metrics",
        "/jobmanager/eddy-info",
        "/jobmanager/log",
        "/jobs/00000000000000000000000000000000/recoveries",
        "/no/such/path",
    ] {
        for token in [None, Some("wrong"), Some("s3cret-Token_")] {
            let (code, v) = call("GET", path, None, token);
            assert_eq!(code, 401, "{path} with {token:?}: {v}");
            assert!(
                !first_error(&v).is_empty() && !first_error(&v).contains('\n'),
                "{v}"
            );
        }
    }
    // The dashboard's static files carry no data and load without the token (the page then
    // asks for it); nothing else does, not even another method on the same path.
    for path in ["/", "/assets/dashboard.js", "/assets/dashboard.css"] {
        let (code, v) = call("GET", path, None, None);
        assert_eq!(code, 200, "{path}: {v}");
        assert!(v.as_str().is_some_and(|t| !t.is_empty()), "{path}: {v}");
    }
    let (code, _) = call("POST", "/", None, None);
    assert_eq!(code, 401, "POST / without the token");
    let output = jm.dir.path().join("out");
    let (code, _) = call(
        "POST",
        "/jobs",
        Some(&sequence_body(&output, &[], json!({}))),
        None,
    );
    assert_eq!(code, 401);
    let (code, v) = call("GET", "/jobs", None, Some("s3cret-Token_1"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["jobs"],
        json!([]),
        "an unauthenticated POST started a job"
    );
    assert!(!output.exists());

    // The CLI reads the token file from its configuration ...
    let out = eddy(
        &[
            "list",
            "--conf",
            jm.conf.to_str().unwrap(),
            "-m",
            &jm.rest(),
        ],
        HTTP_TIMEOUT,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("No running or scheduled jobs."),
        "{}",
        out.stdout
    );
    // ... and without it is refused with the server's line.
    let out = eddy(&["list", "-m", &jm.rest()], HTTP_TIMEOUT);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("Authorization: Bearer"),
        "{}",
        out.stderr
    );
}
