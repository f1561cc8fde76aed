//! Serving registered models over HTTP with axum.
//!
//! | route | what |
//! |---|---|
//! | `POST /predict` | the model's pipeline (when one model is served) |
//! | `POST /models/{repository}/predict` | the pipeline of one of the served models |
//! | `GET /models`, `GET /models/{repository}` | served models and their manifests |
//! | `GET /` | a page for people: the served models, their live figures, a form to try each |
//! | `GET /docs` | the API reference, rendered from the OpenAPI document |
//! | `GET /livez` | 200 while the process runs |
//! | `GET /readyz` | 200 once every model is loaded, 503 before |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /openapi.json` | OpenAPI 3.1 document built from the runners' types |
//! | `/v2/...` | the KServe V2 protocol (see [`crate::v2`]): tensors for runners on a tensor backend, one `BYTES` element holding the body for the others |
//!
//! With the `grpc` feature, the same V2 protocol is also spoken over gRPC on
//! [`ServeOptions::grpc_addr`] (see [`grpc`]).
//!
//! Errors are JSON: `{"error": {"status": 422, "code": "invalid_input", "message": "..."}}`.
//! Every prediction's response names the model that answered in [`MODEL_HEADER`]
//! (`x-runner-model: iris:3`).
//!
//! A model served through an alias (`serve iris:prod`) follows it
//! ([`ServeOptions::follow_interval`]): when the alias moves, the new model is loaded in
//! the background and swapped in atomically ([`App::swap_model`]); requests in flight
//! finish on the old one, which is then dropped. A model that fails to load is not swapped
//! in; `GET /models/{repository}` shows the swaps and the failure.

mod app;
mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
mod listen;
pub mod observe;
mod openapi;
mod options;
pub mod page;
mod pages;
mod repository;
mod repository_routes;
mod routes;
mod split;
mod state;
mod test_client;
mod v2_routes;
mod watch;

pub use app::{serve, serve_on, shutdown_signal, App};
/// The request body type of [`TestClient::request`].
pub use axum::body::Body;
/// HTTP types (requests, headers, status codes) for [`TestClient::request`].
pub use axum::http;
pub use error::{method_not_allowed, status_for, status_of, ApiError, PathParams};
#[cfg(feature = "args")]
pub use listen::ConnectionArgs;
pub use listen::{serve_connections, ConnectionLimits};
pub use options::{RepositoryMode, ServeOptions};
pub use routes::{Predicting, Predictions, MODEL_HEADER};
pub use test_client::{TestClient, TestResponse};
