//! The registry server's HTTP API: the routes, their handlers, who may call them
//! (`auth`), and their errors. The wire protocol (routes, bodies, error envelope) is
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
//! | `GET /v1/orgs/{org}/tokens` | admin | the organization's tokens (never a secret) |
//! | `POST /v1/orgs/{org}/tokens` | admin | create a token: `{"name", "right", "repositories", "expires_in_seconds"}`; its secret is answered once |
//! | `DELETE /v1/orgs/{org}/tokens/{id}` | admin | revoke a token |
//!
//! `GET /openapi.json` describes the API (OpenAPI 3.1). Errors are JSON `{"error": {"status", "code", "message"}}`. A token of one organization
//! gets 404 for another's routes, so names do not leak.
//!
//! Content is scoped to organizations (see [`runner_core::registry::store`]): `HEAD` and
//! `GET` of a blob answer 404 to an organization that has neither sent that content nor
//! names it in a model, and a `PUT` of content the server holds for others is received
//! and checked in full before it is granted.

mod aliases;
mod auth;
mod blobs;
mod error;
mod models;
pub(crate) mod openapi;
mod routes;
mod state;
mod tokens;

pub(crate) use auth::usable;
pub(crate) use error::{not_found, ApiError};
pub(crate) use models::{model_view, views};
pub(crate) use routes::routes;
pub(crate) use state::AppState;
pub use state::Config;
