//! Repositories and their numbered models: numbers taken under the repository's row
//! lock, commits that check every content under its lock.

use async_trait::async_trait;
use runner_core::registry::{aliased, contents_gone, no_such_repository, number_gone};
use runner_core::{validate_name, Error, Expected, Manifest, ModelId, ModelStatus};
use runner_core::{ModelSummary, Result};
use sqlx::Row;

use super::store::{content_lock, db, number, SharedStore};
use crate::storage::Models;

#[async_trait]
impl Models for SharedStore {
    /// The repositories of an organization, sorted.
    async fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        validate_name("organization", organization)?;
        sqlx::query_scalar("SELECT name FROM repositories WHERE organization = $1 ORDER BY name")
            .bind(organization)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// The organizations (each has a repository, a token or content), sorted.
    async fn organizations(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM organizations ORDER BY name").fetch_all(&self.pool).await.map_err(db)
    }

    /// The numbers taken in a repository (ready and uploading), ascending.
    async fn model_numbers(&self, organization: &str, repository: &str) -> Result<Vec<u64>> {
        let rows = self
            .repository_rows(
                organization,
                repository,
                "SELECT m.number FROM repositories r
                 LEFT JOIN models m ON m.organization = r.organization AND m.repository = r.name
                 WHERE r.organization = $1 AND r.name = $2 ORDER BY m.number",
            )
            .await?;
        Ok(rows.iter().filter_map(|row| row.get::<Option<i64>, _>(0)).map(|n| n as u64).collect())
    }

    /// The models of a repository, uploading ones too, by number.
    async fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>> {
        let rows = self
            .repository_rows(
                organization,
                repository,
                "SELECT m.number, m.manifest FROM repositories r
                 LEFT JOIN models m ON m.organization = r.organization AND m.repository = r.name
                 WHERE r.organization = $1 AND r.name = $2 ORDER BY m.number",
            )
            .await?;
        let mut models = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(number) = row.get::<Option<i64>, _>(0) else { continue };
            let id = ModelId::new(organization, repository, number as u64)?;
            let manifest = row.get::<Option<String>, _>(1);
            models.push(summary(id, manifest)?);
        }
        Ok(models)
    }

    /// A model's status and manifest, or `None` when the number does not exist.
    async fn model(&self, id: &ModelId) -> Result<Option<ModelSummary>> {
        let manifest: Option<Option<String>> = sqlx::query_scalar(
            "SELECT manifest FROM models WHERE organization = $1 AND repository = $2 AND number = $3",
        )
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        manifest.map(|manifest| summary(id.clone(), manifest)).transpose()
    }

    /// Takes the next number of a repository (creating it when needed): max + 1 while
    /// holding the repository's row lock, so concurrent callers on any replica queue up.
    async fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        loop {
            let mut tx = self.pool.begin().await.map_err(db)?;
            ensure_repository(&mut *tx, organization, repository).await?;
            let locked = sqlx::query("SELECT 1 FROM repositories WHERE organization = $1 AND name = $2 FOR UPDATE")
                .bind(organization)
                .bind(repository)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if locked.is_none() {
                // Deleted between the two statements: take it again.
                continue;
            }
            let next: i64 = sqlx::query_scalar(
                "INSERT INTO models (organization, repository, number, state)
                 SELECT $1, $2, COALESCE(MAX(number), 0) + 1, 'uploading' FROM models
                 WHERE organization = $1 AND repository = $2
                 RETURNING number",
            )
            .bind(organization)
            .bind(repository)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return ModelId::new(organization, repository, next as u64);
        }
    }

    /// Gives back an uploading number; a ready model (or one a commit in flight makes
    /// ready: the delete waits for its row lock) is left alone.
    async fn discard(&self, id: &ModelId) -> Result<()> {
        let sql =
            "DELETE FROM models WHERE organization = $1 AND repository = $2 AND number = $3 AND state = 'uploading'";
        on_model(&self.pool, sql, id).await.map(|_| ())
    }

    /// Touches an uploading number, so that garbage collection neither gives it back nor
    /// collects content its organization sent since it was taken; a ready model is left
    /// as it is, and a number that does not exist is [`Error::Gone`].
    async fn keep_alive(&self, id: &ModelId) -> Result<()> {
        let state: Option<String> = sqlx::query_scalar(
            "WITH touched AS (UPDATE models SET touched_at = now()
                 WHERE organization = $1 AND repository = $2 AND number = $3 AND state = 'uploading' RETURNING state)
             SELECT state FROM touched
             UNION ALL SELECT state FROM models WHERE organization = $1 AND repository = $2 AND number = $3 AND state = 'ready'",
        )
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match state {
            Some(_) => Ok(()),
            None => Err(number_gone(id)),
        }
    }

    /// Deletes a model with its files' rows; their contents stay while others name them.
    /// A model an alias points at is refused (the aliases' foreign key decides, so an
    /// alias moved onto it meanwhile cannot slip through).
    async fn delete_model(&self, id: &ModelId) -> Result<()> {
        let sql = "DELETE FROM models WHERE organization = $1 AND repository = $2 AND number = $3";
        let deleted =
            sqlx::query(sql).bind(&id.organization).bind(&id.repository).bind(number(id)).execute(&self.pool).await;
        match deleted {
            Ok(done) if done.rows_affected() == 0 => {
                Err(Error::NotFound { what: "model", message: format!("{id} does not exist in {}", self.location) })
            }
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23503") => {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM aliases WHERE organization = $1 AND repository = $2
                     AND (number = $3 OR canary_number = $3) ORDER BY name",
                )
                .bind(&id.organization)
                .bind(&id.repository)
                .bind(number(id))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                Err(aliased(id, &names))
            }
            Err(e) => Err(db(e)),
        }
    }

    /// Deletes a repository and every model in it, in one transaction.
    async fn delete_repository(&self, organization: &str, repository: &str) -> Result<()> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let deleted = sqlx::query("DELETE FROM repositories WHERE organization = $1 AND name = $2")
            .bind(organization)
            .bind(repository)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        match deleted.rows_affected() {
            0 => Err(no_such_repository(organization, repository, &self.location)),
            _ => Ok(()),
        }
    }

    /// Makes a model ready, in one transaction: its row locked, the precondition checked
    /// ([`Error::Conflict`] when another registration got there first), every file's
    /// content present, of the right size and readable by the organization (and locked
    /// against garbage collection until the commit), then the files and the manifest.
    async fn commit(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()> {
        manifest.validate()?;
        let id = &manifest.model;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let current: Option<Option<String>> = sqlx::query_scalar(
            "SELECT manifest_sha256 FROM models WHERE organization = $1 AND repository = $2 AND number = $3
             FOR UPDATE",
        )
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(current) = current else { return Err(number_gone(id)) };
        if let Some(expected) = expected {
            let current = match current {
                None => Expected::Nothing,
                Some(sha256) => Expected::Manifest(sha256),
            };
            if &current != expected {
                return Err(Error::Conflict {
                    message: format!(
                        "{id} was registered by someone else during this registration; nothing was changed: register again"
                    ),
                });
            }
        }
        let shas: Vec<String> = manifest.files.iter().map(|f| f.sha256.clone()).collect();
        // Every content's lock, shared, in one order (commits share them; a collector
        // takes one at a time, exclusively), held until this transaction ends. The read
        // below is a statement of its own, after the locks: its snapshot sees the mark of
        // any collector that went first, and no collector can mark these until this
        // commit's rows are visible to it (see the module's notes).
        let mut keys: Vec<i64> = shas.iter().map(|sha256| content_lock(sha256)).collect();
        keys.sort_unstable();
        keys.dedup();
        sqlx::query("SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::int8[]) AS k")
            .bind(&keys)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let stored: std::collections::HashMap<String, i64> = sqlx::query(
            "SELECT b.sha256, b.size FROM blobs b
             JOIN grants g ON g.sha256 = b.sha256 AND g.organization = $1
             WHERE b.sha256 = ANY($2) AND NOT b.deleting",
        )
        .bind(&id.organization)
        .bind(&shas)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
        let mut missing = Vec::new();
        for file in &manifest.files {
            match stored.get(&file.sha256) {
                Some(&size) if size as u64 == file.size => {}
                Some(&size) => {
                    return Err(Error::invalid_input(format!(
                        "the manifest says `{}` has {} bytes, but its content (sha256 {}) has {size}",
                        file.path, file.size, file.sha256
                    )))
                }
                None => missing.push((file.path.as_str(), file.sha256.as_str())),
            }
        }
        if !missing.is_empty() {
            return Err(contents_gone(id, &missing));
        }
        let paths: Vec<String> = manifest.files.iter().map(|f| f.path.clone()).collect();
        let sql = "DELETE FROM model_files WHERE organization = $1 AND repository = $2 AND number = $3";
        on_model(&mut *tx, sql, id).await?;
        sqlx::query(
            "INSERT INTO model_files (organization, repository, number, path, sha256)
             SELECT $1, $2, $3, path, sha256 FROM UNNEST($4::TEXT[], $5::TEXT[]) AS f(path, sha256)",
        )
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .bind(&paths)
        .bind(&shas)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let json = String::from_utf8(manifest.to_json()).expect("manifests are JSON text");
        sqlx::query(
            "UPDATE models SET state = 'ready', manifest = $4, manifest_sha256 = $5, touched_at = now()
             WHERE organization = $1 AND repository = $2 AND number = $3",
        )
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .bind(&json)
        .bind(manifest.sha256())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

impl SharedStore {
    /// The rows of `query`: `columns` of a repository LEFT JOINed to its models (`m`), by
    /// number; one row with NULLs for a repository without models, none for one that does
    /// not exist (then [`Error::NotFound`]).
    pub(super) async fn repository_rows(
        &self,
        organization: &str,
        repository: &str,
        query: &'static str,
    ) -> Result<Vec<sqlx::postgres::PgRow>> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let rows = sqlx::query(query).bind(organization).bind(repository).fetch_all(&self.pool).await.map_err(db)?;
        if rows.is_empty() {
            return Err(no_such_repository(organization, repository, &self.location));
        }
        Ok(rows)
    }
}

/// Runs `sql`, whose `$1`, `$2` and `$3` are a model's organization, repository and
/// number; returns the rows it changed.
pub(super) async fn on_model<'e>(executor: impl sqlx::PgExecutor<'e>, sql: &'static str, id: &ModelId) -> Result<u64> {
    let done = sqlx::query(sql)
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .execute(executor)
        .await
        .map_err(db)?;
    Ok(done.rows_affected())
}

/// Creates repository `organization/repository` unless it exists.
pub(super) async fn ensure_repository<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    organization: &str,
    repository: &str,
) -> Result<()> {
    sqlx::query(
        "WITH org AS (INSERT INTO organizations (name) VALUES ($1) ON CONFLICT DO NOTHING)
         INSERT INTO repositories (organization, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(organization)
    .bind(repository)
    .execute(executor)
    .await
    .map_err(db)?;
    Ok(())
}

fn summary(id: ModelId, manifest: Option<String>) -> Result<ModelSummary> {
    Ok(match manifest {
        None => ModelSummary { id, status: ModelStatus::Uploading, manifest: None },
        Some(json) => {
            let manifest = Manifest::from_json(&id, json.as_bytes())?;
            ModelSummary { id, status: ModelStatus::Ready, manifest: Some(manifest) }
        }
    })
}
