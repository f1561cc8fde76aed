//! JSON errors with a stable shape: `{"error": {"status": 422, "code": "invalid_input", "message": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorBody, ErrorKind};

/// The HTTP status for an error of this kind: the server's whole mapping.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status the server answers `error` with.
///
/// ```
/// use runner_core::{serve::status_of, Error, ErrorKind};
/// assert_eq!(status_of(&Error::invalid_input("`x` must be >= 0")), 422);
/// assert_eq!(status_of(&Error::new(ErrorKind::Conflict, "retraining")), 409);
/// ```
pub fn status_of(error: &Error) -> StatusCode {
    status_for(error.kind())
}

/// An error answered by the server.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds after which to retry (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// A request past the server's time limit (504), whatever it was waiting for.
    pub(crate) fn timed_out(limit: std::time::Duration) -> Self {
        ApiError::from(Error::serving(
            ErrorKind::Timeout,
            format!("the request took longer than the {} ms limit", limit.as_millis()),
        ))
    }

    pub(crate) fn not_ready() -> Self {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the models are still loading; retry shortly")
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let kind = error.kind();
        let api = ApiError::new(status_for(kind), error.code(), error.to_string());
        match kind {
            ErrorKind::Overloaded => ApiError { retry_after: Some(1), ..api },
            _ => api,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.status.as_u16(), self.code, self.message);
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Path parameters, like axum's `Path`, rejected with the JSON error shape (a 400 naming
/// the parameter and what it must be) instead of axum's `text/plain` body. Every route of
/// `serve` and `runner-registry` takes its path through it, so no rejection escapes the
/// JSON contract.
///
/// ```
/// use runner_core::serve::PathParams;
///
/// async fn model(PathParams((repository, number)): PathParams<(String, u64)>) -> String {
///     format!("{repository}:{number}")
/// }
/// let app: axum::Router = axum::Router::new().route("/models/{repository}/{number}", axum::routing::get(model));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PathParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(params)) => Ok(PathParams(params)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{} in the path `{}`", rejection.body_text(), parts.uri.path()),
            )),
        }
    }
}

/// The JSON 405 for a route that exists but not with this method (axum's own has no
/// body): a handler for `Router::method_not_allowed_fallback`.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}; see GET /openapi.json for its methods", uri.path()),
    )
}
