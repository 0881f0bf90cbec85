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
        while !matches!(jm.call("GET", "/overview", None), Ok((200, _))) {
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
        let log = std::fs::File::create(self.dir.path().join(format!("{role}-{}.log", self.procs.len())))
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
