//! The pages that act: a file's download, and deletes behind a confirmation.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::Response;
use runner_core::serve::page::{self, html};
use runner_core::serve::PathParams;
use runner_core::ModelId;

use super::browse::{encode, parse_number};
use super::session::{
    csrf_of, failed, not_found, respond, session_for, session_to_delete, writer, Address, CsrfForm, PageResult, Session,
};
use crate::api::{model_view, AppState};
use crate::audit::Action;

/// `GET /orgs/{org}/{repo}/{number}/files/{path}`: one file, as an attachment.
pub(super) async fn download(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number, path)): PathParams<(String, String, String, String)>,
    request: Request,
) -> PageResult<Response> {
    session_for(&state, request.headers(), &org, Some(&repo)).await?;
    let number = parse_number(&number)?;
    let id = ModelId::new(&org, &repo, number).map_err(failed)?;
    let view = model_view(&*state.backend, id).await.map_err(failed)?;
    let Some(file) = view.manifest.as_ref().and_then(|m| m.files.iter().find(|f| f.path == path)).cloned() else {
        return Err(not_found(&format!("file `{path}`")));
    };
    let blob = state.backend.download(&org, &file.sha256, request).await.map_err(failed)?;
    let mut response = blob.ok_or_else(|| not_found("content"))?;
    let name = file.path.rsplit('/').next().unwrap_or("file");
    let disposition = format!("attachment; filename*=UTF-8''{}", encode(name).replace('/', "%2F"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

pub(super) fn confirm_page(
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
pub(super) async fn confirm_delete_model(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, String)>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_to_delete(&state, &headers, &org, &repo).await?;
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
pub(super) async fn delete_model(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo, number)): PathParams<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    address: Address,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult<Response> {
    let session = writer(&state, &method, &headers, &org, &repo, &csrf_of(form)).await?;
    let number = parse_number(&number)?;
    let id = ModelId::new(&org, &repo, number).map_err(failed)?;
    state.backend.delete_model(&id).await.map_err(failed)?;
    session.record(&state, &org, Action::DeleteModel, Some(&repo), format!("{repo}:{number}"), address).await;
    Ok(page::see_other(&format!("/orgs/{org}/{repo}?deleted={number}"), None))
}

/// `GET /orgs/{org}/{repo}/delete`: the confirmation.
pub(super) async fn confirm_delete_repository(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> PageResult<Response> {
    let session = session_to_delete(&state, &headers, &org, &repo).await?;
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
pub(super) async fn delete_repository(
    State(state): State<Arc<AppState>>,
    PathParams((org, repo)): PathParams<(String, String)>,
    method: Method,
    headers: HeaderMap,
    address: Address,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> PageResult<Response> {
    let session = writer(&state, &method, &headers, &org, &repo, &csrf_of(form)).await?;
    state.backend.delete_repository(&org, &repo).await.map_err(failed)?;
    session.record(&state, &org, Action::DeleteRepository, Some(&repo), repo.clone(), address).await;
    Ok(page::see_other(&format!("/orgs/{org}?deleted={}", encode(&repo)), None))
}
