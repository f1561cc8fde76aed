//! Who is asking: the bearer token checked for a right on an organization, and counted
//! against its rate.

use axum::http::{header, HeaderMap, StatusCode};

use super::error::{not_found, ApiError, ApiResult};
use super::state::AppState;
use crate::tokens::Right;

/// Checks the bearer token for `right` on `org`, and says who it is (`token ID`, or
/// `anonymous` without auth) for the records that keep it. A token of another
/// organization is answered like a missing resource.
pub(crate) async fn authorize(
    state: &AppState,
    request_headers: &HeaderMap,
    org: &str,
    right: Right,
) -> ApiResult<String> {
    runner_core::validate_name("organization", org).map_err(|_| not_found("organization"))?;
    if !state.auth {
        state.throttle("anonymous")?;
        return Ok("anonymous".to_string());
    }
    let presented = request_headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send `Authorization: Bearer TOKEN`".into())
        })?;
    let token = state
        .backend
        .find_token(presented)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token".into()))?;
    state.throttle(&token.id)?;
    if token.organization != org {
        return Err(not_found(&format!("organization `{org}`")));
    }
    if right == Right::Write && token.right != Right::Write {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("this token may only read `{org}`")));
    }
    Ok(format!("token {}", token.id))
}
