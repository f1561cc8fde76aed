//! The registry browser: pages for people at `/`, over the same [`Backend`] as the API.
//!
//! | page | what |
//! |---|---|
//! | `GET /` | sign in with a token (or, without auth, the organizations) |
//! | `GET /orgs/{org}` | repositories: models, latest number, last change; searchable, paginated |
//! | `GET /orgs/{org}/{repo}` | models, newest first: status, size, runner, created, aliases; paginated |
//! | `GET /orgs/{org}/{repo}/{n}` | one model: its manifest laid out, its files, what changed since the previous number |
//! | `GET /orgs/{org}/{repo}/{n}/files/{path}` | download one file (HTTP Range works) |
//! | `GET`/`POST /orgs/{org}/{repo}/{n}/delete`, `/orgs/{org}/{repo}/delete` | confirm, then delete (write tokens) |
//!
//! The token is kept in an `HttpOnly`, `SameSite=Strict` cookie, never in a URL. Forms
//! that change anything carry the session's CSRF token and must come from this server's
//! own pages (`Origin`); a read token sees no delete button, and the server refuses its
//! deletes anyway. Every name is escaped (maud), and the pages' Content-Security-Policy
//! allows no inline script.

// A page step fails with the page to answer with: a `Response` is large for an `Err`,
// but it is answered at once, never passed along.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use runner_core::serve::page::{self, html, Markup};
use runner_core::serve::PathParams;
use runner_core::{Error, Manifest, ModelId, ModelStatus};
use serde::Deserialize;

use crate::{ApiError, AppState, Right, Token};

/// The cookie a browser keeps its session in: the token (or, without auth, a random
/// secret that only ties forms to the browser).
const SESSION: &str = "runner_session";
/// Rows per page of a listing.
const PAGE_SIZE: usize = 50;

/// A page step's outcome: on failure, the page to answer with.
type PageResult<T> = Result<T, Response>;

/// Who is browsing.
struct Session {
    /// The token, or without auth the browser's random secret: the CSRF token derives from it.
    secret: String,
    /// The token's record (auth on).
    token: Option<Token>,
    /// A cookie to set (a new secret, without auth).
    set_cookie: Option<String>,
}

impl Session {
    fn can_write(&self) -> bool {
        self.token.as_ref().is_none_or(|token| token.right == Right::Write)
    }

    fn csrf(&self) -> String {
        page::csrf_token(&self.secret)
    }

    /// `response`, setting the session cookie when it is new.
    fn finish(&self, mut response: Response) -> Response {
        if let Some(value) = self.set_cookie.as_ref().and_then(|c| HeaderValue::from_str(c).ok()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

fn api_error(error: ApiError) -> Response {
    let mut response = page::error_page(error.status, &error.message, Some(("/", "Home")));
    if let Some(seconds) = error.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

fn failed(error: Error) -> Response {
    api_error(ApiError::from(error))
}

fn not_found(what: &str) -> Response {
    page::error_page(StatusCode::NOT_FOUND, &format!("{what} not found"), Some(("/", "Home")))
}

/// The browsing session, or the sign-in page (auth on, no valid token in the cookie).
async fn session(state: &AppState, headers: &HeaderMap) -> PageResult<Session> {
    let cookie = page::cookie(headers, SESSION).filter(|value| page::cookie_safe(value));
    if !state.auth {
        return Ok(match cookie {
            Some(secret) => Session { secret: secret.to_string(), token: None, set_cookie: None },
            None => {
                use rand::RngCore;
                let mut bytes = [0u8; 16];
                rand::rng().fill_bytes(&mut bytes);
                let secret = hex::encode(bytes);
                let set_cookie = Some(page::session_cookie(SESSION, Some(&secret)));
                Session { secret, token: None, set_cookie }
            }
        });
    }
    let Some(presented) = cookie else { return Err(sign_in_page(StatusCode::UNAUTHORIZED, None)) };
    match state.backend.find_token(presented).await {
        Ok(Some(token)) => {
            state.throttle(&token.id).map_err(api_error)?;
            Ok(Session { secret: presented.to_string(), token: Some(token), set_cookie: None })
        }
        Ok(None) => {
            let mut response =
                sign_in_page(StatusCode::UNAUTHORIZED, Some("that token is no longer valid; sign in again"));
            if let Ok(value) = HeaderValue::from_str(&page::session_cookie(SESSION, None)) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            Err(response)
        }
        Err(e) => Err(failed(e)),
    }
}

/// The session, allowed into `org` (a token of another organization is told the
/// organization does not exist, as the API does).
async fn session_for(state: &AppState, headers: &HeaderMap, org: &str) -> PageResult<Session> {
    if runner_core::validate_name("organization", org).is_err() {
        return Err(not_found("organization"));
    }
    let session = session(state, headers).await?;
    match &session.token {
        Some(token) if token.organization != org => Err(not_found(&format!("organization `{org}`"))),
        _ => Ok(session),
    }
}

/// The session, allowed into `org` and to change things there (a read token is refused).
async fn session_to_write(state: &AppState, headers: &HeaderMap, org: &str) -> PageResult<Session> {
    let session = session_for(state, headers, org).await?;
    if !session.can_write() {
        return Err(page::error_page(
            StatusCode::FORBIDDEN,
            &format!("this token may only read `{org}`"),
            Some(("/", "Home")),
        ));
    }
    Ok(session)
}

/// A form that changes something: from this server's pages, with the session's CSRF
/// token, by a session that may write.
async fn writer(state: &AppState, method: &Method, headers: &HeaderMap, org: &str, csrf: &str) -> PageResult<Session> {
    page::from_this_site(method, headers)?;
    let session = session_to_write(state, headers, org).await?;
    if !page::csrf_matches(&session.secret, csrf) {
        return Err(page::error_page(
            StatusCode::FORBIDDEN,
            "this form has expired or did not come from this page; reload the page and send it again",
            Some(("/", "Home")),
        ));
    }
    Ok(session)
}

fn top(session: Option<&Session>, crumbs: &[(String, String)]) -> Markup {
    html! {
        a.brand href="/" { "runner registry" }
        nav {
            @for (href, label) in crumbs {
                span.sep { "/" }
                a href=(href) { (label) }
            }
        }
        @if let Some(session) = session {
            div.who {
                @if let Some(token) = &session.token {
                    span { "token " code { (token.id) } " · " (match token.right { Right::Write => "read & write", Right::Read => "read only" }) }
                    form.inline method="post" action="/sign-out" {
                        input type="hidden" name="csrf" value=(session.csrf());
                        button type="submit" { "Sign out" }
                    }
                } @else {
                    span { "no auth: anyone may read and write" }
                }
            }
        }
    }
}

fn respond(session: &Session, title: &str, crumbs: &[(String, String)], main: Markup) -> Response {
    let title = format!("{title} · runner registry");
    session.finish(page::respond(StatusCode::OK, page::document(&title, top(Some(session), crumbs), main, &[])))
}

fn sign_in_page(status: StatusCode, message: Option<&str>) -> Response {
    let main = html! {
        h1 { "Sign in" }
        div.card {
            p { "Paste a token of your organization (" code { "runner-registry token create" } " makes one). It is kept in a cookie that scripts cannot read, for 12 hours or until you sign out; never in a URL." }
            @if let Some(message) = message { p.error { (message) } }
            form.search method="post" action="/sign-in" {
                input type="password" name="token" placeholder="token" autocomplete="current-password" required aria-label="Token";
                button type="submit" { "Sign in" }
            }
        }
    };
    page::respond(status, page::document("Sign in · runner registry", top(None, &[]), main, &[]))
}

/// `GET /`.
async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> PageResult<Response> {
    if state.auth && page::cookie(&headers, SESSION).is_none() {
        return Ok(sign_in_page(StatusCode::OK, None));
    }
    let session = session(&state, &headers).await?;
    if let Some(token) = &session.token {
        return Ok(page::see_other(&format!("/orgs/{}", token.organization), None));
    }
    let organizations = state.backend.organizations().await.map_err(failed)?;
    let main = html! {
        h1 { "Organizations" }
        @if organizations.is_empty() { p.muted { "Nothing is registered yet." } }
        ul { @for org in &organizations { li { a href=(format!("/orgs/{org}")) { (org) } } } }
    };
    Ok(respond(&session, "Organizations", &[], main))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /sign-in`.
async fn sign_in(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    if let Err(refused) = page::from_this_site(&method, &headers) {
        return refused;
    }
    if !state.auth {
        return page::see_other("/", None);
    }
    let Ok(Form(SignIn { token })) = form else {
        return sign_in_page(StatusCode::BAD_REQUEST, Some("send the form with a token"));
    };
    let token = token.trim();
    let found = match page::cookie_safe(token) {
        true => state.backend.find_token(token).await,
        false => Ok(None),
    };
    match found {
        Ok(Some(found)) => {
            page::see_other(&format!("/orgs/{}", found.organization), Some(page::session_cookie(SESSION, Some(token))))
        }
        Ok(None) => sign_in_page(StatusCode::UNAUTHORIZED, Some("unknown token")),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn csrf_of(form: Result<Form<CsrfForm>, FormRejection>) -> String {
    form.map(|Form(form)| form.csrf).unwrap_or_default()
}

/// `POST /sign-out`.
async fn sign_out(method: Method, headers: HeaderMap) -> Response {
    if let Err(refused) = page::from_this_site(&method, &headers) {
        return refused;
    }
    page::see_other("/", Some(page::session_cookie(SESSION, None)))
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    /// Only names containing this (case-insensitive).
    q: Option<String>,
    /// 1-based.
    page: Option<usize>,
    /// What was just deleted, to say so.
    deleted: Option<String>,
    /// Go to this model number.
    number: Option<u64>,
}

fn list_query(query: Result<Query<ListQuery>, QueryRejection>) -> ListQuery {
    query.map(|Query(query)| query).unwrap_or_default()
}

/// The slice of `items` page `page` (1-based) shows, and the page count.
fn paginate<T>(items: &[T], page: usize) -> (&[T], usize, usize) {
    let pages = items.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    (&items[start.min(items.len())..(start + PAGE_SIZE).min(items.len())], page, pages)
}

/// The page count and links to the pages around this one (`labels`: the previous and
/// next links' words, `newer`/`older` for models).
fn pager(
    base: &str,
    q: &str,
    (page, pages): (usize, usize),
    (total, one, many): (usize, &str, &str),
    labels: (&str, &str),
) -> Markup {
    let link = |page: usize| match q.is_empty() {
        true => format!("{base}?page={page}"),
        false => format!("{base}?q={}&page={page}", encode(q)),
    };
    html! {
        div.pager {
            span { (total) " " (if total == 1 { one } else { many }) @if pages > 1 { " · page " (page) " of " (pages) } }
            @if page > 1 { a href=(link(page - 1)) rel="prev" { "← " (labels.0) } }
            @if page < pages { a href=(link(page + 1)) rel="next" { (labels.1) " →" } }
        }
    }
}

/// Percent-encodes `text` for a URL path or query (keeping `/`).
fn encode(text: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(text, KEEP).to_string()
}

fn status_badge(status: ModelStatus) -> Markup {
    match status {
        ModelStatus::Ready => html! { span.badge.ready { "ready" } },
        _ => html! { span.badge.uploading { "uploading" } },
    }
}

/// `GET /orgs/{org}`: the repositories.
async fn organization(
    State(state): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_for(&state, &headers, &org).await?;
    let query = list_query(query);
    let q = query.q.clone().unwrap_or_default();
    let repositories = state.backend.repositories(org.clone()).await.map_err(failed)?;
    let needle = q.to_lowercase();
    let matching: Vec<String> = repositories.into_iter().filter(|name| name.to_lowercase().contains(&needle)).collect();
    let (shown, page_number, pages) = paginate(&matching, query.page.unwrap_or(1));
    // Each shown repository: its numbers, and its newest model.
    let rows = futures::future::join_all(shown.iter().map(|repo| {
        let (backend, org, repo) = (state.backend.clone(), org.clone(), repo.clone());
        async move {
            let numbers = backend.model_numbers(org.clone(), repo.clone()).await.unwrap_or_default();
            let latest = match numbers.last() {
                Some(&n) => match ModelId::new(&org, &repo, n) {
                    Ok(id) => backend.model(id).await.ok(),
                    Err(_) => None,
                },
                None => None,
            };
            (repo, numbers.len(), latest)
        }
    }))
    .await;
    let base = format!("/orgs/{org}");
    let main = html! {
        h1 { "Repositories of " (org) }
        @if let Some(deleted) = &query.deleted { p.added { "Repository " code { (deleted) } " was deleted." } }
        form.search method="get" action=(base) role="search" {
            input type="search" name="q" value=(q) placeholder="Search repositories by name" aria-label="Search repositories";
            button type="submit" { "Search" }
        }
        (pager(&base, &q, (page_number, pages), (matching.len(), "repository", "repositories"), ("previous", "next")))
        div.scroll { table {
            thead { tr { th { "repository" } th.num { "models" } th.num { "latest" } th { "last change" } } }
            tbody {
                @for (repo, count, latest) in &rows {
                    tr {
                        td { a href=(format!("{base}/{repo}")) { (repo) } }
                        td.num { (count) }
                        td.num { @if let Some(latest) = latest { a href=(format!("{base}/{repo}/{}", latest.number)) { (latest.number) } " " (status_badge(latest.status)) } @else { "-" } }
                        td { @if let Some(manifest) = latest.as_ref().and_then(|l| l.manifest.as_ref()) { (page::when(&manifest.created_at)) } @else { span.muted { "-" } } }
                    }
                }
            }
        } }
        @if matching.is_empty() { p.muted { @if q.is_empty() { "No repository yet." } @else { "No repository matches." } } }
    };
    Ok(respond(&session, &org, &[(base.clone(), org.clone())], main))
}

/// `GET /orgs/{org}/{repo}`: its models, newest first.
async fn repository(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    query: Result<Query<ListQuery>, QueryRejection>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_for(&state, &headers, &org).await?;
    let query = list_query(query);
    let base = format!("/orgs/{org}/{repo}");
    if let Some(number) = query.number {
        return Ok(page::see_other(&format!("{base}/{number}"), None));
    }
    let (numbers, aliases, history) = tokio::try_join!(
        state.backend.model_numbers(org.clone(), repo.clone()),
        state.backend.aliases(org.clone(), repo.clone()),
        state.backend.alias_history(org.clone(), repo.clone(), None),
    )
    .map_err(failed)?;
    const HISTORY_SHOWN: usize = 20;
    let moves = history.len();
    let newest_first: Vec<u64> = numbers.iter().rev().copied().collect();
    let (shown, page_number, pages) = paginate(&newest_first, query.page.unwrap_or(1));
    let models = state.backend.views(&org, &repo, shown).await.map_err(failed)?;
    let aliases_of = |number: u64| aliases.iter().filter(move |a| a.number == number).map(|a| a.name.as_str());
    let main = html! {
        h1 { (org) "/" (repo) }
        @if let Some(deleted) = &query.deleted { p.added { "Model " (deleted) " was deleted." } }
        @if !aliases.is_empty() {
            p { "Aliases: " @for alias in &aliases { span.badge.alias { (alias.name) " → " (alias.number) } " " } }
        }
        form.search method="get" action=(base) {
            input type="number" name="number" min="1" placeholder="Go to model number" aria-label="Model number";
            button.secondary type="submit" { "Go" }
        }
        (pager(&base, "", (page_number, pages), (numbers.len(), "model", "models"), ("newer", "older")))
        div.scroll { table {
            thead { tr { th.num { "number" } th { "status" } th.num { "size" } th { "runner" } th.hide-narrow { "created" } th { "aliases" } } }
            tbody {
                @for model in &models {
                    tr {
                        td.num { a href=(format!("{base}/{}", model.number)) { (model.number) } }
                        td { (status_badge(model.status)) }
                        @if let Some(manifest) = &model.manifest {
                            td.num { (page::bytes(manifest.total_bytes())) }
                            td { code { (manifest.runner.name) } " " span.muted { (manifest.runner.crate_name) " " (manifest.runner.crate_version) } }
                            td.hide-narrow { (page::when(&manifest.created_at)) }
                        } @else {
                            td.num { "-" } td { "-" } td.hide-narrow { "-" }
                        }
                        td { @for alias in aliases_of(model.number) { span.badge.alias { (alias) } " " } }
                    }
                }
            }
        } }
        @if !history.is_empty() {
            section.card.history {
                h2 { "Alias history" span.muted { " · " (moves) (if moves == 1 { " move" } else { " moves" }) @if moves > HISTORY_SHOWN { ", the last " (HISTORY_SHOWN) " shown" } } }
                div.scroll { table {
                    thead { tr { th { "when" } th { "alias" } th { "move" } th { "by" } } }
                    tbody {
                        @for step in history.iter().rev().take(HISTORY_SHOWN) {
                            tr {
                                td { (page::when(&step.at)) }
                                td { span.badge.alias { (step.alias) } }
                                td {
                                    @match (step.from, step.to) {
                                        (None, Some(to)) => { "created → " (to) }
                                        (Some(from), Some(to)) => { (from) " → " (to) }
                                        (Some(from), None) => { "deleted (was " (from) ")" }
                                        (None, None) => { "-" }
                                    }
                                    @if step.forced { " " span.badge.failed { "forced" } }
                                }
                                td { (step.by) }
                            }
                        }
                    }
                } }
            }
        }
        @if session.can_write() {
            div.actions { a.button.danger href=(format!("{base}/delete")) { "Delete repository…" } }
        }
    };
    let crumbs = [(format!("/orgs/{org}"), org.clone()), (base.clone(), repo.clone())];
    Ok(respond(&session, &format!("{org}/{repo}"), &crumbs, main))
}

fn parse_number(text: &str) -> PageResult<u64> {
    text.parse().map_err(|_| not_found(&format!("model `{text}`")))
}

/// `GET /orgs/{org}/{repo}/{number}`: one model.
async fn model(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, String)>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_for(&state, &headers, &org).await?;
    let number = parse_number(&number)?;
    let id = ModelId::new(&org, &repo, number).map_err(failed)?;
    let (view, numbers, aliases) = tokio::try_join!(
        state.backend.model(id.clone()),
        state.backend.model_numbers(org.clone(), repo.clone()),
        state.backend.aliases(org.clone(), repo.clone()),
    )
    .map_err(failed)?;
    // The previous ready model, for what changed (a few uploading numbers skipped).
    let earlier: Vec<u64> = numbers.iter().rev().copied().filter(|&n| n < number).take(20).collect();
    let mut previous = None;
    for n in earlier {
        if let Ok(Some(model)) = state.backend.views(&org, &repo, &[n]).await.map(|mut m| m.pop()) {
            if let Some(manifest) = model.manifest {
                previous = Some(manifest);
                break;
            }
        }
    }
    let base = format!("/orgs/{org}/{repo}/{number}");
    let named: Vec<&str> = aliases.iter().filter(|a| a.number == number).map(|a| a.name.as_str()).collect();
    let main = html! {
        h1 { (org) "/" (repo) ":" (number) " " (status_badge(view.status)) @for alias in &named { " " span.badge.alias { (alias) } } }
        @match &view.manifest {
            Some(manifest) => { (manifest_sections(&base, manifest, previous.as_ref())) }
            None => { p.card { "This model is being uploaded: it has a number, and becomes visible to loads once its manifest is committed." } }
        }
        @if session.can_write() {
            div.actions { a.button.danger href=(format!("{base}/delete")) { "Delete model…" } }
        }
    };
    let crumbs = [
        (format!("/orgs/{org}"), org.clone()),
        (format!("/orgs/{org}/{repo}"), repo.clone()),
        (base.clone(), number.to_string()),
    ];
    Ok(respond(&session, &id.to_string(), &crumbs, main))
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn manifest_sections(base: &str, manifest: &Manifest, previous: Option<&Manifest>) -> Markup {
    html! {
        section.card {
            h2 { "Runner" }
            dl.facts {
                dt { "Runner" } dd { code { (manifest.runner.name) } " (" code { (manifest.runner.rust_type) } ")" }
                dt { "Crate" } dd { (manifest.runner.crate_name) " " (manifest.runner.crate_version) }
                dt { "Saved" } dd {
                    code { (serde_json::to_value(manifest.save.save_type).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                    @if let Some(path) = &manifest.save.path { " to " code { (path) } }
                }
                dt { "Props" } dd { @match &manifest.save.props { Some(props) => { pre { (json_text(props)) } } None => { span.muted { "none" } } } }
                dt { "Hooks on defaults" } dd {
                    @if manifest.default_hooks.is_empty() { span.muted { "none: the runner defines every hook" } }
                    @for hook in &manifest.default_hooks { code { (hook) } " " }
                }
                dt { "Requirements" } dd {
                    @if manifest.requirements.is_empty() { span.muted { "none" } }
                    @for requirement in &manifest.requirements { code { (requirement) } " " }
                }
                dt { "Registered" } dd { (page::when(&manifest.created_at)) " with runner-core " (manifest.framework_version) }
                @if let Some(api) = &manifest.api {
                    dt { "API fingerprint" } dd { span.sha { (api.fingerprint) } }
                }
            }
            @if let Some(api) = &manifest.api {
                details { summary { "Request schema" } pre { (json_text(&api.input)) } }
                details { summary { "Response schema" } pre { (json_text(&api.output)) } }
            }
        }
        @if !manifest.artifacts.is_empty() {
            section.card {
                h2 { "Artifact mapping" }
                div.scroll { table {
                    thead { tr { th { "local path" } th { "volume path" } } }
                    tbody { @for (local, volume) in &manifest.artifacts { tr { td { code { (local) } } td { code { (volume) } } } } }
                } }
            }
        }
        section.card {
            h2 { "Files" span.muted { " · " (manifest.files.len()) ", " (page::bytes(manifest.total_bytes())) } }
            div.scroll { table.files {
                thead { tr { th { "path" } th.num { "size" } th { "sha256" } } }
                tbody {
                    @for file in &manifest.files {
                        tr data-path=(file.path) {
                            td { a href=(format!("{base}/files/{}", encode(&file.path))) download { (file.path) } }
                            td.num { (page::bytes(file.size)) }
                            td.sha { (file.sha256) }
                        }
                    }
                }
            } }
        }
        section.card.changes {
            @match previous {
                Some(previous) => {
                    h2 { "Changes since " a href=(format!("{}/{}", base.rsplit_once('/').map_or("", |(head, _)| head), previous.model.number)) { "number " (previous.model.number) } }
                    (changes(previous, manifest))
                }
                None => { h2 { "Changes" } p.muted { "This is the first ready model of the repository." } }
            }
        }
    }
}

/// What changed from `before` to `after`: files, runner, requirements, API.
fn changes(before: &Manifest, after: &Manifest) -> Markup {
    use std::collections::BTreeMap;
    let old: BTreeMap<&str, &runner_core::FileEntry> = before.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let new: BTreeMap<&str, &runner_core::FileEntry> = after.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let added: Vec<&str> = new.keys().filter(|p| !old.contains_key(*p)).copied().collect();
    let removed: Vec<&str> = old.keys().filter(|p| !new.contains_key(*p)).copied().collect();
    let changed: Vec<(&str, u64, u64)> = new
        .iter()
        .filter_map(|(path, file)| {
            old.get(path).filter(|o| o.sha256 != file.sha256).map(|o| (*path, o.size, file.size))
        })
        .collect();
    let runner_before = format!("{} {} {}", before.runner.name, before.runner.crate_name, before.runner.crate_version);
    let runner_after = format!("{} {} {}", after.runner.name, after.runner.crate_name, after.runner.crate_version);
    let req_added: Vec<&String> = after.requirements.iter().filter(|r| !before.requirements.contains(r)).collect();
    let req_removed: Vec<&String> = before.requirements.iter().filter(|r| !after.requirements.contains(r)).collect();
    let api_changes = match (&before.api, &after.api) {
        (Some(b), Some(a)) if b.fingerprint != a.fingerprint => b.changes(a),
        _ => Vec::new(),
    };
    let nothing = added.is_empty()
        && removed.is_empty()
        && changed.is_empty()
        && runner_before == runner_after
        && req_added.is_empty()
        && req_removed.is_empty()
        && api_changes.is_empty();
    html! {
        @if nothing { p.muted { "Nothing: the same files, runner, requirements and API." } }
        ul {
            @for path in &added { li.added { "added " code { (path) } } }
            @for path in &removed { li.removed { "removed " code { (path) } } }
            @for (path, from, to) in &changed { li.changed { "changed " code { (path) } " (" (page::bytes(*from)) " → " (page::bytes(*to)) ")" } }
            @if runner_before != runner_after { li.changed { "runner " code { (runner_before) } " → " code { (runner_after) } } }
            @for requirement in &req_added { li.added { "requirement added " code { (requirement) } } }
            @for requirement in &req_removed { li.removed { "requirement removed " code { (requirement) } } }
            @for change in &api_changes { li.changed { "API " code { (change) } } }
        }
    }
}

/// `GET /orgs/{org}/{repo}/{number}/files/{path}`: one file, as an attachment.
async fn download(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number, path)): PathParams<(String, String, String, String)>,
    request: Request,
) -> PageResult<Response> {
    session_for(&state, request.headers(), &org).await?;
    let number = parse_number(&number)?;
    let id = ModelId::new(&org, &repo, number).map_err(failed)?;
    let view = state.backend.model(id).await.map_err(failed)?;
    let Some(file) = view.manifest.as_ref().and_then(|m| m.files.iter().find(|f| f.path == path)).cloned() else {
        return Err(not_found(&format!("file `{path}`")));
    };
    let blob = state.backend.get_blob(org, file.sha256.clone(), request).await.map_err(failed)?;
    let mut response = blob.ok_or_else(|| not_found("content"))?;
    let name = file.path.rsplit('/').next().unwrap_or("file");
    let disposition = format!("attachment; filename*=UTF-8''{}", encode(name).replace('/', "%2F"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

fn confirm_page(
    session: &Session,
    what: &str,
    consequence: &str,
    action: &str,
    back: &str,
    crumbs: &[(String, String)],
) -> Response {
    let main = html! {
        h1 { "Delete " (what) "?" }
        div.card {
            p { (consequence) }
            form.inline method="post" action=(action) {
                input type="hidden" name="csrf" value=(session.csrf());
                div.actions {
                    button.danger type="submit" { "Delete " (what) }
                    a href=(back) { "Cancel" }
                }
            }
        }
    };
    respond(session, &format!("Delete {what}"), crumbs, main)
}

/// `GET /orgs/{org}/{repo}/{number}/delete`: the confirmation.
async fn confirm_delete_model(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, String)>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_to_write(&state, &headers, &org).await?;
    let number = parse_number(&number)?;
    let base = format!("/orgs/{org}/{repo}/{number}");
    let crumbs = [
        (format!("/orgs/{org}"), org.clone()),
        (format!("/orgs/{org}/{repo}"), repo.clone()),
        (base.clone(), number.to_string()),
    ];
    Ok(confirm_page(
        &session,
        &format!("{org}/{repo}:{number}"),
        "The model and its manifest are removed for good; files other models share are kept. A model an alias points at is refused: move the alias first.",
        &format!("{base}/delete"),
        &base,
        &crumbs,
    ))
}

/// `POST /orgs/{org}/{repo}/{number}/delete`.
async fn delete_model(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult<Response> {
    writer(&state, &method, &headers, &org, &csrf_of(form)).await?;
    let number = parse_number(&number)?;
    let id = ModelId::new(&org, &repo, number).map_err(failed)?;
    state.backend.delete_model(id).await.map_err(failed)?;
    Ok(page::see_other(&format!("/orgs/{org}/{repo}?deleted={number}"), None))
}

/// `GET /orgs/{org}/{repo}/delete`: the confirmation.
async fn confirm_delete_repository(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_to_write(&state, &headers, &org).await?;
    let base = format!("/orgs/{org}/{repo}");
    let crumbs = [(format!("/orgs/{org}"), org.clone()), (base.clone(), repo.clone())];
    Ok(confirm_page(
        &session,
        &format!("repository {org}/{repo}"),
        "Every model of the repository, and its aliases, are removed for good; files other repositories share are kept.",
        &format!("{base}/delete"),
        &base,
        &crumbs,
    ))
}

/// `POST /orgs/{org}/{repo}/delete`.
async fn delete_repository(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    method: Method,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult<Response> {
    writer(&state, &method, &headers, &org, &csrf_of(form)).await?;
    state.backend.delete_repository(org.clone(), repo.clone()).await.map_err(failed)?;
    Ok(page::see_other(&format!("/orgs/{org}?deleted={}", encode(&repo)), None))
}

/// The browser's routes, merged into the API's router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", axum::routing::post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route(&format!("{}/{{name}}", page::ASSETS), get(page::serve_asset))
        .route("/orgs/{org}", get(organization))
        .route("/orgs/{org}/{repo}", get(repository))
        .route("/orgs/{org}/{repo}/delete", get(confirm_delete_repository).post(delete_repository))
        .route("/orgs/{org}/{repo}/{number}", get(model))
        .route("/orgs/{org}/{repo}/{number}/delete", get(confirm_delete_model).post(delete_model))
        .route("/orgs/{org}/{repo}/{number}/files/{*path}", get(download))
}
