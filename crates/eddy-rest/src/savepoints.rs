//! Savepoint endpoints in Flink's shape (asynchronous operations with a trigger id):
//!
//! - `POST /jobs/:id/savepoints` `{"target-directory", "cancel-job", "formatType"}` → 202
//!   `{"request-id"}`;
//! - `POST /jobs/:id/stop` `{"targetDirectory", "drain"}` → 202 `{"request-id"}`;
//! - `GET /jobs/:id/savepoints/:triggerid` → `{"status": {"id": "IN_PROGRESS"|"COMPLETED"},
//!   "operation": {"location"} | {"failure-cause": {"class", "stack-trace"}}}`;
//! - `POST /savepoint-disposal` `{"savepoint-path"}` → 202 `{"request-id"}`, and
//!   `GET /savepoint-disposal/:triggerid`.
//!
//! Every path is served as written and under `/v1`.

use crate::error::ApiError;
use crate::handlers::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eddy_cluster::savepoints::{OperationStatus, SavepointMode};
use eddy_core::JobId;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

type Answer = Result<Response, ApiError>;

/// The savepoint routes, unversioned and under `/v1`.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let mut r = router;
    for prefix in ["", "/v1"] {
        r = r
            .route(
                &format!("{prefix}/jobs/{{jobid}}/savepoints"),
                post(trigger_savepoint),
            )
            .route(
                &format!("{prefix}/jobs/{{jobid}}/savepoints/{{triggerid}}"),
                get(savepoint_status),
            )
            .route(&format!("{prefix}/jobs/{{jobid}}/stop"), post(stop_job))
            .route(&format!("{prefix}/savepoint-disposal"), post(dispose))
            .route(
                &format!("{prefix}/savepoint-disposal/{{triggerid}}"),
                get(disposal_status),
            );
    }
    r
}

fn body_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body =
        body.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "invalid request body: expected a JSON object",
        ));
    }
    Ok(v)
}

fn text_field(v: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid value {other} for '{name}': expected a string"
        ))),
    }
}

fn bool_field(v: &Value, name: &str) -> Result<bool, ApiError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid value {other} for '{name}': expected true or false"
        ))),
    }
}

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).map_err(ApiError::bad_request)
}

async fn trigger(s: &AppState, job: JobId, dir: Option<String>, mode: SavepointMode) -> Answer {
    let handle = s.handle.clone();
    let result = tokio::task::spawn_blocking(move || handle.trigger_savepoint(job, dir, mode))
        .await
        .map_err(|e| ApiError::internal(format!("the request handler failed: {e}")))?;
    match result {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": id }))).into_response()),
        Err(e) if e.starts_with("unknown job") => Err(ApiError::not_found(e)),
        Err(e) if e == "the JobManager has stopped" || e == "the JobManager did not answer" => Err(
            ApiError::unavailable(format!("the JobManager is not available: {e}")),
        ),
        Err(e) => Err(ApiError::bad_request(e)),
    }
}

/// `POST /jobs/:id/savepoints`
async fn trigger_savepoint(
    State(s): State<AppState>,
    Path(jobid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let job = parse_job_id(&jobid)?;
    let v = body_json(body)?;
    let dir = text_field(&v, "target-directory")?;
    let cancel = bool_field(&v, "cancel-job")?;
    match text_field(&v, "formatType")?.as_deref() {
        // The hashmap backend's own format is the canonical one: both write it.
        None | Some("CANONICAL") | Some("NATIVE") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid formatType '{other}': expected CANONICAL or NATIVE"
            )))
        }
    }
    let mode = if cancel {
        SavepointMode::SavepointThenCancel
    } else {
        SavepointMode::Savepoint
    };
    trigger(&s, job, dir, mode).await
}

/// `POST /jobs/:id/stop`
async fn stop_job(
    State(s): State<AppState>,
    Path(jobid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let job = parse_job_id(&jobid)?;
    let v = body_json(body)?;
    let dir = text_field(&v, "targetDirectory")?;
    let drain = bool_field(&v, "drain")?;
    trigger(&s, job, dir, SavepointMode::Stop { drain }).await
}

fn operation_json(status: &OperationStatus) -> Value {
    match status {
        OperationStatus::InProgress => json!({ "status": { "id": "IN_PROGRESS" } }),
        OperationStatus::Completed { location } => json!({
            "status": { "id": "COMPLETED" },
            "operation": { "location": location }
        }),
        OperationStatus::Failed { cause } => json!({
            "status": { "id": "COMPLETED" },
            "operation": { "failure-cause": {
                "class": "org.apache.flink.runtime.checkpoint.CheckpointException",
                "stack-trace": cause,
                "serialized-throwable": null
            } }
        }),
    }
}

/// `GET /jobs/:id/savepoints/:triggerid`
async fn savepoint_status(
    State(s): State<AppState>,
    Path((jobid, trigger)): Path<(String, String)>,
) -> Answer {
    let job = parse_job_id(&jobid)?;
    let handle = s.handle.clone();
    let t = trigger.clone();
    let result = tokio::task::spawn_blocking(move || handle.savepoint_status(job, t))
        .await
        .map_err(|e| ApiError::internal(format!("the request handler failed: {e}")))?
        .map_err(|e| ApiError::unavailable(format!("the JobManager is not available: {e}")))?;
    match result {
        Some(status) => Ok(Json(operation_json(&status)).into_response()),
        None => Err(ApiError::not_found(format!(
            "There is no savepoint operation with triggerId={trigger} for job {job} (an operation is known only to the leader that started it: one in flight at a leader change is lost, and its savepoint did not complete unless its directory holds a _metadata; trigger it again)"
        ))),
    }
}

/// Disposals run at once (a directory removal); their outcomes are kept for the status call.
static DISPOSALS: Mutex<BTreeMap<String, OperationStatus>> = Mutex::new(BTreeMap::new());

/// `POST /savepoint-disposal`
async fn dispose(State(_s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Answer {
    let v = body_json(body)?;
    let Some(path) = text_field(&v, "savepoint-path")? else {
        return Err(ApiError::bad_request(
            "missing 'savepoint-path': expected the savepoint directory to dispose",
        ));
    };
    let outcome = tokio::task::spawn_blocking(move || eddy_cluster::savepoints::dispose(&path))
        .await
        .map_err(|e| ApiError::internal(format!("the request handler failed: {e}")))?;
    let status = match outcome {
        Ok(dir) => OperationStatus::Completed {
            location: dir.to_string_lossy().into_owned(),
        },
        Err(cause) => OperationStatus::Failed { cause },
    };
    let id = format!("{:032x}", eddy_core::ids::random_u128());
    if let Ok(mut d) = DISPOSALS.lock() {
        if d.len() >= 1000 {
            d.pop_first();
        }
        d.insert(id.clone(), status);
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "request-id": id }))).into_response())
}

/// `GET /savepoint-disposal/:triggerid`
async fn disposal_status(Path(trigger): Path<String>) -> Answer {
    let status = DISPOSALS.lock().ok().and_then(|d| d.get(&trigger).cloned());
    match status {
        Some(OperationStatus::Completed { .. }) => Ok(Json(json!({
            "status": { "id": "COMPLETED" },
            "operation": {}
        }))
        .into_response()),
        Some(other) => Ok(Json(operation_json(&other)).into_response()),
        None => Err(ApiError::not_found(format!(
            "There is no savepoint disposal with triggerId={trigger}"
        ))),
    }
}
