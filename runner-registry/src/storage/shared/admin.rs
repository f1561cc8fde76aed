//! What `verify` and `export` read of the shared registry.

use async_trait::async_trait;
use futures::StreamExt;
use runner_core::registry::{Alias, AliasMove};
use runner_core::Result;
use runner_core::{Error, Manifest, ModelId};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::store::{blob_path, db, missing, store, SharedStore};
use crate::storage::{Aliases, Found, Models, Scrub, Source};

#[async_trait]
impl Scrub for SharedStore {
    async fn manifests(&self) -> Result<Vec<Manifest>> {
        let rows = sqlx::query(
            "SELECT organization, repository, number, manifest FROM models WHERE state = 'ready'
             ORDER BY organization, repository, number",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|row| {
                let id = ModelId::new(row.get::<&str, _>(0), row.get::<&str, _>(1), row.get::<i64, _>(2) as u64)?;
                Manifest::from_json(&id, row.get::<&str, _>(3).as_bytes())
            })
            .collect()
    }

    async fn check(&self, sha256: &str, size: u64, deep: bool) -> Result<Found> {
        let row: Option<(i64, bool)> = sqlx::query_as("SELECT size, deleting FROM blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            None => return Ok(Found::Missing("the database has no row for it".into())),
            Some((_, true)) => return Ok(Found::Missing("the database marks it for deletion".into())),
            Some((held, false)) if held as u64 != size => return Ok(Found::Size(held as u64)),
            Some(_) => {}
        }
        let path = blob_path(sha256);
        let held = match self.objects.head(&path).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Found::Missing(format!("the object store has no object {path}")))
            }
            Err(e) => return Err(store(e)),
        };
        if held != size {
            return Ok(Found::Size(held));
        }
        if deep {
            let mut stream = self.objects.get(&path).await.map_err(|e| missing(e, sha256))?.into_stream();
            let mut hasher = Sha256::new();
            while let Some(chunk) = stream.next().await {
                hasher.update(chunk.map_err(store)?);
            }
            let actual = hex::encode(hasher.finalize());
            if actual != sha256 {
                return Ok(Found::Corrupt(actual));
            }
        }
        Ok(Found::Sound)
    }

    async fn granted(&self, organization: &str, sha256: &str) -> Result<bool> {
        Ok(self.granted_size(organization, sha256).await?.is_some())
    }
}

#[async_trait]
impl Source for SharedStore {
    async fn ready_models(&self, organization: &str, repository: &str) -> Result<Vec<Manifest>> {
        Ok(self.models(organization, repository).await?.into_iter().filter_map(|m| m.manifest).collect())
    }

    async fn alias_book(&self, organization: &str, repository: &str) -> Result<(Vec<Alias>, Vec<AliasMove>)> {
        Ok((self.aliases(organization, repository).await?, self.alias_history(organization, repository, None).await?))
    }

    async fn copy_content(&self, sha256: &str, to: &mut runner_core::registry::store::BlobWriter) -> Result<()> {
        use std::io::Write;
        let got = self.objects.get(&blob_path(sha256)).await.map_err(|e| missing(e, sha256))?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(store)?;
            tokio::task::block_in_place(|| to.write_all(&chunk))
                .map_err(|e| Error::storing("an exported content", e))?;
        }
        Ok(())
    }
}
