//! Tokens and the audit log in PostgreSQL. Tokens are stored hashed; every lookup reads
//! the row, so a revocation through any replica holds on every replica from the next
//! request.

use async_trait::async_trait;
use runner_core::{Error, Result};
use sqlx::postgres::PgPool;
use sqlx::Row;
use time::OffsetDateTime;

use super::store::{db, SharedStore};
use crate::audit::{Action, AuditEntry, AuditQuery, Who};
use crate::storage::{Access, Audit};
use crate::tokens::{no_such_token, NewToken, Right, Token, TokenState, LAST_USED_PRECISION};

/// The columns [`token`] reads.
macro_rules! token_columns {
    () => {
        "id, organization, access, sha256, name, repositories, EXTRACT(EPOCH FROM created_at)::float8,
         EXTRACT(EPOCH FROM expires_at)::float8, EXTRACT(EPOCH FROM revoked_at)::float8,
         EXTRACT(EPOCH FROM last_used_at)::float8"
    };
}

#[async_trait]
impl Access for SharedStore {
    async fn find_token(&self, presented: &str) -> Result<Option<Token>> {
        let row = sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens WHERE sha256 = $1"))
            .bind(crate::tokens::token_hash(presented))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(token) = row.as_ref().map(token) else { return Ok(None) };
        let now = OffsetDateTime::now_utc();
        let stale = token.last_used_at.is_none_or(|at| now - at >= LAST_USED_PRECISION);
        if token.state(now) == TokenState::Valid && stale {
            // At most once a minute per token: a write per request would cost every
            // request a round trip more.
            sqlx::query("UPDATE tokens SET last_used_at = now() WHERE id = $1")
                .bind(&token.id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(Some(token))
    }

    async fn create_token(&self, new: &NewToken) -> Result<(String, Token)> {
        let (secret, token) = new.mint()?;
        match insert_token(&self.pool, &token).await? {
            0 => Err(Error::msg("a new token collided with a stored one; create it again")),
            _ => Ok((secret, token)),
        }
    }

    async fn list_tokens(&self, organization: Option<&str>) -> Result<Vec<Token>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE $1::TEXT IS NULL OR organization = $1 ORDER BY organization, id"
        ))
        .bind(organization)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.iter().map(token).collect())
    }

    async fn revoke_token(&self, organization: Option<&str>, id: &str) -> Result<Token> {
        let row = sqlx::query(concat!(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, now())
             WHERE id = $1 AND ($2::TEXT IS NULL OR organization = $2) RETURNING ",
            token_columns!()
        ))
        .bind(id)
        .bind(organization)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(token).ok_or_else(|| no_such_token(id))
    }
}

#[async_trait]
impl Audit for SharedStore {
    async fn record(&self, entry: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (at, organization, token_id, token_name, action, repository, target, address)
             VALUES (to_timestamp($1), $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seconds(entry.at))
        .bind(&entry.organization)
        .bind(&entry.who.token_id)
        .bind(&entry.who.token_name)
        .bind(entry.action.as_str())
        .bind(&entry.repository)
        .bind(&entry.target)
        .bind(&entry.address)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let limit = query.limit.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT * FROM (
                 SELECT id, EXTRACT(EPOCH FROM at)::float8, organization, token_id, token_name, action, repository,
                        target, address FROM audit
                 WHERE ($1::TEXT IS NULL OR organization = $1) AND ($2::TEXT IS NULL OR repository = $2)
                   AND ($3::float8 IS NULL OR at >= to_timestamp($3))
                 ORDER BY id DESC LIMIT $4) newest
             ORDER BY id",
        )
        .bind(&query.organization)
        .bind(&query.repository)
        .bind(query.since.map(seconds))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let action: String = row.get(5);
                Ok(AuditEntry {
                    at: time_of(row.get(1)).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    organization: row.get(2),
                    who: Who { token_id: row.get(3), token_name: row.get(4) },
                    action: Action::parse(&action)
                        .ok_or_else(|| Error::msg(format!("the audit log holds an unknown action `{action}`")))?,
                    repository: row.get(6),
                    target: row.get(7),
                    address: row.get(8),
                })
            })
            .collect()
    }
}

/// Seconds since the epoch, as PostgreSQL's `to_timestamp` takes them (microseconds kept).
fn seconds(at: OffsetDateTime) -> f64 {
    at.unix_timestamp_nanos() as f64 / 1e9
}

/// Back from [`seconds`].
fn time_of(seconds: Option<f64>) -> Option<OffsetDateTime> {
    seconds.and_then(|s| OffsetDateTime::from_unix_timestamp_nanos((s * 1e6).round() as i128 * 1000).ok())
}

/// Stores a token unless one with its id or hash is stored; returns the rows added.
pub(super) async fn insert_token(pool: &PgPool, token: &Token) -> Result<u64> {
    let added = sqlx::query(
        "WITH org AS (INSERT INTO organizations (name) VALUES ($2) ON CONFLICT DO NOTHING)
         INSERT INTO tokens (id, organization, access, sha256, name, repositories, created_at, expires_at, revoked_at,
                             last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, COALESCE(to_timestamp($7), now()), to_timestamp($8), to_timestamp($9),
                 to_timestamp($10))
         ON CONFLICT DO NOTHING",
    )
    .bind(&token.id)
    .bind(&token.organization)
    .bind(token.right.access())
    .bind(&token.sha256)
    .bind(&token.name)
    .bind(&token.repositories)
    .bind(token.created_at.map(seconds))
    .bind(token.expires_at.map(seconds))
    .bind(token.revoked_at.map(seconds))
    .bind(token.last_used_at.map(seconds))
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(added.rows_affected())
}

/// A token from a row of `SELECT token_columns!() FROM tokens`.
fn token(row: &sqlx::postgres::PgRow) -> Token {
    Token {
        id: row.get(0),
        organization: row.get(1),
        right: Right::from_access(row.get(2)),
        sha256: row.get(3),
        name: row.get(4),
        repositories: row.get(5),
        created_at: time_of(row.get(6)),
        expires_at: time_of(row.get(7)),
        revoked_at: time_of(row.get(8)),
        last_used_at: time_of(row.get(9)),
    }
}
