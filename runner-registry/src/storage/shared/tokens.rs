//! Tokens in PostgreSQL, stored hashed.

use async_trait::async_trait;
use runner_core::Result;
use runner_core::{validate_name, Error};
use sqlx::postgres::PgPool;
use sqlx::Row;

use super::store::{db, SharedStore};
use crate::storage::Access;
use crate::tokens::{Right, Token};

#[async_trait]
impl Access for SharedStore {
    async fn find_token(&self, presented: &str) -> Result<Option<Token>> {
        let row = sqlx::query("SELECT id, organization, access, sha256 FROM tokens WHERE sha256 = $1")
            .bind(crate::tokens::token_hash(presented))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.as_ref().map(token))
    }

    /// Stores a new token (hashed) and returns it.
    async fn create_token(&self, organization: &str, right: Right) -> Result<String> {
        validate_name("organization", organization)?;
        let (secret, token) = crate::tokens::new_secret(organization, right);
        match insert_token(&self.pool, &token).await? {
            0 => Err(Error::msg("a new token collided with a stored one; create it again")),
            _ => Ok(secret),
        }
    }
}

/// Stores a token unless one with its id or hash is stored; returns the rows added.
pub(super) async fn insert_token(pool: &PgPool, token: &Token) -> Result<u64> {
    let added = sqlx::query(
        "WITH org AS (INSERT INTO organizations (name) VALUES ($2) ON CONFLICT DO NOTHING)
         INSERT INTO tokens (id, organization, access, sha256) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&token.id)
    .bind(&token.organization)
    .bind(token.right.access())
    .bind(&token.sha256)
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(added.rows_affected())
}

/// A token from a row of `SELECT id, organization, access, sha256 FROM tokens`.
pub(super) fn token(row: &sqlx::postgres::PgRow) -> Token {
    Token { id: row.get(0), organization: row.get(1), right: Right::from_access(row.get(2)), sha256: row.get(3) }
}
