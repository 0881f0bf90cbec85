//! The web dashboard and the Eddy endpoints it reads that Flink's REST API has no shape for:
//! `/` and `/assets/*` (HTML, JS and CSS embedded in the binary from `crates/eddy-rest/assets/`;
//! nothing is fetched from the network), `/jobs/:id/recoveries`, `/jobmanager/log` (a bounded
//! tail) and `/jobmanager/eddy-info` (address, leadership, HA settings, effective
//! configuration). A standby's `/` is a page linking to the leader (see `handlers::standby_guard`).
//!
//! Like every handler, these answer only from the JobManager's current state; the dashboard
//! itself keeps no state on the server.

use crate::error::ApiError;
use crate::handlers::AppState;
use crate::recoveries::recoveries_json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use eddy_core::config::{Config, HaMode, KEYS};
use eddy_core::JobId;
use eddy_runtime::data::now_millis;
use serde_json::{json, Value};
use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");

/// The most `/jobmanager/log` returns: the end of the log, from the first whole line.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// When this JobManager's REST server started (ms since epoch): the dashboard's uptime.
static STARTED: OnceLock<i64> = OnceLock::new();

/// The dashboard's routes, merged into the REST router by `server.rs`.
pub(crate) fn routes() -> Router<AppState> {
    STARTED.get_or_init(now_millis);
    Router::new()
        .route("/", get(index))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
        .route("/jobs/{jobid}/recoveries", get(job_recoveries))
        .route("/jobmanager/log", get(jobmanager_log))
        .route("/jobmanager/eddy-info", get(jobmanager_info))
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        DASHBOARD_JS,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        DASHBOARD_CSS,
    )
        .into_response()
}

/// What a standby answers on `/`: a page that names the leader and links to its dashboard.
pub(crate) fn standby_page(leader_url: Option<&str>) -> Response {
    let body = match leader_url {
        Some(url) => {
            let url = html_escape(url);
            format!(
                "<p>This JobManager is a <b>standby</b>. The leader's dashboard is at \
                 <a id=\"leader\" href=\"{url}/\">{url}</a>.</p>\
                 <script>setTimeout(function(){{location.reload()}},10000)</script>"
            )
        }
        None => {
            "<p>This JobManager is a <b>standby</b>; no leader is known yet. This page \
                 reloads itself.</p><script>setTimeout(function(){location.reload()},10000)</script>"
                .to_string()
        }
    };
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Eddy: standby \
             JobManager</title></head><body style=\"font-family:sans-serif\"><h1>Eddy</h1>\
             {body}</body></html>"
        )),
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /jobs/:jobid/recoveries` (Eddy's own).
async fn job_recoveries(State(s): State<AppState>, Path(jobid): Path<String>) -> Response {
    let id = match JobId::parse(&jobid) {
        Ok(id) => id,
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let handle = s.handle.clone();
    match tokio::task::spawn_blocking(move || handle.details(id)).await {
        Ok(Ok(Some(d))) => Json(recoveries_json(&d)).into_response(),
        Ok(Ok(None)) => ApiError::not_found(format!("job {id} not found")).into_response(),
        Ok(Err(e)) => {
            ApiError::unavailable(format!("the JobManager is not available: {e}")).into_response()
        }
        Err(e) => ApiError::internal(format!("the request handler failed: {e}")).into_response(),
    }
}

/// `GET /jobmanager/log`: the last [`LOG_TAIL_BYTES`] of this JobManager's log, which is the
/// file its standard error goes to (as `eddy cluster start` arranges).
async fn jobmanager_log() -> Response {
    match tokio::task::spawn_blocking(|| log_tail(LOG_TAIL_BYTES)).await {
        Ok(Ok(text)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Ok(Err(e)) => ApiError::not_found(e).into_response(),
        Err(e) => ApiError::internal(format!("the request handler failed: {e}")).into_response(),
    }
}

/// The end of the file behind standard error, at most `max` bytes, starting at a whole line.
fn log_tail(max: u64) -> Result<String, String> {
    let path = std::fs::read_link("/proc/self/fd/2").map_err(|e| {
        format!("the JobManager's log file is not known (cannot read /proc/self/fd/2: {e})")
    })?;
    tail_file(&path, max)
}

/// The end of the regular file `path`, at most `max` bytes, starting at a whole line.
fn tail_file(path: &std::path::Path, max: u64) -> Result<String, String> {
    let mut file = std::fs::File::open(path)
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
        .ok_or_else(|| {
            format!(
                "the JobManager logs to {}, not to a file: no log to show",
                path.display()
            )
        })?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(match (start > 0, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_string(),
        _ => text.into_owned(),
    })
}

/// `GET /jobmanager/eddy-info`: who this JobManager is and how it is configured.
async fn jobmanager_info(State(s): State<AppState>) -> Response {
    let view = s.handle.leader_view();
    let started = STARTED.get().copied().unwrap_or_else(now_millis);
    let now = now_millis();
    Json(json!({
        "version": crate::EDDY_VERSION,
        "pid": std::process::id(),
        "started": started,
        "uptime": now - started,
        "now": now,
        "rest-address": view.own_rest,
        "rpc-address": s.handle.rpc_address,
        "leader": view.is_leader,
        "leader-session-id": view.session.map(|t| format!("{t:032x}")),
        "high-availability": ha_json(&s.config),
        "effective-configuration": effective_config_json(&s.config),
    }))
    .into_response()
}

fn ha_json(c: &Config) -> Value {
    match c.ha_mode() {
        HaMode::None => json!({ "type": "none" }),
        HaMode::ZooKeeper => json!({
            "type": "zookeeper",
            "zookeeper.quorum": c.get("high-availability.zookeeper.quorum"),
            "storageDir": c.get("high-availability.storageDir"),
            "cluster-id": c.ha_cluster_id(),
            "zookeeper.path.root": c.zk_path_root(),
            "zookeeper.client.session-timeout": c.get("high-availability.zookeeper.client.session-timeout"),
        }),
    }
}

/// Every key that has a value: configured (`source: configured`) or by default (`default`), in
/// key order. Keys with neither are left out.
pub fn effective_config_json(c: &Config) -> Value {
    let mut list: Vec<(&str, String, &str)> = KEYS
        .iter()
        .filter_map(|k| match (c.get(k.key), k.default) {
            (Some(v), _) => Some((k.key, v.to_string(), "configured")),
            (None, Some(d)) => Some((k.key, d.to_string(), "default")),
            (None, None) => None,
        })
        .collect();
    // Configured keys outside the table (e.g. job-specific ones) are shown too.
    for (k, v) in c.iter() {
        if !KEYS.iter().any(|s| s.key == k) {
            list.push((k, v.to_string(), "configured"));
        }
    }
    list.sort_by(|a, b| a.0.cmp(b.0));
    Value::Array(
        list.into_iter()
            .map(|(k, v, src)| json!({ "key": k, "value": v, "source": src }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_configuration_marks_configured_keys_and_fills_in_defaults() {
        let c = Config::from_pairs(&[("rest.port", "9000")]).unwrap();
        let v = effective_config_json(&c);
        let find = |k: &str| {
            v.as_array()
                .unwrap()
                .iter()
                .find(|e| e["key"] == k)
                .cloned()
        };
        let port = find("rest.port").unwrap();
        assert_eq!(port["value"], "9000");
        assert_eq!(port["source"], "configured");
        let ha = find("high-availability.type").unwrap();
        assert_eq!(ha["value"], "none");
        assert_eq!(ha["source"], "default");
        // No default, not configured: left out.
        assert!(find("high-availability.zookeeper.quorum").is_none());
    }

    #[test]
    fn a_standby_page_links_to_the_leader_and_escapes_its_address() {
        let r = standby_page(Some("http://10.0.0.2:8081"));
        assert_eq!(r.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(html_escape("<a \"b\">&"), "&lt;a &quot;b&quot;&gt;&amp;");
    }

    #[test]
    fn the_log_tail_is_bounded_and_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jm.log");
        let text: String = (0..100).map(|i| format!("line {i:03}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let t = tail_file(&path, 25).unwrap();
        assert_eq!(t, "line 098\nline 099\n");
        assert_eq!(tail_file(&path, 10_000).unwrap(), text);
        let err = tail_file(dir.path(), 10).unwrap_err();
        assert!(err.contains("not to a file"), "{err}");
    }
}
