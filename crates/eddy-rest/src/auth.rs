//! REST authentication: the bearer token of `eddy.rest.auth.token-file` and the middleware that
//! answers 401 to a request without it. This file decides who may call the API, never what an
//! endpoint answers.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eddy_core::config::Config;
use std::sync::Arc;

/// The token in `eddy.rest.auth.token-file` (surrounding whitespace removed), or `None` when the
/// key is unset. An unreadable or empty file is a one-line error naming the key and the path.
pub fn read_token(config: &Config) -> Result<Option<String>, String> {
    let Some(path) = config.rest_auth_token_file() else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "eddy.rest.auth.token-file: cannot read '{}': {e}",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "eddy.rest.auth.token-file: '{}' must hold one token: visible characters without spaces",
            path.display()
        ));
    }
    Ok(Some(token.to_string()))
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// The dashboard's static files: the same bytes for everyone (the page, its script and style),
/// no job or cluster data. They are served without the token so a browser can load the page,
/// which then asks for the token and sends it with every API call it makes.
pub(crate) const PUBLIC_ASSETS: [&str; 3] = ["/", "/assets/dashboard.js", "/assets/dashboard.css"];

/// Middleware: without `Authorization: Bearer <token>`, 401 with a one-line error and
/// `WWW-Authenticate: Bearer`. Runs before everything else (a standby's answer included);
/// only a GET of one of [`PUBLIC_ASSETS`] passes without it.
pub(crate) async fn bearer_guard(
    State(token): State<Arc<String>>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == axum::http::Method::GET && PUBLIC_ASSETS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let message = match given {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => return next.run(req).await,
        Some(_) => "the bearer token is wrong (eddy.rest.auth.token-file)",
        None => "this REST API needs 'Authorization: Bearer <token>' (the token of eddy.rest.auth.token-file)",
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"secret", b"secre"));
        assert!(!same(b"", b"x"));
        assert!(same(b"", b""));
    }
}
