//! The registry server: organizations -> repositories -> numbered models -> files, over
//! HTTP ([`router`]), with per-organization tokens, a browser for people, and the admin
//! commands (`gc`, `verify`, `export`, `import`).
//!
//! Layers, lowest first; a module uses only its own layer and those below (checked by
//! `tests/layers.rs`):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | floor | `tokens`, [`audit`], `blocking` | tokens and their file; the audit log's entries; blocking calls off the runtime |
//! | storage | [`storage`] | the storage contract ([`Storage`]) and its backends: a directory, or PostgreSQL and S3 ([`SharedStore`]) |
//! | operations | [`verify`], [`export`], [`rollout`] | scrub and export, over the contract; rollouts, over a registry client and the serves' metrics |
//! | api | `api` | the HTTP API: routes, handlers, auth, errors ([`Config`]) |
//! | pages | `pages` | the browser's pages, over the API's state |
//! | server | `server` | [`router`]: the API and the pages as one service |
//! | cli | [`cli`] | the `runner-registry` command line |
//!
//! The HTTP routes, the rights they need and what they answer are listed in the `api`
//! module's notes and in `GET /openapi.json` (OpenAPI 3.1).

mod api;
pub mod audit;
mod blocking;
pub mod cli;
pub mod export;
mod pages;
pub mod rollout;
mod server;
pub mod storage;
mod tokens;
pub mod verify;

pub use api::Config;
pub use server::router;
pub use storage::{s3_store, Backend, Imported, Objects, SharedStore, Storage};
pub use tokens::{
    token_hash, tokens_path, NewToken, Right, Token, TokenState, Tokens, LAST_USED_PRECISION, MAX_LIFETIME,
};
