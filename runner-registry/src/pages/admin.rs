//! The pages for an organization's admins: its tokens (revoke one), and its audit log.
//! A token without the admin right is refused them (403), as the API refuses it deletes.

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use runner_core::serve::page::{self, html, Markup};
use runner_core::serve::PathParams;
use serde::Deserialize;
use time::OffsetDateTime;

use super::session::{csrf_of, failed, respond, session_for, Address, CsrfForm, PageResult, Session};
use crate::api::AppState;
use crate::audit::{Action, AuditQuery};
use crate::tokens::{to_the_second, Right, Token, TokenState};

/// Entries the audit page shows, newest first.
const AUDIT_PAGE: usize = 200;

/// The session, allowed into `org`'s admin pages.
async fn admin_session(state: &AppState, headers: &HeaderMap, org: &str) -> PageResult<Session> {
    let session = session_for(state, headers, org, None).await?;
    match session.is_admin() {
        true => Ok(session),
        false => Err(page::error_page(
            StatusCode::FORBIDDEN,
            &format!("the tokens and the audit log of `{org}` are for tokens with the admin right"),
            Some(("/", "Home")),
        )),
    }
}

fn crumbs(org: &str, last: &str, href: &str) -> [(String, String); 2] {
    [(format!("/orgs/{org}"), org.to_string()), (href.to_string(), last.to_string())]
}

/// A time as every page shows one (`page::when`), or `none`.
fn at(time: Option<OffsetDateTime>, none: &str) -> Markup {
    match time {
        Some(time) => page::when(&to_the_second(time)),
        None => html! { span.muted { (none) } },
    }
}

/// `GET /orgs/{org}/-/tokens`: the organization's tokens, never their secrets.
pub(super) async fn tokens(
    State(state): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = admin_session(&state, &headers, &org).await?;
    let tokens = state.backend.list_tokens(Some(&org)).await.map_err(failed)?;
    let now = OffsetDateTime::now_utc();
    let base = format!("/orgs/{org}/-/tokens");
    let row = |token: &Token| {
        let state = token.state(now);
        let revocable = !matches!(state, TokenState::Revoked(_));
        let state = state.name();
        let repos = if token.repositories.is_empty() { "all".to_string() } else { token.repositories.join(", ") };
        html! {
            tr {
                td { code { (token.id) } }
                td { (token.label()) }
                td { (token.right) }
                td { (repos) }
                td { (at(token.created_at, "-")) }
                td { (at(token.expires_at, "never")) }
                td { (at(token.last_used_at, "never")) }
                td { span class=(format!("badge {state}")) { (state) } }
                td {
                    @if revocable {
                        form.inline method="post" action=(format!("{base}/{}/revoke", token.id)) {
                            input type="hidden" name="csrf" value=(session.csrf());
                            button.danger type="submit" { "Revoke" }
                        }
                    }
                }
            }
        }
    };
    let main = html! {
        h1 { "Tokens of " (org) }
        p.muted { "Create tokens with " code { "runner-registry token create --org " (org) " --name NAME --expires 90d [--repos GLOBS] --read|--write|--admin" } "; a revoked token is refused from the next request on." }
        div.scroll { table {
            thead { tr { th { "id" } th { "name" } th { "right" } th { "repositories" } th { "created" } th { "expires" } th { "last used" } th { "state" } th {} } }
            tbody { @for token in &tokens { (row(token)) } }
        } }
        @if tokens.is_empty() { p.muted { "No token yet." } }
    };
    Ok(respond(&session, &format!("Tokens of {org}"), &crumbs(&org, "tokens", &base), main))
}

/// `POST /orgs/{org}/-/tokens/{id}/revoke`.
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    PathParams((org, id)): PathParams<(String, String)>,
    method: Method,
    headers: HeaderMap,
    address: Address,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult<Response> {
    page::from_this_site(&method, &headers)?;
    let session = admin_session(&state, &headers, &org).await?;
    session.sent(&csrf_of(form))?;
    // Only the organization's own tokens: another's id is answered as unknown.
    let token = state.backend.revoke_token(Some(&org), &id).await.map_err(failed)?;
    session.record(&state, &org, Action::RevokeToken, None, token.describe(), address).await;
    Ok(page::see_other(&format!("/orgs/{org}/-/tokens"), None))
}

/// `?repo=` of the audit page.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditPageQuery {
    repo: Option<String>,
}

/// `GET /orgs/{org}/-/audit`: the newest changes of the organization.
pub(super) async fn audit(
    State(state): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    query: Result<Query<AuditPageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = admin_session(&state, &headers, &org).await?;
    let repo = query.map(|Query(q)| q.repo).unwrap_or_default().filter(|r| !r.is_empty());
    let query =
        AuditQuery { organization: Some(org.clone()), repository: repo.clone(), since: None, limit: Some(AUDIT_PAGE) };
    let mut entries = state.backend.audit(&query).await.map_err(failed)?;
    entries.reverse();
    let base = format!("/orgs/{org}/-/audit");
    let main = html! {
        h1 { "Audit log of " (org) }
        form.search method="get" action=(base) role="search" {
            input type="search" name="repo" value=(repo.as_deref().unwrap_or_default()) placeholder="repository" aria-label="Repository";
            button type="submit" { "Filter" }
        }
        p.muted { "The newest " (AUDIT_PAGE) " changes at most, newest first; " code { "runner-registry audit --org " (org) } " reads them all." }
        div.scroll { table {
            thead { tr { th { "when" } th { "what" } th { "repository" } th { "target" } th { "by" } th { "from" } } }
            tbody {
                @for entry in &entries {
                    tr {
                        td { (at(Some(entry.at), "-")) }
                        td { (entry.action.as_str()) }
                        td { (entry.repository.as_deref().unwrap_or("-")) }
                        td { (entry.target) }
                        td { (entry.who.token_name) " " span.muted { "(" (entry.who.token_id) ")" } }
                        td { (entry.address.as_deref().unwrap_or("-")) }
                    }
                }
            }
        } }
        @if entries.is_empty() { p.muted { "No change recorded yet." } }
    };
    Ok(respond(&session, &format!("Audit log of {org}"), &crumbs(&org, "audit log", &base), main))
}

/// The links to the admin pages, for the organization page of an admin.
pub(super) fn links(session: &Session, org: &str) -> Markup {
    html! {
        @if session.is_admin() {
            p.admin { a href=(format!("/orgs/{org}/-/tokens")) { "Tokens" } " · " a href=(format!("/orgs/{org}/-/audit")) { "Audit log" } }
        }
    }
}

impl Session {
    /// Whether the session may see the admin pages: an admin token (or no auth).
    pub(super) fn is_admin(&self) -> bool {
        self.token().is_none_or(|token| token.right.allows(Right::Admin))
    }
}
