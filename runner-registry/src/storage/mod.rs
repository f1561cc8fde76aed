//! Where a registry server keeps its registry: the contract ([`Storage`], one trait per
//! concern, with its rules stated once) and its two implementations, a directory on one
//! machine ([`Directory`]) and PostgreSQL with an object store shared by any number of
//! replicas ([`SharedStore`]). The server holds one as a [`Backend`].

mod backend;
mod directory;
mod shared;
mod traits;

pub use backend::Backend;
pub use directory::Directory;
pub use shared::{s3_store, Imported, Objects, SharedStore};
pub use traits::{Access, Aliases, Audit, Collector, Contents, Found, Models, Scrub, Source, Storage};
