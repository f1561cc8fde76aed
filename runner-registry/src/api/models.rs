//! The model routes: repositories, numbered models, reservations and commits.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use runner_core::registry::protocol::{Created, ModelView, Models, ModelsQuery, Precondition, Repositories, MAX_PAGE};
use runner_core::serve::PathParams;
use runner_core::{Error, Manifest, ModelId, Result};

use super::auth::{authorize, Asking};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::audit::Action;
use crate::storage::Storage;
use crate::tokens::Right;

/// One model's view, or [`Error::NotFound`].
pub(crate) async fn model_view(storage: &dyn Storage, id: ModelId) -> Result<ModelView> {
    let summary = storage.model(&id).await?;
    summary.map(ModelView::of).ok_or_else(|| Error::NotFound { what: "model", message: format!("{id}") })
}

/// The models numbered `numbers` of a repository, in that order, read at once (for a
/// page of a listing); one deleted meanwhile is left out.
pub(crate) async fn views(storage: &dyn Storage, org: &str, repo: &str, numbers: &[u64]) -> Result<Vec<ModelView>> {
    let loads = numbers.iter().map(|&number| {
        let id = ModelId::new(org, repo, number);
        async move {
            match model_view(storage, id?).await {
                Ok(view) => Ok(Some(view)),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
    });
    let models = futures::future::try_join_all(loads).await?;
    Ok(models.into_iter().flatten().collect())
}

fn model_id(org: &str, repo: &str, number: u64) -> ApiResult<ModelId> {
    ModelId::new(org, repo, number).map_err(ApiError::from)
}

pub(crate) async fn list_repos(
    State(s): State<Arc<AppState>>,
    PathParams(org): PathParams<String>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, None, Right::Read).await?;
    let mut repositories = s.backend.repositories(&org).await?;
    repositories.retain(|repository| caller.covers(repository));
    Ok(Json(Repositories { repositories }).into_response())
}

pub(crate) async fn list_models(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    query: Result<Query<ModelsQuery>, QueryRejection>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Read).await?;
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let Some(limit) = query.limit else {
        let models = s.backend.models(&org, &repo).await?;
        return Ok(Json(Models { models: models.into_iter().map(ModelView::of).collect(), next: None }).into_response());
    };
    if !(1..=MAX_PAGE).contains(&limit) {
        let message = format!("`limit` must be 1 to {MAX_PAGE}, not {limit}");
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message));
    }
    // One page, newest first: the numbers below `before`, and only their manifests read.
    let numbers = s.backend.model_numbers(&org, &repo).await?;
    let below: Vec<u64> = numbers.into_iter().filter(|&n| query.before.is_none_or(|before| n < before)).collect();
    let start = below.len().saturating_sub(limit);
    let page: Vec<u64> = below[start..].iter().rev().copied().collect();
    let models = views(&*s.backend, &org, &repo, &page).await?;
    let next = (start > 0).then(|| below[start]);
    Ok(Json(Models { models, next }).into_response())
}

pub(crate) async fn create_model(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Write).await?;
    let id = s.backend.create_model(&org, &repo).await?;
    caller.record(&s, &org, Action::Reserve, Some(&repo), format!("{repo}:{}", id.number)).await;
    Ok((StatusCode::CREATED, Json(Created { number: id.number })).into_response())
}

pub(crate) async fn get_model(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Read).await?;
    let view = model_view(&*s.backend, model_id(&org, &repo, number)?).await?;
    Ok(Json(view).into_response())
}

pub(crate) async fn delete_model(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Admin).await?;
    s.backend.delete_model(&model_id(&org, &repo, number)?).await?;
    caller.record(&s, &org, Action::DeleteModel, Some(&repo), format!("{repo}:{number}")).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn delete_repository(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Admin).await?;
    s.backend.delete_repository(&org, &repo).await?;
    caller.record(&s, &org, Action::DeleteRepository, Some(&repo), repo.clone()).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn discard(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Write).await?;
    s.backend.discard(&model_id(&org, &repo, number)?).await?;
    caller.record(&s, &org, Action::Discard, Some(&repo), format!("{repo}:{number}")).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn keep_alive(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Write).await?;
    s.backend.keep_alive(&model_id(&org, &repo, number)?).await?;
    caller.record(&s, &org, Action::KeepAlive, Some(&repo), format!("{repo}:{number}")).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn commit(
    State(s): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, u64)>,
    request: Request,
) -> ApiResult<Response> {
    let caller = authorize(&s, Asking::of(&request), &org, Some(&repo), Right::Write).await?;
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
    match s.backend.commit(&manifest, expected.as_ref()).await.map_err(ApiError::from) {
        Err(ApiError { status: StatusCode::CONFLICT, message, .. }) => {
            Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", message))
        }
        Err(e) => Err(e),
        Ok(()) => {
            let target = format!("{repo}:{number} ({} files, {} bytes)", manifest.files.len(), manifest.total_bytes());
            caller.record(&s, &org, Action::Commit, Some(&repo), target).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}
