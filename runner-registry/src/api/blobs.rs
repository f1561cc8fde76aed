//! The content routes: ask before sending (`HEAD`), upload by sha256 (`PUT`) or unnamed
//! (`POST`), download with HTTP Range (`GET`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::Json;
use runner_core::registry::protocol::{Stored, MAX_FILE_SIZE_HEADER, MAX_UNNAMED_SIZE_HEADER, SAMPLE_KNOWN_HEADER};
use runner_core::serve::PathParams;
use runner_core::validate_sha256;

use super::auth::{authorize, Asking};
use super::error::{not_found, ApiError, ApiResult};
use super::state::AppState;
use crate::audit::Action;
use crate::tokens::Right;

pub(crate) async fn head_blob(
    State(s): State<Arc<AppState>>,
    PathParams((org, sha256)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, Asking::of(&request), &org, None, Right::Read).await?;
    // The client asks before sending: a yes means it will name the content instead, so
    // it is touched to survive garbage collection until the commit.
    let limit = (MAX_FILE_SIZE_HEADER, s.max_file_size.to_string());
    match s.backend.reuse(&org, &sha256).await? {
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
pub(crate) async fn put_blob(
    State(s): State<Arc<AppState>>,
    PathParams((org, sha256)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, None, Right::Write).await?;
    let _slot = if s.auth { s.uploads.start(&caller.who.by())? } else { None };
    refuse_too_large(&s, request.headers())?;
    let declared = declared_length(request.headers());
    let (stored, new) = s.backend.receive(&org, Some(&sha256), request.into_body(), s.max_file_size, declared).await?;
    caller.record(&s, &org, Action::Upload, None, uploaded(&stored, new)).await;
    Ok(if new { StatusCode::CREATED } else { StatusCode::OK }.into_response())
}

/// Streams a body not named beforehand into the store, and answers the sha256 and size
/// of what arrived: the client hashes as it sends, compares, and so reads its file once.
pub(crate) async fn post_blob(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, None, Right::Write).await?;
    let _slot = if s.auth { s.uploads.start(&caller.who.by())? } else { None };
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
    let (stored, new) = s.backend.receive(&org, None, request.into_body(), s.max_file_size, declared).await?;
    caller.record(&s, &org, Action::Upload, None, uploaded(&stored, new)).await;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(stored)).into_response())
}

/// `HEAD .../blobs?sample=`.
#[derive(serde::Deserialize)]
pub(crate) struct BlobsQuery {
    sample: Option<String>,
}

/// How large a content the server takes unnamed (asked before a `POST`), and with
/// `?sample=`, whether the organization may read content with that sample.
pub(crate) async fn head_blobs(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    query: Result<Query<BlobsQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, Asking::of(&request), &org, None, Right::Read).await?;
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
        headers.push((SAMPLE_KNOWN_HEADER, s.backend.sample_known(&org, &sample).await?.to_string()));
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

pub(crate) async fn get_blob(
    State(s): State<Arc<AppState>>,
    PathParams((org, sha256)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, Asking::of(&request), &org, None, Right::Read).await?;
    s.backend.download(&org, &sha256, request).await?.ok_or_else(|| not_found("content"))
}

/// An upload as the audit log names it.
fn uploaded(stored: &Stored, new: bool) -> String {
    let known = if new { "" } else { ", held already" };
    format!("content {} ({} bytes{known})", stored.sha256, stored.size)
}
