//! The dashboard's job actions, clicked in a real headless Chromium (driven over the DevTools
//! pipe, common/chromium.rs) against a plain session cluster: "Trigger savepoint" writes a
//! savepoint and the page shows its path; "Stop with savepoint" ends the job FINISHED and shows
//! the final savepoint, from which the job then resumes to the end with its output exactly once.
//! Each confirmation dialog is answered "yes" by the test (`window.confirm`).

mod common;

use common::chromium::Page;
use common::plain_cluster::Cluster;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

const PAGE_LIMIT: Duration = Duration::from_secs(90);

/// Clicks the button `id` on the page and waits for the outcome line of the action `what`
/// (the previous outcome is removed first); its text.
fn click_and_wait(page: &mut Page, id: &str, what: &str) -> String {
    page.wait_for(
        &format!("the button #{id}"),
        &format!("document.getElementById('{id}') !== null"),
        PAGE_LIMIT,
    );
    page.eval(&format!(
        "window.confirm = () => true; document.getElementById('action-result')?.remove(); \
         document.getElementById('{id}').click(); true"
    ));
    let text = page.wait_for(
        &format!("the outcome of #{id}"),
        &format!(
            "(e => e && /^{what} (completed|failed)/.test(e.textContent) ? e.textContent : null)\
             (document.getElementById('action-result'))"
        ),
        PAGE_LIMIT,
    );
    text.as_str().expect("text").to_string()
}

/// The savepoint directory named at the end of an outcome line.
fn location(line: &str) -> PathBuf {
    let path = line.rsplit(": ").next().expect("a path");
    PathBuf::from(path.strip_prefix("file://").unwrap_or(path))
}

#[test]
fn the_dashboard_triggers_a_savepoint_and_stops_a_job_with_one_that_it_resumes_from() {
    let savepoints = tempfile::tempdir().expect("temp dir");
    let c = Cluster::start(
        4,
        &[(
            "execution.checkpointing.savepoint-dir",
            savepoints.path().display().to_string(),
        )],
    );
    let work = c.dir.path();
    let (keys, per_key) = (4u64, 3000u64);
    let out_a = work.join("out-a");
    let a = c.run_sequence(&out_a, per_key, 200, &[]);
    c.wait_running_with_checkpoint(&a);

    let mut page = Page::open(&format!("http://{}/#/job/{a}", c.rest));
    let line = click_and_wait(&mut page, "savepoint", "Savepoint");
    assert!(
        line.starts_with("Savepoint completed: "),
        "the savepoint button: {line}\n{}",
        c.log_tail()
    );
    let first = location(&line);
    assert!(
        first.starts_with(savepoints.path()) && first.join("_metadata").is_file(),
        "the page names {} and no savepoint is there",
        first.display()
    );
    assert_eq!(
        c.state(&a),
        "RUNNING",
        "a plain savepoint leaves the job running"
    );

    let line = click_and_wait(&mut page, "stop-savepoint", "Stop with savepoint");
    assert!(
        line.starts_with("Stop with savepoint completed: "),
        "the stop button: {line}\n{}",
        c.log_tail()
    );
    let last = location(&line);
    assert!(last != first && last.join("_metadata").is_file());
    c.wait_state(&a, "FINISHED");
    // The finished job's page offers no actions any more.
    page.wait_for(
        "the finished job without action buttons",
        "document.getElementById('stop-savepoint') === null \
         && document.body.innerText.includes('FINISHED')",
        PAGE_LIMIT,
    );

    let out_b = work.join("out-b");
    let b = c.run_sequence(&out_b, per_key, 0, &["-s", &last.display().to_string()]);
    c.wait_state(&b, "FINISHED");
    let mut lines = committed_lines(&out_a);
    lines.extend(committed_lines(&out_b));
    assert_eq!(
        witness(&lines, keys, per_key),
        (0, 0, 0),
        "stop from the dashboard + resume: (missing, duplicated, wrong counts)"
    );
}
