//! Who is asking, checked in one place: the bearer token found, not revoked nor expired,
//! of the organization asked about, reaching the repository (its globs), with the right
//! the route needs; and counted against its rate. The caller it answers records the
//! changes it makes in the audit log.
//!
//! | route | right |
//! |---|---|
//! | listings, manifests, aliases, history, `HEAD`/`GET` of content | read |
//! | take a number, upload, commit, keep or give back a reservation, move or delete an alias | write |
//! | delete a model, delete a repository | admin |
//!
//! A token of another organization is answered like a missing organization (404), so
//! names do not leak; a token limited to some repositories is refused the others (403)
//! and lists only its own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, StatusCode};
use time::OffsetDateTime;

use super::error::{not_found, ApiError, ApiResult};
use super::state::AppState;
use crate::audit::{Action, AuditEntry, Who};
use crate::tokens::{to_the_second, Right, Token, TokenState};

/// Who is asking, once authorized.
pub(crate) struct Caller {
    /// For the audit log and alias history.
    pub(crate) who: Who,
    /// The token (auth on).
    pub(crate) token: Option<Token>,
    /// The client's address.
    pub(crate) address: Option<SocketAddr>,
}

impl Caller {
    /// Whether the caller may reach `repository` (a listing shows only those).
    pub(crate) fn covers(&self, repository: &str) -> bool {
        self.token.as_ref().is_none_or(|token| token.covers(repository))
    }

    /// Records a change the caller made ([`Audit::record_done`](crate::storage::Audit::record_done)).
    pub(crate) async fn record(
        &self,
        state: &AppState,
        organization: &str,
        action: Action,
        repository: Option<&str>,
        target: String,
    ) {
        let entry = AuditEntry::now(&self.who, organization, action, repository, target).from_address(self.address);
        state.backend.record_done(&entry).await;
    }
}

/// What authorizing reads of a request: its headers and the client's address (a
/// `&Request` is not `Send`: its body is not `Sync`).
pub(crate) struct Asking<'a> {
    headers: &'a HeaderMap,
    address: Option<SocketAddr>,
}

impl<'a> Asking<'a> {
    /// What `request` asks with.
    pub(crate) fn of(request: &'a Request) -> Asking<'a> {
        let address = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| *address);
        Asking { headers: request.headers(), address }
    }
}

/// Checks the request's bearer token for `right` on `org` (and on `repository`, when
/// the route names one).
pub(crate) async fn authorize(
    state: &AppState,
    asking: Asking<'_>,
    org: &str,
    repository: Option<&str>,
    right: Right,
) -> ApiResult<Caller> {
    runner_core::validate_name("organization", org).map_err(|_| not_found("organization"))?;
    let Asking { headers, address } = asking;
    if !state.auth {
        state.throttle("anonymous")?;
        return Ok(Caller { who: Who::anonymous(), token: None, address });
    }
    let unauthorized = |message: String| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("send `Authorization: Bearer TOKEN`".into()))?;
    let token = state.backend.find_token(presented).await?.ok_or_else(|| unauthorized("unknown token".into()))?;
    let token = usable(token).map_err(unauthorized)?;
    state.throttle(&token.id)?;
    if token.organization != org {
        return Err(not_found(&format!("organization `{org}`")));
    }
    let forbidden = |message: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", message);
    if let Some(repository) = repository.filter(|r| !token.covers(r)) {
        return Err(forbidden(format!(
            "token {} may only reach the repositories {} of `{org}`, not `{repository}`",
            token.id,
            token.repositories.join(", ")
        )));
    }
    if !token.right.allows(right) {
        return Err(forbidden(match right {
            Right::Admin => format!(
                "deleting needs a token with the admin right on `{org}`; token {} has {} (runner-registry token create --admin)",
                token.id, token.right
            ),
            _ => format!("token {} may only read `{org}`", token.id),
        }));
    }
    Ok(Caller { who: Who::token(&token), token: Some(token), address })
}

/// The token when it may be used now, or why not (revoked, expired), for a 401. Said to
/// the one who presented it only, and naming nothing but the token itself.
pub(crate) fn usable(token: Token) -> Result<Token, String> {
    let at = to_the_second;
    match token.state(OffsetDateTime::now_utc()) {
        TokenState::Valid => Ok(token),
        TokenState::Revoked(when) => Err(format!(
            "token {} was revoked at {}; ask an admin of its organization for a new one (runner-registry token create)",
            token.id,
            at(when)
        )),
        TokenState::Expired(when) => Err(format!(
            "token {} expired at {}; ask an admin of its organization for a new one (runner-registry token create)",
            token.id,
            at(when)
        )),
    }
}
