//! The directory registry as a registry server stores into it: blobs written as they
//! stream in and checked against their sha256, manifests committed under a precondition,
//! uploads of a crashed run swept away. For `runner-registry` (feature `store`); users'
//! code goes through [`Registry`](super::Registry) instead.

use std::path::{Path, PathBuf};

pub use super::local::BlobWriter;
use super::local::LocalRegistry;
use super::traits::Expected;
use crate::error::Result;
use crate::manifest::Manifest;

/// A [`LocalRegistry`] opened by the process that owns its directory.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    registry: LocalRegistry,
}

impl DirectoryStore {
    /// Opens (or creates) the registry directory at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<DirectoryStore> {
        Ok(DirectoryStore { registry: LocalRegistry::open(root)? })
    }

    /// The registry, for everything the [`Registry`](super::Registry) trait does.
    pub fn registry(&self) -> &LocalRegistry {
        &self.registry
    }

    /// Removes uploads left behind by a process that died mid-upload. Call it only when
    /// no other process uses this registry (the registry server owns its directory).
    pub fn clean_tmp(&self) -> Result<usize> {
        self.registry.clean_tmp()
    }

    /// The stored content with this sha256, if any (its size is checked too).
    pub fn blob(&self, sha256: &str, size: Option<u64>) -> Result<Option<PathBuf>> {
        self.registry.blob(sha256, size)
    }

    /// Starts storing content; [`BlobWriter::finish`] checks it against the sha256 the
    /// sender declared and keeps nothing on a mismatch.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.registry.blob_writer()
    }

    /// Makes a model ready: writes its manifest last, after checking that the store holds
    /// every file it lists. With `expected`, the current manifest must still be the one
    /// the registration started from (checked under a lock); otherwise nothing changes
    /// and the error is [`Error::Conflict`](crate::Error::Conflict).
    pub fn commit_manifest(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()> {
        self.registry.commit_manifest(manifest, expected)
    }
}
