//! The API's route table.

use std::sync::Arc;

use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use runner_core::registry::protocol::route;

use super::aliases::{alias_history, delete_alias, list_aliases, set_alias};
use super::blobs::{get_blob, head_blob, head_blobs, post_blob, put_blob};
use super::models::{
    commit, create_model, delete_model, delete_repository, discard, get_model, keep_alive, list_models, list_repos,
};
use super::openapi;
use super::state::AppState;
use super::tokens;

/// Every route of the API (the table in [`crate::api`]), `/livez` and `/openapi.json`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
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
        .route(tokens::TOKENS, get(tokens::list_tokens).post(tokens::create_token))
        .route(tokens::TOKEN, delete(tokens::revoke_token))
        .route("/livez", get(|| async { "live" }))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
}
