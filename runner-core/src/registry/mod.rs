//! Registries: where models live. One [`Registry`] trait, an embedded local registry
//! (a directory) by default; an in-memory registry for tests, an HTTP client and
//! scale-out backends implement the same trait, and `conformance` (feature
//! `conformance`) checks that they keep its guarantees.

mod alias;
pub mod buffers;
#[cfg(feature = "conformance")]
pub mod conformance;
mod digest;
mod env;
mod hashes;
#[cfg(feature = "http-client")]
mod http;
mod local;
mod memory;
mod open;
pub mod protocol;
pub mod sample;
#[cfg(feature = "store")]
pub mod store;
mod traits;
mod volume;

pub use alias::{aliased, check_expect, check_move, no_such_alias, Alias, AliasMove, AliasOptions, Canary, Expect};
pub use env::{DEFAULT_REGISTRY, REGISTRY_ENV, TOKEN_ENV};
#[cfg(feature = "http-client")]
pub use http::HttpRegistry;
pub use local::LocalRegistry;
pub use memory::MemoryRegistry;
pub use open::{open_registry, registry_location};
pub use traits::{
    contents_gone, no_such_repository, not_ready, number_gone, Expected, ModelStatus, ModelSummary, Registry, Staging,
};
