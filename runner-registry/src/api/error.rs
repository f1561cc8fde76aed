//! The API's errors: JSON `{"error": {"status", "code", "message"}}`, with `Retry-After`
//! where a client should come back, and each [`Error`] kind's HTTP status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use runner_core::registry::protocol::ErrorBody;
use runner_core::Error;

/// A JSON error.
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Seconds for the `Retry-After` header.
    pub(crate) retry_after: Option<u64>,
    /// What a refused commit named that is gone ([`Error::Gone`]).
    pub(crate) missing: Option<runner_core::Missing>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: String) -> ApiError {
        ApiError { status, code, message, retry_after: None, missing: None }
    }

    pub(crate) fn retry_after(self, wait: std::time::Duration) -> ApiError {
        // Whole seconds, rounded up, in the header; the exact wait in the message.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError { message: format!("{} (Retry-After: {seconds})", self.message), retry_after: Some(seconds), ..self }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = ErrorBody::new(self.status.as_u16(), self.code, self.message);
        body.error.missing = self.missing;
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::Checksum { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            other => runner_core::serve::status_of(other),
        };
        let code = match &error {
            Error::Checksum { .. } => "checksum_mismatch",
            other => other.code(),
        };
        let unavailable = status == StatusCode::SERVICE_UNAVAILABLE;
        let missing = match &error {
            Error::Gone { missing, .. } => Some(missing.clone()),
            _ => None,
        };
        let error = ApiError { missing, ..ApiError::new(status, code, error.to_string()) };
        // The database or the store is unreachable: clients retry after a second.
        match unavailable {
            true => error.retry_after(std::time::Duration::from_secs(1)),
            false => error,
        }
    }
}

pub(crate) fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A small JSON body (64 KiB at most) as `T`; a body that does not parse is a 422 showing
/// the `shape` expected.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    request: axum::extract::Request,
    shape: &str,
) -> ApiResult<T> {
    let bytes = axum::body::to_bytes(request.into_body(), 64 << 10)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("cannot read the body: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", format!("the body must be {shape}: {e}"))
    })
}
