//! The HTTP routes of the model repository API ([`super::repository`]), answering in the V2
//! protocol's error shape. A module of their own: the repository's logic is used by the
//! prediction routes (`--load-on-demand`), and these routes use the V2 routes' errors.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;

use super::error::{ApiError, PathParams};
use super::repository::{index, json_or_empty, load, parameters, unload, version, IndexEntry};
use super::state::AppState;
use super::v2_routes::V2Error;

/// `POST /v2/repository/index`, body `{"ready": bool}` or empty.
pub(crate) async fn index_route(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Vec<IndexEntry>>, V2Error> {
    #[derive(Deserialize, Default)]
    struct IndexRequest {
        #[serde(default)]
        ready: bool,
    }
    let request: IndexRequest = json_or_empty(&body)?;
    Ok(Json(index(&state, request.ready).await?))
}

/// `POST /v2/repository/models/{name}/load`, body `{"parameters": {"version": "3"}}` or empty.
pub(crate) async fn load_route(
    State(state): State<Arc<AppState>>,
    name: Result<PathParams<String>, ApiError>,
    body: Bytes,
) -> Result<StatusCode, V2Error> {
    let PathParams(name) = name?;
    let parameters = parameters(&body)?;
    let version = version(&parameters)?;
    load(&state, &name, version.as_deref()).await?;
    Ok(StatusCode::OK)
}

/// `POST /v2/repository/models/{name}/unload`, body `{"parameters": {...}}` or empty.
pub(crate) async fn unload_route(
    State(state): State<Arc<AppState>>,
    name: Result<PathParams<String>, ApiError>,
    body: Bytes,
) -> Result<StatusCode, V2Error> {
    let PathParams(name) = name?;
    parameters(&body)?;
    unload(&state, &name).await?;
    Ok(StatusCode::OK)
}
