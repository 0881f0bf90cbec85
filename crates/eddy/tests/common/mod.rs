//! Helpers for end-to-end tests: run the real `eddy` binary with a time limit (killed by PID on
//! timeout or when the test panics), and read committed output files. `committed.rs` watches
//! that committed output is never retracted.
#![allow(dead_code)]

pub mod chromium;
pub mod committed;
pub mod ha_cluster;
pub mod moto;
pub mod plain_cluster;
pub mod prometheus;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Kills the child when dropped (test failure or timeout).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `eddy ARGS` and waits at most `limit`.
pub fn eddy(args: &[&str], limit: Duration) -> Outcome {
    eddy_with_env(args, &[("EDDY_LOG", "warn")], limit)
}

/// Runs `eddy ARGS` with the environment variables `env` set (and `EDDY_CONF_DIR` removed), and
/// waits at most `limit`. Processes it starts in the background inherit `env`.
pub fn eddy_with_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Outcome {
    let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("EDDY_CONF_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eddy");
    let mut guard = Guard(child);
    let start = Instant::now();
    loop {
        if let Some(_status) = guard.0.try_wait().expect("wait") {
            break;
        }
        if start.elapsed() > limit {
            panic!("eddy {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let child = std::mem::replace(
        &mut guard.0,
        Command::new("true").spawn().expect("spawn true"),
    );
    let out = child.wait_with_output().expect("output");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// All lines of the committed (non-hidden) files in `dir`.
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).expect("read output dir") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read part file");
        lines.extend(text.lines().map(|l| l.to_string()));
    }
    lines
}

/// Checks the exactly-once witness on `key,seq,count` lines: every key has seq 1..=per_key
/// exactly once and count == seq. Returns (missing, duplicates, wrong counts).
pub fn witness(lines: &[String], keys: u64, per_key: u64) -> (u64, u64, u64) {
    let mut seen: HashMap<(u64, u64), u64> = HashMap::new();
    let mut wrong = 0;
    for l in lines {
        let f: Vec<u64> = l
            .split(',')
            .map(|x| x.trim().parse().expect("number"))
            .collect();
        assert_eq!(f.len(), 3, "bad line {l}");
        if f[1] != f[2] {
            wrong += 1;
        }
        *seen.entry((f[0], f[1])).or_default() += 1;
    }
    let mut missing = 0;
    let mut dups = 0;
    for k in 0..keys {
        for s in 1..=per_key {
            match seen.get(&(k, s)).copied().unwrap_or(0) {
                0 => missing += 1,
                1 => {}
                n => dups += n - 1,
            }
        }
    }
    (missing, dups, wrong)
}

/// A deterministic text of about `bytes` bytes, and its reference word counts (lowercase,
/// split on non-alphanumerics).
pub fn text_and_counts(bytes: usize) -> (String, BTreeMap<String, u64>) {
    const WORDS: &[&str] = &[
        "the",
        "Stream",
        "flows",
        "eddy",
        "state",
        "Barrier",
        "check",
        "point",
        "x1",
        "über",
        "naïve",
        "TaskManager",
        "a",
        "Z",
    ];
    let mut s = String::with_capacity(bytes + 100);
    let mut x: u64 = 0x2545F4914F6CDD1D;
    while s.len() < bytes {
        for _ in 0..12 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
            s.push_str(match x % 5 {
                0 => ", ",
                1 => "  ",
                2 => "-",
                3 => "; ",
                _ => " ",
            });
            if x.is_multiple_of(97) {
                s.push_str(&format!("w{} ", x % 1000));
            }
        }
        s.push('\n');
    }
    let mut counts = BTreeMap::new();
    for w in s
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(w.to_lowercase()).or_default() += 1;
    }
    (s, counts)
}

/// `n` distinct ports for the servers a test starts, each reserved for this test process.
///
/// Ports come from 20000–32767, below the kernel's ephemeral range (32768–60999 here), so an
/// outgoing connection of another test can never take one between the pick and the server's
/// bind (the race a kernel pick of `127.0.0.1:0` has). Concurrent test processes stay apart
/// through an exclusive lock on `<tmp>/eddy-test-ports/<port>` that each holds until it exits.
/// A port is handed out only if it can be bound right now.
pub fn free_ports(n: usize) -> Vec<u16> {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_768;
    let dir = std::env::temp_dir().join("eddy-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port reservation directory");
    let own = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = (own.wrapping_mul(2_654_435_761) ^ nanos) | 1;
    let mut ports = Vec::with_capacity(n);
    for _ in 0..SPAN {
        if ports.len() == n {
            break;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = (FIRST + x % SPAN) as u16;
        if ports.contains(&port) || !reserve_port(&dir, port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), n, "no {n} free ports in 20000-32767");
    ports
}

/// Takes the reservation of `port` for this process: an exclusive lock on its file, held until
/// the process exits (the kernel drops it then, also on SIGKILL or a panic).
fn reserve_port(dir: &std::path::Path, port: u16) -> bool {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return false;
    };
    if file.try_lock().is_err() {
        return false;
    }
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    true
}

/// The fields of a stat(5) file (`/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`) after the
/// command: index 0 is the state, 1 the parent, 11/12 the user/system ticks, 16 the nice value.
/// Empty if the file cannot be read.
pub fn stat_fields(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(rest.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_default()
}

/// The state letter of `pid` (`R`, `S`, `T` stopped, `Z` zombie, ...), if it exists.
pub fn process_state(pid: u32) -> Option<String> {
    stat_fields(&format!("/proc/{pid}/stat")).into_iter().next()
}

/// Whether `pid` runs (a stopped process runs; a zombie, exited but not reaped, does not).
pub fn alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|s| s != "Z")
}

pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Every live process whose command line mentions `needle` (a test's unique conf dir).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != own && alive(pid) && cmdline(pid).contains(needle))
                .collect()
        })
        .unwrap_or_default()
}

/// The `eddy-*.pid` files of a log dir, with the pid each names.
pub fn pid_files(log_dir: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("eddy-") && name.ends_with(".pid")) {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((name, text.lines().next()?.trim().parse().ok()?))
        })
        .collect()
}

/// Writes `config.yaml` into `conf`: the `base` keys, each overridden (or extended) by `extra`.
pub fn write_config_yaml(conf: &Path, mut keys: Vec<(String, String)>, extra: &[(&str, String)]) {
    for (k, v) in extra {
        match keys.iter_mut().find(|(key, _)| key == k) {
            Some(entry) => entry.1 = v.clone(),
            None => keys.push((k.to_string(), v.clone())),
        }
    }
    let yaml: String = keys.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    std::fs::write(conf.join("config.yaml"), yaml).expect("write config.yaml");
}
