//! Debian's headless Chromium for the dashboard tests: the binary, and a page driven over the
//! DevTools protocol through `--remote-debugging-pipe` (JSON messages separated by NUL bytes on
//! file descriptors 3 and 4: no WebSocket, no port), so a test can click the dashboard's buttons
//! and read what the page then shows. The browser is SIGKILLed by pid when the page is dropped.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one DevTools call may take.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// `chromium`, or a clear failure when it is not installed (the tests never skip).
pub fn chromium_binary() -> &'static str {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "Chromium is not installed: the dashboard tests drive Debian's `chromium` headless. \
         Install it with `scripts/zookeeper.sh install` (apt-get install chromium)."
    );
    "chromium"
}

/// One page in a headless Chromium of its own (fresh profile), driven over the DevTools pipe.
pub struct Page {
    child: Child,
    to_browser: std::fs::File,
    from_browser: mpsc::Receiver<Value>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Page {
    /// Starts Chromium and opens `url` in a new page.
    pub fn open(url: &str) -> Page {
        let bin = chromium_binary();
        let profile = tempfile::Builder::new()
            .prefix("eddy-chromium-")
            .tempdir()
            .expect("temp profile dir");
        // Chromium reads commands from fd 3 and writes answers and events to fd 4.
        let (commands_read, commands_write) = pipe();
        let (answers_read, answers_write) = pipe();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1280,1500",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        unsafe {
            cmd.pre_exec(move || {
                // Move both ends above 4 first, so neither dup2 overwrites the other.
                let r = libc::fcntl(commands_read, libc::F_DUPFD, 10);
                let w = libc::fcntl(answers_write, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        unsafe {
            libc::close(commands_read);
            libc::close(answers_write);
        }
        let to_browser = unsafe { std::fs::File::from_raw_fd(commands_write) };
        let mut answers = unsafe { std::fs::File::from_raw_fd(answers_read) };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = answers.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&message[..end]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut page = Page {
            child,
            to_browser,
            from_browser: rx,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = page.call("Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = page.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        page.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        page
    }

    /// One DevTools call (on the page once attached); its `result`. Events are skipped.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium's DevTools pipe");
        let deadline = Instant::now() + CALL_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.from_browser.recv_timeout(left).unwrap_or_else(|_| {
                panic!("chromium did not answer {method} within {CALL_LIMIT:?}")
            });
            if answer["id"].as_u64() == Some(id) {
                assert!(
                    answer.get("error").is_none(),
                    "chromium refused {method}: {}",
                    answer["error"]
                );
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (promises awaited); its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "the page threw on `{expression}`: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it gives neither null nor false; that value.
    pub fn wait_for(&mut self, what: &str, expression: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(expression);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.eval("document.body.innerText");
                panic!("the page never showed {what} within {limit:?}; it shows:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
