//! The registry server: organizations -> repositories -> numbered models -> files, over
//! HTTP. It stores into a [`Backend`]: one directory through runner-core's directory
//! registry (the embedded registry's own code, so the two cannot drift), or PostgreSQL
//! and an S3-compatible bucket shared by any number of replicas ([`SharedStore`]). The
//! wire protocol (routes, bodies, error envelope) is
//! [`runner_core::registry::protocol`], shared with the client, `HttpRegistry`.
//!
//! | route | right | what |
//! |---|---|---|
//! | `GET /v1/orgs/{org}/repos` | read | repositories |
//! | `DELETE /v1/orgs/{org}/repos/{repo}` | write | delete a repository and its models |
//! | `GET /v1/orgs/{org}/repos/{repo}/models` | read | models with status and manifest; `?limit=N&before=M`: one page, newest first, with `next` |
//! | `POST /v1/orgs/{org}/repos/{repo}/models` | write | take the next number (atomic) |
//! | `GET /v1/orgs/{org}/repos/{repo}/models/{n}` | read | status and manifest |
//! | `DELETE /v1/orgs/{org}/repos/{repo}/models/{n}` | write | delete a model |
//! | `PUT /v1/orgs/{org}/repos/{repo}/models/{n}/manifest` | write | commit: the model becomes ready (`If-None-Match: *` / `If-Match: "sha256"` make a racing commit fail with 412) |
//! | `DELETE /v1/orgs/{org}/repos/{repo}/models/{n}/reservation` | write | give back a number whose upload failed |
//! | `PUT /v1/orgs/{org}/repos/{repo}/models/{n}/reservation` | write | keep a number reserved while its registration works (404 once given back) |
//! | `GET /v1/orgs/{org}/repos/{repo}/aliases` | read | the repository's aliases |
//! | `PUT /v1/orgs/{org}/repos/{repo}/aliases/{alias}` | write | move or create an alias: `{"number": 4, "expect": {"number": 3}, "force": false}`; 409 when `expect` does not hold or the API fingerprint changed without `force` |
//! | `DELETE /v1/orgs/{org}/repos/{repo}/aliases/{alias}` | write | delete an alias (`?expect=3`: only while it points at 3) |
//! | `GET /v1/orgs/{org}/repos/{repo}/history` | read | every alias move, who made it and when (`?alias=prod`: one alias's) |
//! | `HEAD /v1/orgs/{org}/blobs/{sha256}` | read | is this content stored? (the client asks before sending) |
//! | `PUT /v1/orgs/{org}/blobs/{sha256}` | write | upload content, streamed and checked against the sha256 |
//! | `POST /v1/orgs/{org}/blobs` | write | upload content not named yet: answers its sha256 and size |
//! | `GET /v1/orgs/{org}/blobs/{sha256}` | read | download, with HTTP Range |
//!
//! `GET /openapi.json` describes the API (OpenAPI 3.1). Errors are JSON `{"error": {"status", "code", "message"}}`. A token of one organization
//! gets 404 for another's routes, so names do not leak.
//!
//! Content is scoped to organizations (see [`runner_core::registry::store`]): `HEAD` and
//! `GET` of a blob answer 404 to an organization that has neither sent that content nor
//! names it in a model, and a `PUT` of content the server holds for others is received
//! and checked in full before it is granted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use runner_core::registry::protocol::{
    route, AliasHistory, AliasQuery, Aliases, Created, ErrorBody, ModelView, Models, ModelsQuery, Precondition,
    Repositories, SetAlias, MAX_FILE_SIZE_HEADER, MAX_PAGE, MAX_UNNAMED_SIZE_HEADER, SAMPLE_KNOWN_HEADER,
};
use runner_core::registry::{AliasOptions, Expect};
use runner_core::serve::PathParams;
use runner_core::{validate_sha256, Error, Manifest, ModelId};
use sha2::Digest;

mod backend;
mod blocking;
pub mod export;
mod openapi;
mod pages;
mod shared;
mod tokens;
pub mod verify;

pub use backend::Backend;
pub use shared::{s3_store, Imported, Objects, SharedStore};
pub use tokens::{Right, Token, Tokens};

/// How the server runs (its storage is a [`Backend`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// `false` only when explicitly asked (`--no-auth`): every request may read and write
    /// every organization.
    pub auth: bool,
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Requests per second allowed to each token (each client address without auth);
    /// past it the server answers 429 with `Retry-After`. `None`: no limit.
    pub rate_limit: Option<std::num::NonZeroU32>,
    /// File uploads one token may have in flight at once; past it the server answers 429
    /// with `Retry-After` (the client retries). Without auth there is no token to count
    /// by, and no cap. `None`: no limit.
    pub max_uploads_per_token: Option<std::num::NonZeroUsize>,
}

impl Default for Config {
    /// Auth on, 64 GiB files, no rate limit, 16 uploads per token.
    fn default() -> Self {
        Config {
            auth: true,
            max_file_size: 64 << 30,
            rate_limit: None,
            max_uploads_per_token: std::num::NonZeroUsize::new(16),
        }
    }
}

/// The uploads each token has in flight, for [`Config::max_uploads_per_token`].
struct Uploads {
    limit: Option<std::num::NonZeroUsize>,
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One upload in flight; counted until dropped (the body read, failed or abandoned).
struct UploadSlot<'a> {
    uploads: &'a Uploads,
    who: String,
}

impl Uploads {
    fn start(&self, who: &str) -> ApiResult<Option<UploadSlot<'_>>> {
        let Some(limit) = self.limit else { return Ok(None) };
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(who.to_string()).or_insert(0);
        if *count >= limit.get() {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                format!("{who} already has {count} uploads in flight, the most the server allows at once (--max-uploads-per-token); send this one when one of them ends"),
            )
            .retry_after(std::time::Duration::from_secs(1)));
        }
        *count += 1;
        Ok(Some(UploadSlot { uploads: self, who: who.to_string() }))
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.uploads.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.who) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.who);
            }
        }
    }
}

struct AppState {
    backend: Backend,
    auth: bool,
    max_file_size: u64,
    limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
    uploads: Uploads,
}

impl AppState {
    /// Counts one request against `key`'s rate.
    fn throttle(&self, key: &str) -> ApiResult<()> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {} ms", wait.as_millis().max(1)),
            )
            .retry_after(wait)
        })
    }
}

/// A JSON error.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for the `Retry-After` header.
    retry_after: Option<u64>,
    /// What a refused commit named that is gone ([`Error::Gone`]).
    missing: Option<runner_core::Missing>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String) -> ApiError {
        ApiError { status, code, message, retry_after: None, missing: None }
    }

    fn retry_after(self, wait: std::time::Duration) -> ApiError {
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

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
}

type ApiResult<T> = Result<T, ApiError>;

/// Checks the bearer token for `right` on `org`, and says who it is (`token ID`, or
/// `anonymous` without auth) for the records that keep it. A token of another
/// organization is answered like a missing resource.
async fn authorize(
    state: &AppState,
    request_headers: &axum::http::HeaderMap,
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

fn model_id(org: &str, repo: &str, number: u64) -> ApiResult<ModelId> {
    ModelId::new(org, repo, number).map_err(ApiError::from)
}

async fn list_repos(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    let repositories = s.backend.repositories(org).await?;
    Ok(Json(Repositories { repositories }).into_response())
}

async fn list_models(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    query: Result<Query<ModelsQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let Some(limit) = query.limit else {
        let models = s.backend.models(org, repo).await?;
        return Ok(Json(Models { models: models.into_iter().map(ModelView::of).collect(), next: None }).into_response());
    };
    if !(1..=MAX_PAGE).contains(&limit) {
        let message = format!("`limit` must be 1 to {MAX_PAGE}, not {limit}");
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message));
    }
    // One page, newest first: the numbers below `before`, and only their manifests read.
    let numbers = s.backend.model_numbers(org.clone(), repo.clone()).await?;
    let below: Vec<u64> = numbers.into_iter().filter(|&n| query.before.is_none_or(|before| n < before)).collect();
    let start = below.len().saturating_sub(limit);
    let page: Vec<u64> = below[start..].iter().rev().copied().collect();
    let models = s.backend.views(&org, &repo, &page).await?;
    let next = (start > 0).then(|| below[start]);
    Ok(Json(Models { models, next }).into_response())
}

async fn create_model(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Write).await?;
    let id = s.backend.create_model(org, repo).await?;
    Ok((StatusCode::CREATED, Json(Created { number: id.number })).into_response())
}

async fn get_model(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    let view = s.backend.model(model_id(&org, &repo, number)?).await?;
    Ok(Json(view).into_response())
}

async fn delete_model(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Write).await?;
    s.backend.delete_model(model_id(&org, &repo, number)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_repository(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Write).await?;
    s.backend.delete_repository(org, repo).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn discard(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Write).await?;
    s.backend.discard(model_id(&org, &repo, number)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn keep_alive(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Write).await?;
    s.backend.keep_alive(model_id(&org, &repo, number)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn commit(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Write).await?;
    let id = model_id(&org, &repo, number)?;
    // If-None-Match: * -> the model must have no manifest; If-Match: "sha" -> it must be that one.
    let expected = {
        let text =
            |name: header::HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Precondition::parse(text(header::IF_NONE_MATCH).as_deref(), text(header::IF_MATCH).as_deref())
    };
    let bytes = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("cannot read the manifest: {e}")))?;
    let manifest = Manifest::from_json(&id, &bytes)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_manifest", e.to_string()))?;
    match s.backend.commit(manifest, expected).await.map_err(ApiError::from) {
        Err(ApiError { status: StatusCode::CONFLICT, message, .. }) => {
            Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", message))
        }
        other => other.map(|()| StatusCode::NO_CONTENT.into_response()),
    }
}

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

async fn list_aliases(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    let aliases = s.backend.aliases(org, repo).await?;
    Ok(Json(Aliases { aliases }).into_response())
}

async fn set_alias(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, alias)): PathParams<(String, String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let by = authorize(&s, request.headers(), &org, Right::Write).await?;
    let bytes = axum::body::to_bytes(request.into_body(), 64 << 10)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("cannot read the body: {e}")))?;
    let body: SetAlias = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("the body must be {{\"number\": N, \"expect\": ..., \"force\": false}}: {e}"),
        )
    })?;
    let options = AliasOptions { expect: body.expect, force: body.force };
    let change = s.backend.set_alias(org, repo, alias, body.number, options, by).await?;
    Ok(Json(change).into_response())
}

async fn delete_alias(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, alias)): PathParams<(String, String, String)>,
    query: Result<Query<AliasQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    let by = authorize(&s, request.headers(), &org, Right::Write).await?;
    let query = alias_query(query)?;
    let expect = query.expect.map_or(Expect::Any, Expect::Number);
    let change = s.backend.delete_alias(org, repo, alias, expect, by).await?;
    Ok(Json(change).into_response())
}

async fn alias_history(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    query: Result<Query<AliasQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    let query = alias_query(query)?;
    let moves = s.backend.alias_history(org, repo, query.alias).await?;
    Ok(Json(AliasHistory { moves }).into_response())
}

async fn head_blob(
    State(s): State<Arc<AppState>>,
    PathParams((org, sha256)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    // The client asks before sending: a yes means it will name the content instead, so
    // it is touched to survive garbage collection until the commit.
    let limit = (MAX_FILE_SIZE_HEADER, s.max_file_size.to_string());
    match s.backend.reuse(org, sha256).await? {
        Some(size) => {
            Ok(([(header::CONTENT_LENGTH.as_str(), size.to_string()), limit], StatusCode::OK).into_response())
        }
        None => Ok(([(header::CONTENT_TYPE.as_str(), "application/json".to_string()), limit], StatusCode::NOT_FOUND)
            .into_response()),
    }
}

/// Streams the body into the store, hashing as it goes; nothing is kept unless the sha256
/// matches the one in the URL. Content the server holds for other organizations only is
/// received and checked all the same (knowing a sha256 proves nothing), then granted.
async fn put_blob(
    State(s): State<Arc<AppState>>,
    PathParams((org, sha256)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let who = authorize(&s, request.headers(), &org, Right::Write).await?;
    let _slot = if s.auth { s.uploads.start(&who)? } else { None };
    refuse_too_large(&s, request.headers())?;
    let declared = declared_length(request.headers());
    match s.backend.put_blob(org, sha256, request.into_body(), s.max_file_size, declared).await? {
        true => Ok(StatusCode::CREATED.into_response()),
        false => Ok(StatusCode::OK.into_response()),
    }
}

/// Streams a body not named beforehand into the store, and answers the sha256 and size
/// of what arrived: the client hashes as it sends, compares, and so reads its file once.
async fn post_blob(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    request: Request,
) -> ApiResult<Response> {
    let who = authorize(&s, request.headers(), &org, Right::Write).await?;
    let _slot = if s.auth { s.uploads.start(&who)? } else { None };
    refuse_too_large(&s, request.headers())?;
    let declared = declared_length(request.headers());
    let limit = s.backend.max_unnamed_size();
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "content of more than {limit} bytes is not taken unnamed: send it by sha256 (PUT .../blobs/SHA256)"
            ),
        ));
    }
    let (stored, new) = s.backend.post_blob(org, request.into_body(), s.max_file_size, declared).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(stored)).into_response())
}

/// `HEAD .../blobs?sample=`.
#[derive(serde::Deserialize)]
struct BlobsQuery {
    sample: Option<String>,
}

/// How large a content the server takes unnamed (asked before a `POST`), and with
/// `?sample=`, whether the organization may read content with that sample.
async fn head_blobs(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    query: Result<Query<BlobsQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    let sample = query.map(|Query(q)| q.sample).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("{}: `sample` is one value", e.body_text()))
    })?;
    if let Some(sample) = sample.as_deref().filter(|v| validate_sha256(v).is_err()) {
        let shown: String = sample.chars().take(80).collect();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`sample` is 64 lowercase hex digits (a file's sample, see runner_core::registry::sample), not `{shown}`"),
        ));
    }
    let limit = s.backend.max_unnamed_size().min(s.max_file_size);
    let mut headers = vec![(MAX_UNNAMED_SIZE_HEADER, limit.to_string())];
    if let Some(sample) = sample {
        headers.push((SAMPLE_KNOWN_HEADER, s.backend.sample_known(org, sample).await?.to_string()));
    }
    Ok((StatusCode::OK, AppendHeaders(headers)).into_response())
}

/// 413 for an upload whose declared length is over the server's limit, before any of it
/// is read.
fn refuse_too_large(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    if declared_length(headers).is_some_and(|n| n > s.max_file_size) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("files may be at most {} bytes", s.max_file_size),
        ));
    }
    Ok(())
}

/// The length a request declares (`Content-Length`).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

async fn get_blob(
    State(s): State<Arc<AppState>>,
    PathParams((org, sha256)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, request.headers(), &org, Right::Read).await?;
    s.backend.get_blob(org, sha256, request).await?.ok_or_else(|| not_found("content"))
}

/// The server's router over `backend`.
pub fn router(backend: Backend, config: &Config) -> Router {
    let limiter =
        config.rate_limit.map(|per_second| governor::RateLimiter::keyed(governor::Quota::per_second(per_second)));
    let uploads = Uploads { limit: config.max_uploads_per_token, open: Default::default() };
    let state =
        Arc::new(AppState { backend, auth: config.auth, max_file_size: config.max_file_size, limiter, uploads });
    let router = Router::new()
        .route(route::REPOSITORIES, get(list_repos))
        .route(route::REPOSITORY, delete(delete_repository))
        .route(route::MODELS, get(list_models).post(create_model))
        .route(route::MODEL, get(get_model).delete(delete_model))
        .route(route::MANIFEST, put(commit))
        .route(route::RESERVATION, delete(discard).put(keep_alive))
        .route(route::BLOB, get(get_blob).head(head_blob).put(put_blob))
        .route(route::BLOBS, post(post_blob).head(head_blobs))
        .route(route::ALIASES, get(list_aliases))
        .route(route::ALIAS, put(set_alias).delete(delete_alias))
        .route(route::HISTORY, get(alias_history))
        .route("/livez", get(|| async { "live" }))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .merge(pages::routes())
        .fallback(|| async { not_found("route") })
        .method_not_allowed_fallback(runner_core::serve::method_not_allowed)
        .with_state(state);
    catch_panics(router)
}

/// `router` with its handlers' panics answered 500 in the API's error envelope (and
/// logged), instead of the connection dropped under the client.
fn catch_panics(router: Router) -> Router {
    router.layer(tower_http::catch_panic::CatchPanicLayer::custom(answer_panic))
}

fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&'static str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = what, "a request handler panicked; answered 500");
    let message = "the server failed on this request (a bug, logged on the server); other requests are not affected";
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message.into()).into_response()
}

/// Hex sha256 of a token: what the token file stores.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The token file inside a data directory.
pub fn tokens_path(data: &Path) -> PathBuf {
    data.join("tokens.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500_and_the_router_keeps_answering() {
        let boom = || async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            "never"
        };
        let app = catch_panics(Router::new().route("/boom", get(boom)).route("/fine", get(|| async { "fine" })));
        let request = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = app.clone().oneshot(request("/boom")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((body["error"]["status"].as_u64(), body["error"]["code"].as_str()), (Some(500), Some("internal")));
        assert_eq!(app.oneshot(request("/fine")).await.unwrap().status(), StatusCode::OK);
    }
}
