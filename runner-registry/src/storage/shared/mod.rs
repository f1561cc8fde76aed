//! The shared backend: metadata in PostgreSQL, file contents in an S3-compatible object
//! store, for any number of replicas. One file per concern: the store and its helpers
//! (`store`), models and numbers (`models`), aliases, contents with their uploads and
//! downloads (`content`, `multipart`), tokens, garbage collection (`gc`, with the
//! argument that it loses nothing), `import`, and what `verify` and `export` read
//! (`admin`).

mod admin;
mod aliases;
mod content;
mod gc;
mod import;
mod models;
mod multipart;
mod store;
mod tokens;

pub use import::Imported;
pub use store::{s3_store, Objects, SharedStore};
