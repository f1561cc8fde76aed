//! The alias routes: list, move (compare-and-set), delete, and history.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use runner_core::registry::protocol::{AliasHistory, AliasQuery, Aliases, SetAlias};
use runner_core::registry::{AliasMove, AliasOptions, Expect};
use runner_core::serve::PathParams;

use super::auth::{authorize, Asking};
use super::error::{json_body, ApiError, ApiResult};
use super::state::AppState;
use crate::audit::Action;
use crate::tokens::Right;

/// The query of the alias routes, or a JSON 400 saying what is wrong with it.
fn alias_query(query: Result<Query<AliasQuery>, QueryRejection>) -> ApiResult<AliasQuery> {
    query.map(|Query(query)| query).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{}: `expect` is a model number, `alias` an alias name", e.body_text()),
        )
    })
}

pub(crate) async fn list_aliases(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Read).await?;
    let aliases = s.backend.aliases(&org, &repo).await?;
    Ok(Json(Aliases { aliases }).into_response())
}

pub(crate) async fn set_alias(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, alias)): PathParams<(String, String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Write).await?;
    let body: SetAlias =
        json_body(request, r#"{"number": N, "expect": ..., "force": false, "canary": {"number": M, "percent": P}}"#)
            .await?;
    let options = AliasOptions { expect: body.expect, force: body.force, canary: body.canary, reason: body.reason };
    let change = s.backend.set_alias(&org, &repo, &alias, body.number, &options, &caller.who.by()).await?;
    caller.record(&s, &org, Action::SetAlias, Some(&repo), moved(&change)).await;
    Ok(Json(change).into_response())
}

pub(crate) async fn delete_alias(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, alias)): PathParams<(String, String, String)>,
    query: Result<Query<AliasQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Write).await?;
    let query = alias_query(query)?;
    let expect = query.expect.map_or(Expect::Any, Expect::Number);
    let change = s.backend.delete_alias(&org, &repo, &alias, expect, &caller.who.by()).await?;
    caller.record(&s, &org, Action::DeleteAlias, Some(&repo), moved(&change)).await;
    Ok(Json(change).into_response())
}

pub(crate) async fn alias_history(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    query: Result<Query<AliasQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Read).await?;
    let query = alias_query(query)?;
    let moves = s.backend.alias_history(&org, &repo, query.alias.as_deref()).await?;
    Ok(Json(AliasHistory { moves }).into_response())
}

/// An alias move as the audit log names it: `prod: 3 -> 4`.
fn moved(change: &AliasMove) -> String {
    let side = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    let forced = if change.forced { " (forced)" } else { "" };
    let split =
        |canary: Option<runner_core::registry::Canary>| canary.map_or(String::new(), |c| format!(" canary {c}"));
    format!(
        "{}: {}{} -> {}{}{forced}",
        change.alias,
        side(change.from),
        split(change.from_canary),
        side(change.to),
        split(change.to_canary)
    )
}
