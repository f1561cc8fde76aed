//! The browser's route table.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use runner_core::serve::page;

use super::actions::{confirm_delete_model, confirm_delete_repository, delete_model, delete_repository, download};
use super::admin;
use super::browse::{model, organization, repository};
use super::session::{home, sign_in, sign_out};
use crate::api::AppState;

/// The browser's routes, merged into the API's router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", axum::routing::post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route(&format!("{}/{{name}}", page::ASSETS), get(page::serve_asset))
        .route("/orgs/{org}", get(organization))
        .route("/orgs/{org}/-/tokens", get(admin::tokens))
        .route("/orgs/{org}/-/tokens/{id}/revoke", axum::routing::post(admin::revoke))
        .route("/orgs/{org}/-/audit", get(admin::audit))
        .route("/orgs/{org}/{repo}", get(repository))
        .route("/orgs/{org}/{repo}/delete", get(confirm_delete_repository).post(delete_repository))
        .route("/orgs/{org}/{repo}/{number}", get(model))
        .route("/orgs/{org}/{repo}/{number}/delete", get(confirm_delete_model).post(delete_model))
        .route("/orgs/{org}/{repo}/{number}/files/{*path}", get(download))
}
