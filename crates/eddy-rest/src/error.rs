//! [`ApiError`]: how the REST API says no. Every error answer is Flink's shape,
//! `{"errors": ["<one line>"]}`, with a status code that tells the client whose fault it was.
//! This file decides only how failures are reported, never when a request fails.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A failed request: the HTTP status and a one-line message naming what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: one_line(&message.into()),
        }
    }

    /// 400: the request itself is wrong (bad id, bad body, bad configuration value).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403: the cluster's configuration turned this operation off (`web.submit.enable`, ...).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: no such job or path.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }

    /// 409: the request conflicts with the job's state (e.g. cancelling a FINISHED job).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 500: something failed inside Eddy.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503: the JobManager behind this endpoint is not answering (or this one is a standby).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "errors": [self.message] }))).into_response()
    }
}

/// Keeps an error message on one line: user text can contain newlines.
pub(crate) fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_kept_on_one_line() {
        let e = ApiError::bad_request("first\nsecond\r\n");
        assert_eq!(e.message, "first | second");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
