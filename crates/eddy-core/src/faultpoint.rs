//! Fault points: named steps of the failure paths where a test can make the process crash.
//!
//! `EDDY_FAULT_POINTS=name[=action][,name[=action]...]` in the environment of a process arms the
//! named points; a point that is not named costs one lookup in an empty map. Actions:
//! - `exit` (the default): the process ends at once with exit code 86, running no destructors
//!   and flushing nothing, like a crash between two steps;
//! - `sleep-<ms>`: the calling thread sleeps that long, to widen a window in a test;
//! - `exit-on-file-<path>`: `exit` if the file `path` exists, removing it first, so that of the
//!   processes armed alike only the first to pass the point after the test created the file
//!   crashes, once (a restarted or standby process armed the same way goes on).
//! - `stop-on-file-<path>`: like `exit-on-file-`, but the whole process stops itself with
//!   SIGSTOP instead of exiting, paused at exactly this step until the test sends SIGCONT (a
//!   SIGSTOP sent from outside lands wherever the process happens to be).
//!
//! This is a test hook: it is read from the environment only (never from REST), and it works
//! only in a process whose configuration sets `eddy.test-hooks.enabled: true` ([`enable`]); a
//! process started with the variable set but the key off refuses to start. Every point is
//! listed in docs/architecture.md ("Fault points").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that arms fault points.
pub const ENV: &str = "EDDY_FAULT_POINTS";
/// The exit code of a process that crashed at a fault point.
pub const EXIT_CODE: i32 = 86;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Exit,
    Sleep(u64),
    ExitOnFile(std::path::PathBuf),
    StopOnFile(std::path::PathBuf),
}

fn parse(spec: &str) -> HashMap<String, Action> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|item| {
            let (name, action) = item.split_once('=').unwrap_or((item, "exit"));
            let action = match action {
                "exit" => Action::Exit,
                a if a.starts_with("exit-on-file-") => {
                    Action::ExitOnFile(a["exit-on-file-".len()..].into())
                }
                a if a.starts_with("stop-on-file-") => {
                    Action::StopOnFile(a["stop-on-file-".len()..].into())
                }
                a => Action::Sleep(a.strip_prefix("sleep-")?.parse().ok()?),
            };
            Some((name.to_string(), action))
        })
        .collect()
}

fn armed() -> &'static HashMap<String, Action> {
    static ARMED: OnceLock<HashMap<String, Action>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var(ENV).map(|s| parse(&s)).unwrap_or_default())
}

/// The configuration key that allows fault points (and the other test hooks).
pub const KEY: &str = "eddy.test-hooks.enabled";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Decides, once at process start, whether this process's fault points may be armed:
/// `test_hooks_enabled` is the configuration's `eddy.test-hooks.enabled`. Without it, points
/// stay disarmed, and a set `EDDY_FAULT_POINTS` is an error (the caller refuses to start), so a
/// hook is never silently ignored either.
pub fn enable(test_hooks_enabled: bool) -> Result<(), String> {
    if test_hooks_enabled {
        ENABLED.store(true, Ordering::SeqCst);
        return Ok(());
    }
    match std::env::var(ENV) {
        Ok(spec) if !spec.trim().is_empty() => Err(format!(
            "{ENV}='{}' is a test hook and test hooks are off: set {KEY}: true in the configuration to arm fault points, or unset {ENV}",
            spec.replace(['\n', '\r'], " ")
        )),
        _ => Ok(()),
    }
}

/// Passes the fault point `name`: crashes or sleeps when the environment armed it (and
/// [`enable`] allowed it).
pub fn hit(name: &str) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    match armed().get(name) {
        None => {}
        Some(Action::Exit) => {
            eprintln!("fault point '{name}' reached: exiting with code {EXIT_CODE}");
            // `_exit` semantics: no destructors, no buffered output flushed, no cleanup.
            std::process::exit(EXIT_CODE);
        }
        Some(Action::Sleep(ms)) => std::thread::sleep(Duration::from_millis(*ms)),
        // Removing the file is the claim: one process wins it.
        Some(Action::ExitOnFile(path)) if std::fs::remove_file(path).is_ok() => {
            eprintln!("fault point '{name}' reached: exiting with code {EXIT_CODE}");
            std::process::exit(EXIT_CODE);
        }
        Some(Action::ExitOnFile(_)) => {}
        Some(Action::StopOnFile(path)) if std::fs::remove_file(path).is_ok() => {
            eprintln!("fault point '{name}' reached: stopping the process (SIGSTOP)");
            // SIGSTOP stops every thread of the process, as a `kill -STOP` from outside does.
            // SAFETY: raise(3) has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
        }
        Some(Action::StopOnFile(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_points_with_default_and_explicit_actions() {
        let p =
            parse("a, b=exit ,c=sleep-250,d=bogus,e=exit-on-file-/tmp/x=y,f=stop-on-file-/t/s,,");
        assert_eq!(p.get("a"), Some(&Action::Exit));
        assert_eq!(p.get("b"), Some(&Action::Exit));
        assert_eq!(p.get("c"), Some(&Action::Sleep(250)));
        assert_eq!(p.get("d"), None, "an unknown action arms nothing");
        assert_eq!(p.get("e"), Some(&Action::ExitOnFile("/tmp/x=y".into())));
        assert_eq!(p.get("f"), Some(&Action::StopOnFile("/t/s".into())));
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn unarmed_point_does_nothing() {
        hit("no.such.point");
    }
}
