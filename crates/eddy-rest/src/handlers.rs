//! One async handler per endpoint. Each asks the JobManager through its blocking, channel-based
//! [`JobManagerHandle`] on tokio's blocking pool ([`ask`]), then renders with `views.rs`,
//! `checkpoints.rs` or `metrics.rs`.
//!
//! Handlers must never block the async runtime, never unwrap request data, and never answer
//! from anything but the JobManager's current state.

use crate::checkpoints::checkpoint_stats_json;
use crate::error::ApiError;
use crate::leader::{LeaderState, Leadership};
use crate::{metrics, submit, views};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use eddy_cluster::{JobDetails, JobManagerHandle, JobStatus};
use eddy_core::config::Config;
use eddy_core::JobId;
use eddy_runtime::data::now_millis;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub handle: JobManagerHandle,
    pub config: Arc<Config>,
}

type Answer = Result<Response, ApiError>;

fn ok(value: Value) -> Answer {
    Ok(Json(value).into_response())
}

/// Runs a blocking JobManager call on the blocking pool. An `Err` from the handle means the
/// JobManager stopped or did not answer in time: 503.
async fn ask<T: Send + 'static>(
    state: &AppState,
    call: impl FnOnce(&JobManagerHandle) -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    let handle = state.handle.clone();
    match tokio::task::spawn_blocking(move || call(&handle)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::unavailable(format!(
            "the JobManager is not available: {e}"
        ))),
        Err(e) => Err(ApiError::internal(format!(
            "the request handler failed: {e}"
        ))),
    }
}

/// A request under `/v1/...`: Flink's clients, which want Flink's fields and nothing else.
fn is_v1(uri: &OriginalUri) -> bool {
    uri.path().starts_with("/v1/")
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).map_err(ApiError::bad_request)
}

fn job_not_found(id: JobId) -> ApiError {
    ApiError::not_found(format!("job {id} not found"))
}

async fn job_details(state: &AppState, raw_id: &str) -> Result<JobDetails, ApiError> {
    let id = parse_job_id(raw_id)?;
    ask(state, move |h| h.details(id))
        .await?
        .ok_or_else(|| job_not_found(id))
}

fn query_params(
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

/// `GET /overview`
pub(crate) async fn overview(State(s): State<AppState>) -> Answer {
    let (jobs, tms) = ask(&s, |h| Ok((h.list()?, h.taskmanagers()?))).await?;
    ok(views::overview_json(&jobs, &tms))
}

/// `GET /config`
pub(crate) async fn dashboard_config() -> Answer {
    ok(views::dashboard_config_json())
}

/// `GET /jobmanager/config`
pub(crate) async fn jobmanager_config(State(s): State<AppState>) -> Answer {
    ok(views::jobmanager_config_json(&s.config))
}

/// `GET /jobs`
pub(crate) async fn jobs(State(s): State<AppState>) -> Answer {
    let jobs = ask(&s, |h| h.list()).await?;
    ok(views::job_ids_json(&jobs))
}

/// `GET /jobs/overview`
pub(crate) async fn jobs_overview(State(s): State<AppState>) -> Answer {
    let jobs = ask(&s, |h| h.list()).await?;
    ok(views::jobs_overview_json(&jobs))
}

/// `GET /jobs/:jobid`
pub(crate) async fn job(
    State(s): State<AppState>,
    uri: OriginalUri,
    Path(jobid): Path<String>,
) -> Answer {
    let d = job_details(&s, &jobid).await?;
    let mut v = views::job_details_json(&d, now_millis());
    if is_v1(&uri) {
        views::remove_fields(&mut v, &views::eddy_fields::JOB);
    }
    ok(v)
}

/// `GET /jobs/:jobid/status`
pub(crate) async fn job_status(State(s): State<AppState>, Path(jobid): Path<String>) -> Answer {
    let d = job_details(&s, &jobid).await?;
    ok(views::job_status_json(&d))
}

/// `GET /jobs/:jobid/eddy-details`: Eddy's own view of a job (what `eddy run` follows).
pub(crate) async fn job_eddy_details(
    State(s): State<AppState>,
    Path(jobid): Path<String>,
) -> Answer {
    let d = job_details(&s, &jobid).await?;
    ok(serde_json::to_value(&d)
        .map_err(|e| ApiError::internal(format!("cannot encode job details: {e}")))?)
}

/// `GET /jobs/:jobid/exceptions[?maxExceptions=N]`
pub(crate) async fn job_exceptions(
    State(s): State<AppState>,
    uri: OriginalUri,
    Path(jobid): Path<String>,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Answer {
    let params = query_params(q)?;
    let max = match params.get("maxExceptions") {
        None => None,
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid value '{v}' for maxExceptions: expected a non-negative integer"
            ))
        })?),
    };
    let d = job_details(&s, &jobid).await?;
    let mut v = views::job_exceptions_json(&d, max);
    if is_v1(&uri) {
        views::remove_fields(&mut v, &views::eddy_fields::EXCEPTIONS);
    }
    ok(v)
}

/// `GET /jobs/:jobid/checkpoints`
pub(crate) async fn job_checkpoints(
    State(s): State<AppState>,
    uri: OriginalUri,
    Path(jobid): Path<String>,
) -> Answer {
    let d = job_details(&s, &jobid).await?;
    let mut v = checkpoint_stats_json(&d);
    if is_v1(&uri) {
        for c in ["completed", "savepoint", "failed"] {
            views::remove_fields(&mut v["latest"][c], &views::eddy_fields::CHECKPOINT);
        }
        if let Some(history) = v["history"].as_array_mut() {
            for c in history {
                views::remove_fields(c, &views::eddy_fields::CHECKPOINT);
            }
        }
    }
    ok(v)
}

/// `GET /jobs/:jobid/vertices/:vertexid/backpressure`
pub(crate) async fn job_vertex_backpressure(
    State(s): State<AppState>,
    Path((jobid, vertexid)): Path<(String, String)>,
) -> Answer {
    let d = job_details(&s, &jobid).await?;
    let wanted = vertexid.to_ascii_lowercase();
    match d.vertices.iter().find(|v| views::vertex_id(v) == wanted) {
        Some(v) => ok(views::vertex_backpressure_json(v)),
        None => Err(ApiError::not_found(format!(
            "vertex '{vertexid}' not found in job {}: its vertices are {}",
            d.job_id,
            d.vertices
                .iter()
                .map(views::vertex_id)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `GET /taskmanagers`
pub(crate) async fn taskmanagers(State(s): State<AppState>, uri: OriginalUri) -> Answer {
    let (tms, lost) = ask(&s, |h| Ok((h.taskmanagers()?, h.lost_taskmanagers()?))).await?;
    let mut v = views::taskmanagers_json(&tms, &lost, now_millis());
    if is_v1(&uri) {
        views::remove_fields(&mut v, &views::eddy_fields::TASKMANAGERS);
        if let Some(list) = v["taskmanagers"].as_array_mut() {
            for t in list {
                views::remove_fields(t, &views::eddy_fields::TASKMANAGER);
            }
        }
    }
    ok(v)
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn prometheus(State(s): State<AppState>) -> Answer {
    let (jobs, tms) = ask(&s, |h| Ok((h.list()?, h.taskmanagers()?))).await?;
    let text = metrics::render(&jobs, &tms, s.handle.counters());
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// How a cancel request ended, decided on the blocking pool.
enum CancelOutcome {
    Accepted,
    NotFound,
    /// The job had already ended in another way (FINISHED, FAILED).
    AlreadyEnded(JobStatus),
    Failed(String),
}

/// Flink's rules: cancelling a CANCELED job is accepted again; a job that ended otherwise is a
/// conflict; an unknown job is not found.
fn cancel_job_blocking(h: &JobManagerHandle, id: JobId) -> Result<CancelOutcome, String> {
    let decide = |d: Option<JobDetails>| match d {
        None => Some(CancelOutcome::NotFound),
        Some(d) if d.status == JobStatus::Canceled => Some(CancelOutcome::Accepted),
        Some(d) if d.status.is_globally_terminal() => Some(CancelOutcome::AlreadyEnded(d.status)),
        Some(_) => None,
    };
    if let Some(outcome) = decide(h.details(id)?) {
        return Ok(outcome);
    }
    match h.cancel(id) {
        Ok(()) => Ok(CancelOutcome::Accepted),
        // The job may have ended between the two calls: look again before calling it a failure.
        Err(e) => Ok(decide(h.details(id)?).unwrap_or(CancelOutcome::Failed(e))),
    }
}

/// `PATCH /jobs/:jobid[?mode=cancel]` → 202 `{}`.
pub(crate) async fn cancel_job(
    State(s): State<AppState>,
    Path(jobid): Path<String>,
    q: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Answer {
    if !s.config.web_cancel_enabled() {
        return Err(ApiError::forbidden(
            "cancelling jobs over REST is disabled: web.cancel.enable is false in the cluster's configuration",
        ));
    }
    let params = query_params(q)?;
    match params
        .get("mode")
        .map(|m| m.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("cancel") => {}
        Some("stop") => {
            return Err(ApiError::bad_request(
                "termination mode 'stop' is not supported: use mode=cancel",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown termination mode '{other}': expected cancel"
            )))
        }
    }
    let id = parse_job_id(&jobid)?;
    match ask(&s, move |h| cancel_job_blocking(h, id)).await? {
        CancelOutcome::Accepted => Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response()),
        CancelOutcome::NotFound => Err(job_not_found(id)),
        CancelOutcome::AlreadyEnded(status) => Err(ApiError::conflict(format!(
            "job {id} cannot be cancelled: it already reached another terminal state ({status})"
        ))),
        CancelOutcome::Failed(e) => Err(ApiError::internal(format!(
            "cancelling job {id} failed: {e}"
        ))),
    }
}

/// The two errors `JobManagerHandle` itself produces (see its `ask`): the JobManager is gone or
/// busy. Every other submit error is about the job (unknown name, bad arguments, bad graph).
fn is_jobmanager_unavailable(e: &str) -> bool {
    e == "the JobManager has stopped" || e == "the JobManager did not answer"
}

/// `POST /jobs` (Eddy's own) → 202 `{"jobid", "jobUrl"}`.
pub(crate) async fn submit_job(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    // Flink's clients (`flink run`, the REST client) post a serialized JobGraph and jar files as
    // multipart/form-data: Eddy runs its own jobs, not Java programs.
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("multipart/"));
    if multipart {
        return Err(ApiError::bad_request(FLINK_PROGRAMS_REFUSED));
    }
    if !s.config.web_submit_enabled() {
        return Err(ApiError::forbidden(
            "submitting jobs over REST is disabled: web.submit.enable is false in the cluster's configuration",
        ));
    }
    // 413 for a body over rest.server.max-content-length (the router's limit), else 400.
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than rest.server.max-content-length ({} bytes)",
                s.config.rest_max_content_length()
            ),
        ),
        _ => ApiError::bad_request(format!("cannot read the request body: {e}")),
    })?;
    let (spec, warnings) =
        submit::job_spec_from_body(&body, &s.config).map_err(ApiError::bad_request)?;
    for w in &warnings {
        tracing::warn!("job '{}' submitted over REST: {w}", spec.name);
    }
    let handle = s.handle.clone();
    let result = tokio::task::spawn_blocking(move || handle.submit(spec))
        .await
        .map_err(|e| ApiError::internal(format!("the request handler failed: {e}")))?;
    match result {
        Ok(id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "jobid": id.to_string(), "jobUrl": format!("/jobs/{id}") })),
        )
            .into_response()),
        Err(e) if is_jobmanager_unavailable(&e) => Err(ApiError::unavailable(format!(
            "the JobManager is not available: {e}"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "job submission rejected: {e}"
        ))),
    }
}

/// The answer to a Flink program (a JobGraph, a jar) sent to Eddy.
const FLINK_PROGRAMS_REFUSED: &str = "Eddy cannot run Flink programs (a JobGraph or a jar, as `flink run` and /jars send): submit an Eddy job by name with `eddy run JOB` or POST /jobs {\"job\": NAME, ...} (docs/rest.md)";

/// `/jars/...` (Flink's jar upload and run, used by the web UI and the Kubernetes operator's
/// session jobs) → 400 with [`FLINK_PROGRAMS_REFUSED`].
pub(crate) async fn jars_refused() -> ApiError {
    ApiError::bad_request(FLINK_PROGRAMS_REFUSED)
}

/// Unknown path → 404 `{"errors": ["Not found: /x"]}` (Flink's wording).
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {}", uri.path()))
}

/// Known path, unknown method → 405.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!("method {method} is not allowed on {}", uri.path()))
}

/// Middleware: a request announcing a body over `rest.server.max-content-length` is answered
/// 413 at once, without waiting for the body (the extractors' limit catches bodies that do not
/// announce their length).
pub(crate) async fn content_length_guard(
    State(limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match announced {
        Some(n) if n > limit as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body ({n} bytes) is larger than rest.server.max-content-length ({limit} bytes)"),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Middleware: a standby JobManager answers every request with 503 and the leader's address.
pub(crate) async fn standby_guard(
    State(leader): State<LeaderState>,
    req: Request,
    next: Next,
) -> Response {
    match leader.get() {
        Leadership::Leader => next.run(req).await,
        // The dashboard's root on a standby: a page that links to the leader's.
        Leadership::Standby { leader_url } if req.uri().path() == "/" => {
            crate::dashboard::standby_page(leader_url.as_deref())
        }
        Leadership::Standby { leader_url } => {
            let message = match &leader_url {
                Some(url) => format!("this JobManager is a standby; the leader is at {url}"),
                None => "this JobManager is a standby; no leader is known yet".to_string(),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "errors": [message], "leader": leader_url })),
            )
                .into_response()
        }
    }
}
