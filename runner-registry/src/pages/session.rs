//! Who is browsing: the session cookie (a token, or without auth a random secret), the
//! CSRF check of forms, signing in and out, the layout's top bar, and the error pages.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use runner_core::serve::page::{self, html, Markup};
use runner_core::Error;
use serde::Deserialize;

use crate::api::{usable, ApiError, AppState};
use crate::audit::{Action, AuditEntry, Who};
use crate::tokens::{Right, Token};

/// The cookie a browser keeps its session in: the token (or, without auth, a random
/// secret that only ties forms to the browser).
pub(super) const SESSION: &str = "runner_session";

/// A page step's outcome: on failure, the page to answer with.
pub(super) type PageResult<T> = Result<T, Response>;

/// Who is browsing.
pub(super) struct Session {
    /// The token, or without auth the browser's random secret: the CSRF token derives from it.
    secret: String,
    /// The token's record (auth on).
    token: Option<Token>,
    /// A cookie to set (a new secret, without auth).
    set_cookie: Option<String>,
}

impl Session {
    /// Whether the session may delete in `repository` (the admin right, on that
    /// repository), so the page offers it.
    pub(super) fn can_delete(&self, repository: &str) -> bool {
        self.token.as_ref().is_none_or(|token| token.right.allows(Right::Admin) && token.covers(repository))
    }

    /// Whether the session may see `repository` (a token's globs).
    pub(super) fn covers(&self, repository: &str) -> bool {
        self.token.as_ref().is_none_or(|token| token.covers(repository))
    }

    /// Who the session is, for the audit log.
    pub(super) fn who(&self) -> Who {
        self.token.as_ref().map_or_else(Who::anonymous, Who::token)
    }

    /// The token (auth on).
    pub(super) fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    pub(super) fn csrf(&self) -> String {
        page::csrf_token(&self.secret)
    }

    /// `response`, setting the session cookie when it is new.
    pub(super) fn finish(&self, mut response: Response) -> Response {
        if let Some(value) = self.set_cookie.as_ref().and_then(|c| HeaderValue::from_str(c).ok()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    }
}

pub(super) fn api_error(error: ApiError) -> Response {
    let mut response = page::error_page(error.status, &error.message, Some(("/", "Home")));
    if let Some(seconds) = error.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

pub(super) fn failed(error: Error) -> Response {
    api_error(ApiError::from(error))
}

pub(super) fn not_found(what: &str) -> Response {
    page::error_page(StatusCode::NOT_FOUND, &format!("{what} not found"), Some(("/", "Home")))
}

/// The browsing session, or the sign-in page (auth on, no valid token in the cookie).
pub(super) async fn session(state: &AppState, headers: &HeaderMap) -> PageResult<Session> {
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
    // The cookie holds the token itself: a session ends when its token is revoked or
    // expires, from the next page on.
    let found = state.backend.find_token(presented).await.map_err(failed)?;
    match found.map(usable) {
        Some(Ok(token)) => {
            state.throttle(&token.id).map_err(api_error)?;
            Ok(Session { secret: presented.to_string(), token: Some(token), set_cookie: None })
        }
        refused => {
            let why = match refused {
                Some(Err(why)) => why,
                _ => "that token is no longer valid; sign in again".to_string(),
            };
            let mut response = sign_in_page(StatusCode::UNAUTHORIZED, Some(&why));
            if let Ok(value) = HeaderValue::from_str(&page::session_cookie(SESSION, None)) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            Err(response)
        }
    }
}

/// The session, allowed into `org` (a token of another organization is told the
/// organization does not exist, as the API does) and, when one is named, `repository`
/// (a token limited to other repositories is refused it).
pub(super) async fn session_for(
    state: &AppState,
    headers: &HeaderMap,
    org: &str,
    repository: Option<&str>,
) -> PageResult<Session> {
    if runner_core::validate_name("organization", org).is_err() {
        return Err(not_found("organization"));
    }
    let session = session(state, headers).await?;
    match &session.token {
        Some(token) if token.organization != org => Err(not_found(&format!("organization `{org}`"))),
        Some(token) if repository.is_some_and(|r| !token.covers(r)) => Err(page::error_page(
            StatusCode::FORBIDDEN,
            &format!("token {} may only reach the repositories {}", token.id, token.repositories.join(", ")),
            Some(("/", "Home")),
        )),
        _ => Ok(session),
    }
}

/// The session, allowed to delete in `repository` of `org` (the admin right).
pub(super) async fn session_to_delete(
    state: &AppState,
    headers: &HeaderMap,
    org: &str,
    repository: &str,
) -> PageResult<Session> {
    let session = session_for(state, headers, org, Some(repository)).await?;
    if !session.can_delete(repository) {
        return Err(page::error_page(
            StatusCode::FORBIDDEN,
            &format!("deleting needs a token with the admin right on `{org}`"),
            Some(("/", "Home")),
        ));
    }
    Ok(session)
}

/// A form that changes something: from this server's pages, with the session's CSRF
/// token, by a session that may delete in `repository`.
pub(super) async fn writer(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    org: &str,
    repository: &str,
    csrf: &str,
) -> PageResult<Session> {
    page::from_this_site(method, headers)?;
    let session = session_to_delete(state, headers, org, repository).await?;
    session.sent(csrf)?;
    Ok(session)
}

/// The client's address, when the server knows it.
pub(super) type Address = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

impl Session {
    /// Records a change made from the pages in the audit log, as the API does.
    pub(super) async fn record(
        &self,
        state: &AppState,
        org: &str,
        action: Action,
        repository: Option<&str>,
        target: String,
        address: Address,
    ) {
        let address = address.map(|axum::Extension(axum::extract::ConnectInfo(address))| address);
        let entry = AuditEntry::now(&self.who(), org, action, repository, target).from_address(address);
        state.backend.record_done(&entry).await;
    }

    /// Whether a form's `csrf` is this session's: a form another page (or site) made is
    /// refused.
    pub(super) fn sent(&self, csrf: &str) -> PageResult<()> {
        match page::csrf_matches(&self.secret, csrf) {
            true => Ok(()),
            false => Err(page::error_page(
                StatusCode::FORBIDDEN,
                "this form has expired or did not come from this page; reload the page and send it again",
                Some(("/", "Home")),
            )),
        }
    }
}

pub(super) fn top(session: Option<&Session>, crumbs: &[(String, String)]) -> Markup {
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
                    span { "token " code { (token.id) } " · " (match token.right { Right::Admin => "admin", Right::Write => "read & write", Right::Read => "read only" }) }
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

pub(super) fn respond(session: &Session, title: &str, crumbs: &[(String, String)], main: Markup) -> Response {
    let title = format!("{title} · runner registry");
    session.finish(page::respond(StatusCode::OK, page::document(&title, top(Some(session), crumbs), main, &[])))
}

pub(super) fn sign_in_page(status: StatusCode, message: Option<&str>) -> Response {
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
pub(super) async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> PageResult<Response> {
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
pub(super) struct SignIn {
    token: String,
}

/// `POST /sign-in`.
pub(super) async fn sign_in(
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
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(super) fn csrf_of(form: Result<Form<CsrfForm>, FormRejection>) -> String {
    form.map(|Form(form)| form.csrf).unwrap_or_default()
}

/// `POST /sign-out`.
pub(super) async fn sign_out(method: Method, headers: HeaderMap) -> Response {
    if let Err(refused) = page::from_this_site(&method, &headers) {
        return refused;
    }
    page::see_other("/", Some(page::session_cookie(SESSION, None)))
}
