//! The directory registry as a registry server stores into it: blobs written as they
//! stream in and checked against their sha256, manifests committed under a precondition,
//! uploads of a crashed run swept away, and content scoped to organizations. For
//! `runner-registry` (feature `store`); users' code goes through
//! [`Registry`](super::Registry) instead.
//!
//! Content is stored once whoever sends it, but an organization may read (or be told it
//! exists) only content it has uploaded itself or that one of its models names: knowing
//! a sha256 is not enough. Each grant is an empty file `ROOT/grants/ORG/ab/SHA256`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use super::local::BlobWriter;
use super::local::LocalRegistry;
use super::traits::{Expected, ModelStatus, Registry};
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::names::{validate_name, validate_sha256};

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

    /// The stored content with this sha256 that `organization` may read, if any (its
    /// size is checked too). Content only other organizations have is `None`.
    pub fn blob(&self, organization: &str, sha256: &str, size: Option<u64>) -> Result<Option<PathBuf>> {
        if !self.granted(organization, sha256)? {
            return Ok(None);
        }
        self.registry.blob(sha256, size)
    }

    fn grant_path(&self, organization: &str, sha256: &str) -> Result<PathBuf> {
        validate_name("organization", organization)?;
        validate_sha256(sha256)?;
        Ok(self.registry.root().join("grants").join(organization).join(&sha256[..2]).join(sha256))
    }

    /// Whether `organization` may read the content with this sha256.
    pub fn granted(&self, organization: &str, sha256: &str) -> Result<bool> {
        let path = self.grant_path(organization, sha256)?;
        match fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// Lets `organization` read the content with this sha256: call it once the
    /// organization has sent that content, checked against its sha256.
    pub fn grant(&self, organization: &str, sha256: &str) -> Result<()> {
        let path = self.grant_path(organization, sha256)?;
        let dir = path.parent().expect("a grant has a folder");
        fs::create_dir_all(dir).ctx("creating", dir)?;
        fs::File::create(&path).ctx("creating", &path)?;
        Ok(())
    }

    /// Grants every organization the content its ready models name (registries written
    /// before grants existed); idempotent. Returns the grants written.
    pub fn grant_existing(&self) -> Result<usize> {
        let orgs = self.registry.root().join("orgs");
        let mut granted = 0;
        for entry in fs::read_dir(&orgs).ctx("listing", &orgs)? {
            let Some(org) = entry.ctx("listing", &orgs)?.file_name().to_str().map(str::to_string) else { continue };
            if validate_name("organization", &org).is_err() {
                continue;
            }
            for repository in self.registry.repositories(&org)? {
                for model in self.registry.models(&org, &repository)? {
                    let Some(manifest) = model.manifest.filter(|_| model.status == ModelStatus::Ready) else {
                        continue;
                    };
                    for file in &manifest.files {
                        if !self.granted(&org, &file.sha256)? {
                            self.grant(&org, &file.sha256)?;
                            granted += 1;
                        }
                    }
                }
            }
        }
        Ok(granted)
    }

    /// Starts storing content; [`BlobWriter::finish`] checks it against the sha256 the
    /// sender declared and keeps nothing on a mismatch.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.registry.blob_writer()
    }

    /// Makes a model ready: writes its manifest last, after checking that the store holds
    /// every file it lists and that the model's organization may read each (it sent it,
    /// or another of its models names it). With `expected`, the current manifest must
    /// still be the one the registration started from (checked under a lock); otherwise
    /// nothing changes and the error is [`Error::Conflict`].
    pub fn commit_manifest(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()> {
        let organization = &manifest.model.organization;
        for file in &manifest.files {
            if !self.granted(organization, &file.sha256)? {
                return Err(Error::invalid_input(format!(
                    "the manifest lists `{}` (sha256 {}), whose content organization `{organization}` has not uploaded; upload it first",
                    file.path, file.sha256
                )));
            }
        }
        self.registry.commit_manifest(manifest, expected)
    }
}
