//! Aliases in PostgreSQL: each move in one transaction holding the repository's row
//! lock, recorded in `alias_moves`.

use async_trait::async_trait;
use runner_core::registry::{
    check_expect, check_move, no_such_alias, no_such_repository, not_ready, Alias, AliasMove, AliasOptions, Canary,
    Expect,
};
use runner_core::Result;
use runner_core::{validate_name, Manifest, ModelId};
use sqlx::{Postgres, Row, Transaction};

use super::store::{db, number, SharedStore};
use crate::storage::Aliases;

/// The columns [`alias_move`] reads.
macro_rules! move_columns {
    () => {
        "alias, from_number, to_number, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), by_whom, forced,
         from_canary_number, from_canary_percent, to_canary_number, to_canary_percent, reason"
    };
}

#[async_trait]
impl Aliases for SharedStore {
    /// The aliases of a repository, by name.
    async fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>> {
        self.repository_exists(&self.pool, organization, repository, false).await?;
        let rows = sqlx::query(
            "SELECT name, number, canary_number, canary_percent FROM aliases
             WHERE organization = $1 AND repository = $2 ORDER BY name",
        )
        .bind(organization)
        .bind(repository)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|row| Alias { name: row.get(0), number: row.get::<i64, _>(1) as u64, canary: canary(&row, 2) })
            .collect())
    }

    /// Moves (or creates) an alias under `options`, in one transaction holding the
    /// repository's row lock, so that alias moves of one repository queue up on every
    /// replica; records the move.
    async fn set_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        target: u64,
        options: &AliasOptions,
        by: &str,
    ) -> Result<AliasMove> {
        runner_core::validate_alias(alias)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        self.repository_exists(&mut *tx, organization, repository, true).await?;
        let current = self.alias_entry(&mut tx, organization, repository, alias).await?;
        let manifest = async |tx: &mut Transaction<'static, Postgres>, n: u64| {
            ready_manifest(tx, &ModelId::new(organization, repository, n)?, &self.location).await
        };
        let target_manifest = manifest(&mut tx, target).await?;
        let canary_manifest = match options.canary {
            Some(canary) => Some(manifest(&mut tx, canary.number).await?),
            None => None,
        };
        let current_manifest = match &current {
            Some(entry) => Some(manifest(&mut tx, entry.number).await?),
            None => None,
        };
        let current_number = current.as_ref().map(|a| a.number);
        check_move(
            alias,
            current_number.zip(current_manifest.as_ref()),
            &target_manifest,
            canary_manifest.as_ref(),
            options,
        )?;
        sqlx::query(
            "INSERT INTO aliases (organization, repository, name, number, canary_number, canary_percent)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (organization, repository, name) DO UPDATE
             SET number = EXCLUDED.number, canary_number = EXCLUDED.canary_number,
                 canary_percent = EXCLUDED.canary_percent",
        )
        .bind(organization)
        .bind(repository)
        .bind(alias)
        .bind(target as i64)
        .bind(options.canary.map(|c| c.number as i64))
        .bind(options.canary.map(|c| i16::from(c.percent)))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let change = Move {
            alias,
            from: current.map(|a| (a.number, a.canary)),
            to: Some((target, options.canary)),
            by,
            forced: options.force,
            reason: options.reason.as_deref(),
        };
        let change = record_move(&mut tx, organization, repository, change).await?;
        tx.commit().await.map_err(db)?;
        Ok(change)
    }

    /// Deletes an alias when `expect` holds; records it.
    async fn delete_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        expect: Expect,
        by: &str,
    ) -> Result<AliasMove> {
        runner_core::validate_alias(alias)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        self.repository_exists(&mut *tx, organization, repository, true).await?;
        let Some(current) = self.alias_entry(&mut tx, organization, repository, alias).await? else {
            return Err(no_such_alias(repository, alias));
        };
        check_expect(repository, alias, Some(current.number), expect)?;
        sqlx::query("DELETE FROM aliases WHERE organization = $1 AND repository = $2 AND name = $3")
            .bind(organization)
            .bind(repository)
            .bind(alias)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let from = Some((current.number, current.canary));
        let change = Move { alias, from, to: None, by, forced: false, reason: None };
        let change = record_move(&mut tx, organization, repository, change).await?;
        tx.commit().await.map_err(db)?;
        Ok(change)
    }

    /// The alias moves of a repository (of one alias), oldest first.
    async fn alias_history(&self, organization: &str, repository: &str, alias: Option<&str>) -> Result<Vec<AliasMove>> {
        self.repository_exists(&self.pool, organization, repository, false).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            move_columns!(),
            " FROM alias_moves
             WHERE organization = $1 AND repository = $2 AND ($3::TEXT IS NULL OR alias = $3) ORDER BY id"
        ))
        .bind(organization)
        .bind(repository)
        .bind(alias)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(alias_move).collect())
    }
}

impl SharedStore {
    /// Where an alias points now, with its split.
    pub(super) async fn alias_entry(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        organization: &str,
        repository: &str,
        alias: &str,
    ) -> Result<Option<Alias>> {
        let row = sqlx::query(
            "SELECT number, canary_number, canary_percent FROM aliases
             WHERE organization = $1 AND repository = $2 AND name = $3",
        )
        .bind(organization)
        .bind(repository)
        .bind(alias)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        Ok(row.map(|row| Alias {
            name: alias.to_string(),
            number: row.get::<i64, _>(0) as u64,
            canary: canary(&row, 1),
        }))
    }

    /// [`Error::NotFound`] unless the repository exists; with `lock`, its row is locked
    /// (against other alias moves, not against new models' foreign keys) until the
    /// transaction ends.
    pub(super) async fn repository_exists<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        organization: &str,
        repository: &str,
        lock: bool,
    ) -> Result<()> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        let sql = match lock {
            true => "SELECT 1 FROM repositories WHERE organization = $1 AND name = $2 FOR NO KEY UPDATE",
            false => "SELECT 1 FROM repositories WHERE organization = $1 AND name = $2",
        };
        let found = sqlx::query(sql).bind(organization).bind(repository).fetch_optional(executor).await.map_err(db)?;
        match found {
            Some(_) => Ok(()),
            None => Err(no_such_repository(organization, repository, &self.location)),
        }
    }
}

/// The manifest of a ready model, its row share-locked until the transaction ends.
pub(super) async fn ready_manifest(
    tx: &mut Transaction<'static, Postgres>,
    id: &ModelId,
    location: &str,
) -> Result<Manifest> {
    let json: Option<Option<String>> = sqlx::query_scalar(
        "SELECT manifest FROM models WHERE organization = $1 AND repository = $2 AND number = $3 FOR SHARE",
    )
    .bind(&id.organization)
    .bind(&id.repository)
    .bind(number(id))
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    match json.flatten() {
        Some(json) => Manifest::from_json(id, json.as_bytes()),
        None => Err(not_ready(id, location)),
    }
}

/// The split in columns `at` (number) and `at + 1` (percent) of `row`, if any.
fn canary(row: &sqlx::postgres::PgRow, at: usize) -> Option<Canary> {
    let number = row.get::<Option<i64>, _>(at)?;
    let percent = row.get::<Option<i16>, _>(at + 1)?;
    Some(Canary { number: number as u64, percent: percent.clamp(0, 100) as u8 })
}

pub(super) fn alias_move(row: &sqlx::postgres::PgRow) -> AliasMove {
    AliasMove {
        alias: row.get(0),
        from: row.get::<Option<i64>, _>(1).map(|n| n as u64),
        to: row.get::<Option<i64>, _>(2).map(|n| n as u64),
        at: row.get(3),
        by: row.get(4),
        forced: row.get(5),
        from_canary: canary(row, 6),
        to_canary: canary(row, 8),
        reason: row.get(10),
    }
}

/// One move of an alias, as [`record_move`] writes it: where it pointed (with its split)
/// and where it points now (`None`: created, deleted).
pub(super) struct Move<'a> {
    pub(super) alias: &'a str,
    pub(super) from: Option<(u64, Option<Canary>)>,
    pub(super) to: Option<(u64, Option<Canary>)>,
    pub(super) by: &'a str,
    pub(super) forced: bool,
    pub(super) reason: Option<&'a str>,
}

/// Records one move of an alias in its history.
pub(super) async fn record_move(
    tx: &mut Transaction<'static, Postgres>,
    organization: &str,
    repository: &str,
    change: Move<'_>,
) -> Result<AliasMove> {
    let number = |side: Option<(u64, Option<Canary>)>| side.map(|(n, _)| n as i64);
    let split = |side: Option<(u64, Option<Canary>)>| side.and_then(|(_, c)| c);
    let (from_canary, to_canary) = (split(change.from), split(change.to));
    let row = sqlx::query(concat!(
        "INSERT INTO alias_moves (organization, repository, alias, from_number, to_number, by_whom, forced,
             from_canary_number, from_canary_percent, to_canary_number, to_canary_percent, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING ",
        move_columns!()
    ))
    .bind(organization)
    .bind(repository)
    .bind(change.alias)
    .bind(number(change.from))
    .bind(number(change.to))
    .bind(change.by)
    .bind(change.forced)
    .bind(from_canary.map(|c| c.number as i64))
    .bind(from_canary.map(|c| i16::from(c.percent)))
    .bind(to_canary.map(|c| c.number as i64))
    .bind(to_canary.map(|c| i16::from(c.percent)))
    .bind(change.reason)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    Ok(alias_move(&row))
}
