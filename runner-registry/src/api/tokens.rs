//! The token routes, for an organization's admins: list its tokens (never a secret),
//! create one (its secret answered once), revoke one. An admin token limited to some
//! repositories may not manage tokens: a token it made could reach further than itself.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use runner_core::serve::PathParams;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::auth::{authorize, Asking, Caller};
use super::error::{json_body, ApiError, ApiResult};
use super::state::AppState;
use crate::audit::Action;
use crate::tokens::{NewToken, Right, Token};

/// `GET`, `POST`: an organization's tokens.
pub(crate) const TOKENS: &str = "/v1/orgs/{org}/tokens";
/// `DELETE`: revoke one.
pub(crate) const TOKEN: &str = "/v1/orgs/{org}/tokens/{id}";

/// A token as the API shows it: everything but its secret and its hash.
#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    id: String,
    name: String,
    right: Right,
    repositories: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    created_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    last_used_at: Option<OffsetDateTime>,
    /// `valid`, `revoked` or `expired`.
    state: &'static str,
}

impl TokenView {
    fn of(token: &Token) -> TokenView {
        TokenView {
            id: token.id.clone(),
            name: token.label().to_string(),
            right: token.right,
            repositories: token.repositories.clone(),
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            last_used_at: token.last_used_at,
            state: token.state(OffsetDateTime::now_utc()).name(),
        }
    }
}

/// The body of `POST .../tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: String,
    right: Right,
    #[serde(default)]
    repositories: Vec<String>,
    /// Seconds it works; absent: until revoked.
    expires_in_seconds: Option<u64>,
}

/// Checks that the caller is an admin of the whole organization.
async fn token_admin(s: &AppState, asking: Asking<'_>, org: &str) -> ApiResult<Caller> {
    let caller = authorize(s, asking, org, None, Right::Admin).await?;
    if caller.token.as_ref().is_some_and(|token| !token.repositories.is_empty()) {
        let message =
            format!("managing the tokens of `{org}` needs an admin token of the whole organization (no --repos)");
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message));
    }
    Ok(caller)
}

pub(crate) async fn list_tokens(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    request: Request,
) -> ApiResult<Response> {
    token_admin(&s, Asking::of(&request), &org).await?;
    let tokens = s.backend.list_tokens(Some(&org)).await?;
    Ok(Json(serde_json::json!({ "tokens": tokens.iter().map(TokenView::of).collect::<Vec<_>>() })).into_response())
}

pub(crate) async fn create_token(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    request: Request,
) -> ApiResult<Response> {
    let caller = token_admin(&s, Asking::of(&request), &org).await?;
    let shape =
        r#"{"name": "ci", "right": "read|write|admin", "repositories": ["iris"], "expires_in_seconds": 7776000}"#;
    let body: CreateToken = json_body(request, shape).await?;
    let new = NewToken {
        organization: org.clone(),
        name: body.name,
        right: body.right,
        repositories: body.repositories,
        expires_in: body.expires_in_seconds.filter(|s| *s > 0).map(Duration::from_secs),
    };
    let (secret, token) = s.backend.create_token(&new).await?;
    caller.record(&s, &org, Action::CreateToken, None, token.describe()).await;
    let mut view = serde_json::to_value(TokenView::of(&token)).expect("a token view serializes");
    view["token"] = secret.into();
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub(crate) async fn revoke_token(
    State(s): State<Arc<AppState>>,
    PathParams((org, id)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = token_admin(&s, Asking::of(&request), &org).await?;
    // Only the organization's own tokens: another's id is answered as unknown.
    let token = s.backend.revoke_token(Some(&org), &id).await?;
    caller.record(&s, &org, Action::RevokeToken, None, token.describe()).await;
    Ok(Json(TokenView::of(&token)).into_response())
}
