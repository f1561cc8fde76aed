//! What `verify` and `export` read of a directory registry.

use async_trait::async_trait;
use runner_core::registry::store::BlobWriter;
use runner_core::registry::{Alias, AliasMove};
use runner_core::{Error, Manifest, Result};

use super::Directory;
use crate::blocking::blocking;
use crate::storage::{Found, Scrub, Source};

#[async_trait]
impl Scrub for Directory {
    async fn manifests(&self) -> Result<Vec<Manifest>> {
        let store = self.store.clone();
        blocking(move || Ok(store.all_models()?.into_iter().filter_map(|model| model.manifest).collect())).await
    }

    async fn check(&self, sha256: &str, size: u64, deep: bool) -> Result<Found> {
        let (store, sha256) = (self.store.clone(), sha256.to_string());
        blocking(move || {
            let Some(path) = store.content(&sha256, None)? else {
                return Ok(Found::Missing(format!("blobs/sha256/{}/{sha256} is not in the directory", &sha256[..2])));
            };
            let held = std::fs::metadata(&path)
                .map_err(|e| runner_core::Error::msg(format!("reading {}: {e}", path.display())))?
                .len();
            if held != size {
                return Ok(Found::Size(held));
            }
            if deep {
                let (actual, _) = runner_core::registry::store::hash_file(&path)?;
                if actual != sha256 {
                    return Ok(Found::Corrupt(actual));
                }
            }
            Ok(Found::Sound)
        })
        .await
    }

    /// An organization with no grants at all wrote its models through the embedded
    /// registry and was never served: `runner-registry serve` grants it what its models
    /// name when it starts (`grant_existing`), so nothing is missing yet.
    async fn granted(&self, organization: &str, sha256: &str) -> Result<bool> {
        let (store, organization, sha256) = (self.store.clone(), organization.to_string(), sha256.to_string());
        blocking(move || {
            let never_served = !store.registry().root().join("grants").join(&organization).exists();
            Ok(never_served || store.granted(&organization, &sha256)?)
        })
        .await
    }
}

#[async_trait]
impl Source for Directory {
    async fn ready_models(&self, organization: &str, repository: &str) -> Result<Vec<Manifest>> {
        let (store, organization, repository) = (self.store.clone(), organization.to_string(), repository.to_string());
        blocking(move || {
            let models = runner_core::Registry::models(store.registry(), &organization, &repository)?;
            Ok(models.into_iter().filter_map(|m| m.manifest).collect())
        })
        .await
    }

    async fn alias_book(&self, organization: &str, repository: &str) -> Result<(Vec<Alias>, Vec<AliasMove>)> {
        let (store, organization, repository) = (self.store.clone(), organization.to_string(), repository.to_string());
        blocking(move || {
            let registry = store.registry();
            Ok((
                runner_core::Registry::aliases(registry, &organization, &repository)?,
                runner_core::Registry::alias_history(registry, &organization, &repository, None)?,
            ))
        })
        .await
    }

    async fn copy_content(&self, sha256: &str, to: &mut BlobWriter) -> Result<()> {
        let path = self
            .store
            .content(sha256, None)?
            .ok_or_else(|| Error::msg(format!("content {sha256} is named by a ready model but missing from the directory (run `runner-registry verify`)")))?;
        tokio::task::block_in_place(|| {
            let mut file =
                std::fs::File::open(&path).map_err(|e| Error::msg(format!("opening {}: {e}", path.display())))?;
            std::io::copy(&mut file, to).map_err(|e| Error::storing("an exported content", e))?;
            Ok(())
        })
    }
}
