//! End-to-end: garbage on any port never kills a process. A real session cluster (one
//! JobManager, two TaskManagers) gets random bytes and absurd frames on every port its processes
//! listen on (found in /proc: RPC, REST, the data ports): a 500 MB length prefix, a registration
//! offering u32::MAX slots, a credit of u32::MAX, unknown message tags, truncated frames, bursts
//! of connections, and peers that send a few bytes one at a time and then nothing. Afterwards
//! every process is the same one, alive, no thread panicked, the stalled connections were closed
//! by the processes, and a `sequence` job across both TaskManagers runs to FINISHED with its
//! exactly-once witness intact.
//!
//! Every process binds 127.0.0.1 on free ports in a temp dir; [`Cluster`]'s drop stops them (also
//! on failure). Deadlines only bound hangs; nothing asserts on speed.

mod common;

use common::*;
use eddy_cluster::rpc::{read_message, write_message, JmMessage, TmMessage, FRAME_SIZE_KEY};
use eddy_rest::client;
use eddy_runtime::framing::FrameLimits;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
const CLI_LIMIT: Duration = Duration::from_secs(120);
/// Bound on a process closing a connection it must close (heartbeat.timeout is 2 s here).
const CLOSE_LIMIT: Duration = Duration::from_secs(20);

/// A session cluster started with `eddy cluster start` from its own conf dir; dropping it stops
/// every process it started, by `eddy cluster stop` and then SIGKILL.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    log: PathBuf,
    rest: String,
    rpc_port: u16,
}

impl Cluster {
    fn start(workers: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf");
        let log = dir.path().join("log");
        std::fs::create_dir_all(&conf).expect("create conf dir");
        let ports = free_ports(2);
        let (rest_port, rpc_port) = (ports[0], ports[1]);
        let keys: Vec<(String, String)> = [
            ("jobmanager.rpc.address", "127.0.0.1".to_string()),
            ("jobmanager.rpc.port", rpc_port.to_string()),
            ("rest.address", "127.0.0.1".to_string()),
            ("rest.bind-address", "127.0.0.1".to_string()),
            ("rest.port", rest_port.to_string()),
            ("taskmanager.host", "127.0.0.1".to_string()),
            ("taskmanager.numberOfTaskSlots", "2".to_string()),
            ("execution.checkpointing.interval", "200 ms".to_string()),
            (
                "execution.checkpointing.dir",
                dir.path().join("checkpoints").display().to_string(),
            ),
            ("restart-strategy.type", "none".to_string()),
            ("heartbeat.interval", "200 ms".to_string()),
            ("heartbeat.timeout", "2 s".to_string()),
            ("pekko.framesize", "1m".to_string()),
            ("env.log.dir", log.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_config_yaml(&conf, keys, &[]);
        std::fs::write(conf.join("masters"), format!("127.0.0.1:{rest_port}\n"))
            .expect("write masters");
        std::fs::write(conf.join("workers"), "127.0.0.1\n".repeat(workers)).expect("write workers");
        let c = Cluster {
            dir,
            conf,
            log,
            rest: format!("127.0.0.1:{rest_port}"),
            rpc_port,
        };
        let out = c.cli(&["cluster", "start", "--conf", &c.conf.display().to_string()]);
        assert_eq!(out.code, 0, "cluster start: {}\n{}", out.stderr, c.logs());
        c
    }

    fn cli(&self, args: &[&str]) -> Outcome {
        eddy_with_env(args, &[("EDDY_LOG", "info")], CLI_LIMIT)
    }

    /// Every log file's whole text, for failure messages and the panic check.
    fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(&self.log).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.push_str(&format!("--- {}\n{text}\n", e.path().display()));
        }
        out
    }

    /// (pid file name, pid) of every process the cluster started.
    fn processes(&self) -> Vec<(String, u32)> {
        let mut p = pid_files(&self.log);
        p.sort();
        p
    }

    fn taskmanagers(&self) -> Vec<Value> {
        match client::request(
            &self.rest,
            "GET",
            "/taskmanagers",
            None,
            Duration::from_secs(10),
        ) {
            Ok((200, v)) => v["taskmanagers"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pids: Vec<u32> = pid_files(&self.log).into_iter().map(|(_, p)| p).collect();
        if let Ok(mut child) = Command::new(EDDY)
            .args([
                "cluster",
                "stop",
                "--conf",
                &self.conf.display().to_string(),
            ])
            .env_remove("EDDY_CONF_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut left: Vec<u32> = pids
            .into_iter()
            .filter(|&p| alive(p) && cmdline(p).contains("eddy"))
            .collect();
        left.extend(processes_mentioning(&self.conf.display().to_string()));
        for pid in left {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// The TCP ports `pid` listens on: its socket inodes (/proc/PID/fd) matched against the
/// listening sockets of /proc/net/tcp and tcp6.
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                if let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
                {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

/// A deterministic xorshift stream of bytes.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn rpc_frame(msg: &TmMessage) -> Vec<u8> {
    let mut b = Vec::new();
    write_message(&mut b, msg).expect("encode");
    b
}

fn register(slots: u32) -> TmMessage {
    TmMessage::Register {
        tm_id: "garbage-tm".into(),
        data_address: "127.0.0.1:1".into(),
        slots,
        pid: 1,
    }
}

fn data_frame(kind: u8, channel: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = ((9 + payload.len()) as u32).to_le_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(&channel.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// Everything a hostile or broken peer might send, each on a connection of its own.
fn garbage() -> Vec<(&'static str, Vec<u8>)> {
    let valid = rpc_frame(&register(2));
    let mut unknown_tag = valid.clone();
    unknown_tag[4..8].copy_from_slice(&99u32.to_le_bytes());
    let mut huge_string = valid.clone();
    huge_string[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut huge_prefix = (500u32 << 20).to_le_bytes().to_vec();
    huge_prefix.extend(random_bytes(1, 1024));
    vec![
        ("random bytes", random_bytes(7, 4096)),
        ("a 500 MB length prefix", huge_prefix),
        (
            "a registration offering u32::MAX slots",
            rpc_frame(&register(u32::MAX)),
        ),
        ("a registration with an unknown message tag", unknown_tag),
        ("a string length of 2^64-1 in a small frame", huge_string),
        (
            "half a frame, then the end",
            valid[..valid.len() / 2].to_vec(),
        ),
        (
            "a credit of u32::MAX",
            data_frame(6, 1, &u32::MAX.to_le_bytes()),
        ),
        ("an unknown data frame kind", data_frame(200, 1, &[1, 2, 3])),
        (
            "a data frame shorter than its header",
            vec![3, 0, 0, 0, 1, 2, 3],
        ),
        (
            "a batch for a channel nobody knows, then an unknown frame kind",
            {
                let mut f = data_frame(2, 42, &random_bytes(3, 500));
                f.extend(data_frame(77, 42, &[]));
                f
            },
        ),
        (
            "an HTTP request",
            b"GET /jobs HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("an HTTP request with a huge body", {
            let mut r =
                b"POST /jars/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 524288000\r\n\r\n"
                    .to_vec();
            r.extend(random_bytes(5, 2048));
            r
        }),
    ]
}

/// Reads until the peer closes (true) or `limit` passes (false).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut b = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true, // reset by the peer
        }
    }
    false
}

/// Sends `bytes` to `port` on a fresh connection; returns the connection.
fn send(port: u16, bytes: &[u8]) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.write_all(bytes); // the peer may close before it has read it all
    Some(s)
}

#[test]
fn garbage_on_every_port_kills_no_process_and_a_job_still_runs() {
    let c = Cluster::start(2);
    let before = c.processes();
    assert_eq!(
        before.len(),
        3,
        "one JobManager and two TaskManagers: {before:?}"
    );
    let mut targets: Vec<(String, u16)> = Vec::new();
    for (name, pid) in &before {
        let ports = listening_ports(*pid);
        assert!(!ports.is_empty(), "{name} (pid {pid}) listens on no port");
        targets.extend(ports.into_iter().map(|p| (name.clone(), p)));
    }
    let rest_port: u16 = c
        .rest
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let ports: BTreeSet<u16> = targets.iter().map(|(_, p)| *p).collect();
    assert!(
        ports.contains(&c.rpc_port) && ports.contains(&rest_port),
        "{targets:?}"
    );
    assert!(
        targets.len() >= 4,
        "RPC, REST and two data ports: {targets:?}"
    );
    eprintln!("sending garbage to {targets:?}");

    // Peers that send a few bytes one at a time and then nothing, kept open meanwhile.
    let mut stalled: Vec<(String, u16, TcpStream)> = Vec::new();
    for (name, port) in &targets {
        let mut s = TcpStream::connect(("127.0.0.1", *port)).expect("connect");
        for b in [9u8, 0, 0] {
            let _ = s.write_all(&[b]);
            std::thread::sleep(Duration::from_millis(30));
        }
        stalled.push((name.clone(), *port, s));
    }

    for (name, port) in &targets {
        for (what, bytes) in garbage() {
            let Some(mut s) = send(*port, &bytes) else {
                panic!(
                    "{name} stopped accepting on port {port} (before: {what})\n{}",
                    c.logs()
                );
            };
            if *port != rest_port {
                assert!(
                    closed_within(&mut s, CLOSE_LIMIT),
                    "{name} kept the connection on port {port} open after {what}"
                );
            }
        }
        // A burst of connections at once.
        let burst: Vec<TcpStream> = (0..20)
            .filter_map(|i| send(*port, &random_bytes(100 + i, 64)))
            .collect();
        drop(burst);
    }

    // The JobManager answers an absurd registration with a one-line refusal.
    let mut s = send(c.rpc_port, &rpc_frame(&register(u32::MAX))).expect("connect to RPC");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let limits = FrameLimits {
        max_len: 1 << 20,
        key: FRAME_SIZE_KEY,
        frame_timeout: CLOSE_LIMIT,
        idle_timeout: Some(CLOSE_LIMIT),
    };
    match read_message::<JmMessage>(&mut s, &limits) {
        Ok(JmMessage::Refused { reason }) => assert!(
            reason.contains("4294967295 slots") && reason.contains("1 to 1024"),
            "{reason}"
        ),
        other => panic!("an absurd registration got {other:?}"),
    }

    // Stalled peers on the RPC and data ports are cut off (REST has its own timeouts).
    for (name, port, mut s) in stalled {
        if port != rest_port {
            assert!(
                closed_within(&mut s, CLOSE_LIMIT),
                "{name} kept a stalled connection on port {port} open"
            );
        }
    }

    assert_eq!(c.processes(), before, "the same processes run");
    for (name, pid) in &before {
        assert!(alive(*pid), "{name} (pid {pid}) died\n{}", c.logs());
    }
    let tms = c.taskmanagers();
    assert_eq!(
        tms.len(),
        2,
        "no garbage registered as a TaskManager: {tms:?}"
    );

    // A job across both TaskManagers (one slot each) still runs to the end, exactly once.
    let output = c.dir.path().join("seq");
    let out = c.cli(&[
        "run",
        "sequence",
        "--keys",
        "5",
        "--per-key",
        "1000",
        "--rate",
        "5000",
        "--output",
        &output.display().to_string(),
        "-p",
        "2",
        "-m",
        &c.rest,
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, c.logs());
    assert!(out.stdout.contains("FINISHED"), "{}", out.stdout);
    assert_eq!(
        witness(&committed_lines(&output), 5, 1000),
        (0, 0, 0),
        "(missing, duplicates, wrong counts)"
    );

    for (name, pid) in &before {
        assert!(alive(*pid), "{name} (pid {pid}) died\n{}", c.logs());
    }
    let logs = c.logs();
    assert!(!logs.contains("panicked"), "a thread panicked:\n{logs}");
}
