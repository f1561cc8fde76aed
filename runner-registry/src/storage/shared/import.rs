//! `runner-registry import --from DIR`: a directory registry copied into the shared one.

use axum::body::Body;
use runner_core::Result;
use runner_core::{Error, Expected, ModelId};

use super::aliases::ready_manifest;
use super::content::grant;
use super::models::{ensure_repository, on_model};
use super::store::{db, SharedStore};
use super::tokens::insert_token;
use crate::storage::{Contents, Models};

/// What [`SharedStore::import`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Contents copied into the store, each checked against its sha256 on the way.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Contents the store already held (an earlier, interrupted run, or another model).
    pub reused: usize,
    /// Ready models imported, with their numbers.
    pub models: Vec<String>,
    /// Models imported by an earlier run (same manifest): left as they are.
    pub already: usize,
    /// Models whose number the database holds with another manifest: left as they are.
    pub conflicts: Vec<String>,
    /// Tokens imported (hashed, as they were).
    pub tokens: usize,
    /// Aliases imported, each with its history.
    pub aliases: usize,
}

impl SharedStore {
    /// Copies a directory registry (`runner-registry serve --data DIR`) into the database
    /// and the store: its tokens, then every ready model under its own number, each
    /// file's content read once and checked against its sha256 while it is sent.
    /// Idempotent and resumable: content already stored is not sent again, a model
    /// already imported is skipped, and a model is committed only once all its content is
    /// in, so an interrupted run shows no half model and the next run finishes it.
    /// Models still uploading in the directory are not imported.
    pub async fn import(&self, from: &std::path::Path) -> Result<Imported> {
        if !from.join("orgs").is_dir() && !from.join("blobs").is_dir() {
            return Err(Error::invalid_input(format!(
                "{} is not a registry directory (it has no orgs/ or blobs/ folder)",
                from.display()
            )));
        }
        let directory = runner_core::registry::store::DirectoryStore::open(from)?;
        let mut imported = Imported::default();
        for token in crate::tokens::stored(from)? {
            imported.tokens += insert_token(&self.pool, &token).await? as usize;
            // Imported again after a revocation: the revocation holds here too.
            if let Some(at) = token.revoked_at {
                sqlx::query("UPDATE tokens SET revoked_at = to_timestamp($2) WHERE id = $1 AND revoked_at IS NULL")
                    .bind(&token.id)
                    .bind(at.unix_timestamp_nanos() as f64 / 1e9)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
            }
        }
        let models = {
            let directory = directory.clone();
            tokio::task::spawn_blocking(move || directory.all_models())
                .await
                .map_err(|e| Error::msg(format!("listing {}: {e}", from.display())))??
        };
        let repositories: std::collections::BTreeSet<(String, String)> =
            models.iter().map(|m| (m.id.organization.clone(), m.id.repository.clone())).collect();
        for model in models {
            let Some(manifest) = model.manifest else { continue };
            let id = &manifest.model;
            for file in &manifest.files {
                let org = &id.organization;
                if self.granted_size(org, &file.sha256).await?.is_some() {
                    imported.reused += 1;
                    continue;
                }
                // Touched, as for a client told it exists: a collector spares it until the
                // commit below (and if it did not, the commit would be refused, not half-made).
                let stored: Option<i64> = sqlx::query_scalar(
                    "UPDATE blobs SET touched_at = now() WHERE sha256 = $1 AND NOT deleting RETURNING size",
                )
                .bind(&file.sha256)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                if stored.is_some() {
                    // Stored and checked already: the organization's models name it.
                    grant(&self.pool, org, &file.sha256).await?;
                    imported.reused += 1;
                    continue;
                }
                let path = directory.content(&file.sha256, Some(file.size))?.ok_or_else(|| {
                    Error::msg(format!(
                        "{id} names `{}` (sha256 {}), which {} lacks",
                        file.path,
                        file.sha256,
                        from.display()
                    ))
                })?;
                let reader = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| Error::msg(format!("opening {}: {e}", path.display())))?;
                let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20));
                self.receive(org, Some(&file.sha256), body, u64::MAX, Some(file.size)).await.map_err(|e| match e {
                    Error::Checksum { actual, .. } => Error::msg(format!(
                        "{} is damaged: `{}` of {id} should have sha256 {} but has {actual}; nothing of {id} was imported",
                        path.display(),
                        file.path,
                        file.sha256
                    )),
                    other => other,
                })?;
                imported.blobs += 1;
                imported.bytes += file.size;
            }
            ensure_repository(&self.pool, &id.organization, &id.repository).await?;
            let sql = "INSERT INTO models (organization, repository, number, state) VALUES ($1, $2, $3, 'uploading')
                 ON CONFLICT DO NOTHING";
            on_model(&self.pool, sql, id).await?;
            match self.commit(&manifest, Some(&Expected::Nothing)).await {
                Ok(()) => imported.models.push(id.to_string()),
                Err(Error::Conflict { .. }) => match self.model(id).await?.and_then(|m| m.manifest) {
                    Some(existing) if existing.sha256() == manifest.sha256() => imported.already += 1,
                    _ => imported.conflicts.push(id.to_string()),
                },
                Err(e) => return Err(e),
            }
        }
        for (organization, repository) in repositories {
            imported.aliases += self.import_aliases(&directory, &organization, &repository).await?;
        }
        Ok(imported)
    }

    /// Copies the aliases of one repository of `directory`, with their histories; an alias
    /// the database already has is left as it is (so a second run changes nothing).
    async fn import_aliases(
        &self,
        directory: &runner_core::registry::store::DirectoryStore,
        organization: &str,
        repository: &str,
    ) -> Result<usize> {
        use runner_core::Registry;
        let registry = directory.registry();
        let mut imported = std::collections::BTreeSet::new();
        // One transaction for the repository, so that its moves keep their order.
        let mut tx = self.pool.begin().await.map_err(db)?;
        for alias in registry.aliases(organization, repository)? {
            self.repository_exists(&mut *tx, organization, repository, true).await?;
            if self.alias_entry(&mut tx, organization, repository, &alias.name).await?.is_some() {
                continue;
            }
            for number in std::iter::once(alias.number).chain(alias.canary.map(|c| c.number)) {
                ready_manifest(&mut tx, &ModelId::new(organization, repository, number)?, &self.location).await?;
            }
            sqlx::query(
                "INSERT INTO aliases (organization, repository, name, number, canary_number, canary_percent)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(organization)
            .bind(repository)
            .bind(&alias.name)
            .bind(alias.number as i64)
            .bind(alias.canary.map(|c| c.number as i64))
            .bind(alias.canary.map(|c| i16::from(c.percent)))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            imported.insert(alias.name);
        }
        for change in registry.alias_history(organization, repository, None)? {
            if !imported.contains(&change.alias) {
                continue;
            }
            sqlx::query(
                "INSERT INTO alias_moves (organization, repository, alias, from_number, to_number, at, by_whom, forced,
                     from_canary_number, from_canary_percent, to_canary_number, to_canary_percent, reason)
                 VALUES ($1, $2, $3, $4, $5, $6::TEXT::TIMESTAMPTZ, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(organization)
            .bind(repository)
            .bind(&change.alias)
            .bind(change.from.map(|n| n as i64))
            .bind(change.to.map(|n| n as i64))
            .bind(&change.at)
            .bind(&change.by)
            .bind(change.forced)
            .bind(change.from_canary.map(|c| c.number as i64))
            .bind(change.from_canary.map(|c| i16::from(c.percent)))
            .bind(change.to_canary.map(|c| c.number as i64))
            .bind(change.to_canary.map(|c| i16::from(c.percent)))
            .bind(&change.reason)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(imported.len())
    }
}
