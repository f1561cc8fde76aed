//! The shared backend: metadata in PostgreSQL, file contents in an S3-compatible object
//! store. Any number of replicas run against one database and one bucket; they keep no
//! state of their own.
//!
//! Correctness comes from the database alone (the object store is only asked to store
//! and return bytes; Garage, for one, ignores conditional writes):
//! - a number is taken under a row lock of its repository (max + 1 while holding it), so
//!   concurrent registrations on any replicas get distinct, consecutive numbers;
//! - a commit locks its model's row, checks its precondition, and makes the model ready
//!   with its files in one transaction, only once every file it names is a row of
//!   `blobs` that is not marked for deletion;
//! - garbage collection cannot delete what a model names, by the order of its steps.
//!
//! # Why the collector loses nothing
//!
//! What is shared: the rows `blobs (sha256, size, touched_at, deleting)`, `grants`,
//! `models`, `model_files`; the objects `blobs/sha256/AB/SHA256` and `uploads/*`; and
//! one advisory lock per content, `L(c)` ([`content_lock`]), held to the end of a
//! transaction. The steps that touch content `c`:
//!
//! - **upload** `U(c)`: streams the bytes to `c`'s key (a multipart upload, invisible
//!   until completed) or to `uploads/`; then, in one transaction holding `L(c)`
//!   exclusively: completes (or copies) the object, writes the row (`deleting = false`,
//!   touched now) and the grant.
//! - **reuse** `R(c)` (a `HEAD` or a `PUT` of stored content): one `UPDATE` that touches
//!   the row where `NOT deleting`, answering whether it is stored.
//! - **commit** `C(m)`: one transaction: `m`'s row locked; `L(c)` shared for every `c`
//!   it names (sorted, so two commits never wait on each other); then, in a statement
//!   of its own, the rows of those contents that are granted and `NOT deleting`; then
//!   `model_files` and the manifest. A content missing there refuses the whole commit
//!   ([`Error::Gone`], nothing written).
//! - **mark** `M(c)` (gc, first step): one transaction holding `L(c)` exclusively: an
//!   `UPDATE ... SET deleting = true` where `c` is unmarked, untouched for the grace
//!   period, named by no `model_files` row, and not sent since a live reservation of an
//!   organization that may read it began (one still `uploading` and touched within the
//!   grace period: `register` keeps its number touched every second while it works, so
//!   what it sent stays while it works, however long); committed before anything else.
//! - **delete** `D(c)` (gc, second step, for every marked row, including those a killed
//!   collector left): one transaction holding `L(c)` exclusively: re-reads the mark
//!   (gone: skip), deletes the object, then the row (grants and samples go with it).
//!
//! The invariant: an unmarked row has its complete object, and every `model_files` row
//! names an unmarked row. Each interleaving keeps it:
//!
//! - `C` and `M` of one content exclude each other through `L(c)`. If `C` holds it
//!   first, `M` waits until `C` has committed (or rolled back), and `M`'s `UPDATE`, a
//!   statement begun after that, sees `C`'s `model_files`: no mark. If `M` holds it
//!   first, `C` waits until the mark is committed, and its read, a statement begun after
//!   that, sees it: refused. This is the step the old collector lacked: it checked under
//!   a row lock with a snapshot taken before the commit it waited for, and deleted the
//!   object before anything noticed.
//! - `D` deletes an object only while its row is marked and committed so, and deletes
//!   the row after the object: a collector killed in between leaves a marked row with no
//!   object, which nothing reads (commits, reuse, downloads and samples all skip marked
//!   rows), and the next run finishes it.
//! - `U` of marked content (a client sending it again): `U` holds `L(c)` exclusively, so
//!   it runs wholly before or after a `D`. Before: it rewrites the object and clears the
//!   mark, and `D` re-reads the mark and skips. After: the row is gone, and `U` writes
//!   object and row afresh. A multipart upload in flight is not an object yet, so `D`
//!   cannot delete it; completing it is the part of `U` under the lock.
//! - `R` and `M` both update the row; PostgreSQL orders them by its row lock and checks
//!   the later one's `WHERE` again on the row the earlier one left (READ COMMITTED). `R`
//!   first: the row is touched now and no longer matches `M`. `M` first: `R` matches no
//!   unmarked row and answers "not stored", so the client sends the content (`U`).
//! - `R` long before `C` (a client told content exists, then slower than the grace
//!   period): `M` may run in between; `C` is then refused with the contents it lacks,
//!   and `register` sends them again and commits again.
//! - Model deletion, repository deletion and alias moves change only model and alias
//!   rows: a content they leave unnamed becomes a candidate for `M` like any other.
//! - Numbers: gc gives back a number still `uploading` after the grace period, unless
//!   it is its repository's highest (numbers are taken one above the highest, so one
//!   given back is never taken again), in a `DELETE ... WHERE state = 'uploading'` under
//!   the repository's row lock, which waits for a commit holding the model's row and
//!   then matches nothing. A commit after it finds no row: [`Error::Gone`] with the
//!   number, and `register` takes a new one.
//! - Objects under `uploads/` older than the grace period are deleted: a replica copies
//!   its own to the content's key within the transaction of its `U`, so only one a
//!   killed replica left is that old (with a grace of 0, an upload may fail, and be
//!   retried: nothing is half-visible).
//!
//! Errors reaching the database or the store are [`ErrorKind::Overloaded`] (HTTP 503,
//! which clients retry): the transaction is rolled back, so nothing is half-written.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use runner_core::registry::buffers::BufferPool;
use runner_core::registry::protocol::{parse_range, ByteRange, Stored};
use runner_core::registry::sample::Sampler;
use runner_core::registry::store::Collected;
use runner_core::registry::{
    aliased, check_expect, check_move, contents_gone, no_such_alias, no_such_repository, not_ready, number_gone, Alias,
    AliasMove, AliasOptions, Expect,
};
use runner_core::{validate_name, validate_sha256, Error, ErrorKind, Expected, Manifest, ModelId, ModelStatus};
use runner_core::{ModelSummary, Result};
use sha2::{Digest, Sha256};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, SqlSafeStr, Transaction};

use crate::tokens::{Right, Token};

/// The columns [`alias_move`] reads.
macro_rules! move_columns {
    () => {
        "alias, from_number, to_number, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), by_whom, forced"
    };
}

/// Where model row `m` is a number garbage collection gives back: still uploading,
/// untouched for the grace period (seconds in parameter `$grace`), and not its
/// repository's highest (numbers are taken one above the highest, so one given back is
/// never taken again). Read by `gc` to choose, and again in the `DELETE` that gives back.
macro_rules! abandoned {
    ($grace:literal) => {
        concat!(
            "m.state = 'uploading' AND m.touched_at < now() - make_interval(secs => ",
            $grace,
            ") AND m.number < (SELECT max(n.number) FROM models n
                              WHERE n.organization = m.organization AND n.repository = m.repository)"
        )
    };
}

/// Where content row `b` is one garbage collection may delete: unmarked, untouched for
/// the grace period (seconds in parameter `$grace`), named by no model, and not sent
/// since a live reservation of an organization that may read it began (one still
/// uploading and touched within the grace period). Read by `gc` to choose, and again in
/// the `UPDATE` that marks.
macro_rules! collectable {
    ($grace:literal) => {
        concat!(
            "NOT b.deleting AND b.touched_at < now() - make_interval(secs => ",
            $grace,
            ") AND NOT EXISTS (SELECT 1 FROM model_files f WHERE f.sha256 = b.sha256)
              AND NOT EXISTS (SELECT 1 FROM models m JOIN grants g ON g.organization = m.organization
                              WHERE g.sha256 = b.sha256 AND m.state = 'uploading' AND b.touched_at >= m.created_at
                                AND m.touched_at >= now() - make_interval(secs => ",
            $grace,
            "))"
        )
    };
}

/// An object store that also takes multipart uploads part by part (S3, and the
/// in-memory store of tests).
pub trait Objects: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Objects for T {}

/// The S3 bucket of `url` (`s3://BUCKET`), configured in the AWS convention: the
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and `AWS_ENDPOINT_URL`
/// environment variables, which `endpoint` and `region` override. An `http://`
/// endpoint (a store on the local network, such as Garage or MinIO) is allowed; buckets
/// are addressed by path, which every S3-compatible store understands.
///
/// `timeout` bounds each request to the store (object_store's default is 30 s): a store
/// that hangs (Garage with a full disk does) is answered 503 after it, and retried by
/// clients.
pub fn s3_store(
    url: &str,
    endpoint: Option<&str>,
    region: Option<&str>,
    timeout: Option<Duration>,
) -> Result<Arc<object_store::aws::AmazonS3>> {
    let Some(bucket) = url.strip_prefix("s3://").map(|b| b.trim_end_matches('/')) else {
        return Err(Error::invalid_input(format!("`{url}` is not an S3 bucket URL; write s3://BUCKET")));
    };
    if bucket.is_empty() || bucket.contains('/') {
        return Err(Error::invalid_input(format!("`{url}` names no bucket (or a folder in one); write s3://BUCKET")));
    }
    // A few quick retries: past them the client is answered 503 and retries itself,
    // rather than wait on a store that is down.
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
        backoff: object_store::BackoffConfig::default(),
    };
    // Payloads are not hashed again for the request signature: the registry computes and
    // checks every content's sha256 itself, and that second hash of every byte cost CPU
    // the upload needs.
    let mut builder = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry)
        .with_unsigned_payload(true);
    // Client options first: `with_client_options` replaces them whole, and the endpoint
    // below adds `allow_http` to them.
    if let Some(timeout) = timeout {
        builder = builder.with_client_options(object_store::ClientOptions::new().with_timeout(timeout));
    }
    let endpoint = endpoint.map(str::to_string).or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(endpoint) = endpoint {
        builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
    }
    if let Some(region) = region {
        builder = builder.with_region(region);
    }
    let s3 = builder.build().map_err(|e| {
        Error::invalid_input(format!(
            "cannot use {url}: {e} (set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for a store other than AWS, AWS_ENDPOINT_URL or --s3-endpoint)"
        ))
    })?;
    Ok(Arc::new(s3))
}

/// Bytes per part of a multipart upload: S3's minimum is 5 MiB.
const PART: usize = 8 << 20;
/// Parts of one upload sent at once; with one being filled, the memory an upload holds.
const PARTS_IN_FLIGHT: usize = 3;

/// The schema, embedded; applied at start under sqlx's migration lock, so replicas may
/// start together.
fn migrator() -> Migrator {
    let migration = |version, name: &str, sql: &'static str| {
        Migration::new(version, name.to_string().into(), MigrationType::Simple, sql.into_sql_str(), false)
    };
    Migrator::with_migrations(vec![
        migration(1, "registry", include_str!("../migrations/0001_registry.sql")),
        migration(2, "aliases", include_str!("../migrations/0002_aliases.sql")),
        migration(3, "organizations", include_str!("../migrations/0003_organizations.sql")),
        migration(4, "samples", include_str!("../migrations/0004_samples.sql")),
        migration(5, "deleting", include_str!("../migrations/0005_deleting.sql")),
    ])
}

/// A failure to reach the database: 503, retried by clients.
fn db(error: sqlx::Error) -> Error {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), 57P01-57P03 (the server shutting down or
        // starting), 40001/40P01 (serialization failure, deadlock: retry).
        sqlx::Error::Database(e) => e.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "40001" | "40P01")
        }),
        _ => false,
    };
    match unavailable {
        true => Error::new(
            ErrorKind::Overloaded,
            format!("the registry's database is unavailable ({error}); nothing was changed: retry shortly"),
        ),
        false => Error::msg(format!("the registry's database failed: {error}")),
    }
}

/// A failure of the object store: 503, retried by clients.
fn store(error: object_store::Error) -> Error {
    Error::new(
        ErrorKind::Overloaded,
        format!("the registry's object store is unavailable ({error}); nothing was changed: retry shortly"),
    )
}

/// Where content with this sha256 lives in the bucket.
/// Where uploads not named beforehand lie until they are hashed and copied to their
/// content's key.
const UNNAMED: &str = "uploads";

/// The largest object one S3 `CopyObject` copies (5 GiB); larger content is not taken
/// unnamed.
pub(crate) const MAX_COPY: u64 = 5 << 30;

fn blob_path(sha256: &str) -> ObjectPath {
    ObjectPath::from(format!("blobs/sha256/{}/{sha256}", &sha256[..2]))
}

/// The advisory lock of one content: completing its object and each step of deleting it
/// take it exclusively, commits naming it take it shared (see the module's notes).
fn content_lock(sha256: &str) -> i64 {
    let bytes = hex::decode(&sha256[..16]).expect("a validated sha256 is hex");
    i64::from_be_bytes(bytes.try_into().expect("eight bytes"))
}

fn number(id: &ModelId) -> i64 {
    i64::try_from(id.number).unwrap_or(i64::MAX)
}

/// The registry on PostgreSQL and an object store.
#[derive(Clone)]
pub struct SharedStore {
    pool: PgPool,
    objects: Arc<dyn Objects>,
    location: String,
    /// Downloads answered with a presigned URL valid this long, when set.
    presign: Option<(Arc<dyn Signer>, Duration)>,
    /// Part buffers of [`PART`] bytes, reused: a part's buffer comes back when the part
    /// has been sent and its bytes are dropped.
    parts: BufferPool,
    /// Small contents read from the store lately, checked against their sha256.
    small: Arc<SmallContents>,
}

/// Contents of at most this many bytes are kept in memory once read from the store.
const SMALL_CONTENT: u64 = 256 << 10;
/// Bytes of small contents a replica keeps, at most.
const SMALL_CONTENTS: u64 = 8 << 20;

/// Small contents by sha256, weighed by their size. Content never changes under its
/// sha256, so a cached one is never stale; who may read it is asked of the database on
/// every request all the same.
type SmallContents = quick_cache::sync::Cache<String, Bytes, BySize>;

#[derive(Clone)]
struct BySize;

impl quick_cache::Weighter<String, Bytes> for BySize {
    fn weight(&self, _: &String, content: &Bytes) -> u64 {
        content.len().max(1) as u64
    }
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore").field("location", &self.location).finish_non_exhaustive()
    }
}

impl SharedStore {
    /// Connects to the database at `database` (a `postgres://` URL), applies the schema
    /// when it is behind, and stores content in `objects`. `location` names the pair in
    /// messages.
    pub async fn connect(database: &str, objects: Arc<dyn Objects>, location: String) -> Result<SharedStore> {
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(Duration::from_secs(5))
            .connect(database)
            .await
            .map_err(|e| Error::msg(format!("cannot connect to the database: {e}")))?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| Error::msg(format!("cannot bring the database's schema up to date: {e}")))?;
        let small = Arc::new(SmallContents::with_weighter(256, SMALL_CONTENTS, BySize));
        Ok(SharedStore { pool, objects, location, presign: None, parts: BufferPool::new(PART, IDLE_PARTS), small })
    }

    /// Answers downloads with a `307` to a URL of the object signed by `signer` and valid
    /// for `ttl`, so that clients fetch straight from the store and the replica moves no
    /// bytes. The organization's right to the content is checked first, as always; HTTP
    /// clients drop the registry token when they follow the redirect to another host.
    pub fn with_presigned_downloads(mut self, signer: Arc<dyn Signer>, ttl: Duration) -> SharedStore {
        self.presign = Some((signer, ttl));
        self
    }

    /// Where this registry lives, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The repositories of an organization, sorted.
    pub async fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        validate_name("organization", organization)?;
        sqlx::query_scalar("SELECT name FROM repositories WHERE organization = $1 ORDER BY name")
            .bind(organization)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// The organizations (each has a repository, a token or content), sorted.
    pub async fn organizations(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT name FROM organizations ORDER BY name").fetch_all(&self.pool).await.map_err(db)
    }

    /// The rows of `query`: `columns` of a repository LEFT JOINed to its models (`m`), by
    /// number; one row with NULLs for a repository without models, none for one that does
    /// not exist (then [`Error::NotFound`]).
    async fn repository_rows(
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

    /// The numbers taken in a repository (ready and uploading), ascending.
    pub async fn model_numbers(&self, organization: &str, repository: &str) -> Result<Vec<u64>> {
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
    pub async fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>> {
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
    pub async fn model(&self, id: &ModelId) -> Result<Option<ModelSummary>> {
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
    pub async fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId> {
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
    pub async fn discard(&self, id: &ModelId) -> Result<()> {
        let sql =
            "DELETE FROM models WHERE organization = $1 AND repository = $2 AND number = $3 AND state = 'uploading'";
        on_model(&self.pool, sql, id).await.map(|_| ())
    }

    /// Touches an uploading number, so that garbage collection neither gives it back nor
    /// collects content its organization sent since it was taken; a ready model is left
    /// as it is, and a number that does not exist is [`Error::Gone`].
    pub async fn keep_alive(&self, id: &ModelId) -> Result<()> {
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
    pub async fn delete_model(&self, id: &ModelId) -> Result<()> {
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
                    "SELECT name FROM aliases WHERE organization = $1 AND repository = $2 AND number = $3 ORDER BY name",
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

    /// The aliases of a repository, by name.
    pub async fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>> {
        self.repository_exists(&self.pool, organization, repository, false).await?;
        let rows =
            sqlx::query("SELECT name, number FROM aliases WHERE organization = $1 AND repository = $2 ORDER BY name")
                .bind(organization)
                .bind(repository)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(rows.into_iter().map(|row| Alias { name: row.get(0), number: row.get::<i64, _>(1) as u64 }).collect())
    }

    /// Moves (or creates) an alias under `options`, in one transaction holding the
    /// repository's row lock, so that alias moves of one repository queue up on every
    /// replica; records the move.
    pub async fn set_alias(
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
        let current = self.alias_target(&mut tx, organization, repository, alias).await?;
        let target_manifest =
            ready_manifest(&mut tx, &ModelId::new(organization, repository, target)?, &self.location).await?;
        let current_manifest = match current {
            Some(n) => {
                Some(ready_manifest(&mut tx, &ModelId::new(organization, repository, n)?, &self.location).await?)
            }
            None => None,
        };
        check_move(alias, current.zip(current_manifest.as_ref()), &target_manifest, options)?;
        sqlx::query(
            "INSERT INTO aliases (organization, repository, name, number) VALUES ($1, $2, $3, $4)
             ON CONFLICT (organization, repository, name) DO UPDATE SET number = EXCLUDED.number",
        )
        .bind(organization)
        .bind(repository)
        .bind(alias)
        .bind(target as i64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let change =
            record_move(&mut tx, organization, repository, alias, current, Some(target), by, options.force).await?;
        tx.commit().await.map_err(db)?;
        Ok(change)
    }

    /// Deletes an alias when `expect` holds; records it.
    pub async fn delete_alias(
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
        let Some(current) = self.alias_target(&mut tx, organization, repository, alias).await? else {
            return Err(no_such_alias(repository, alias));
        };
        check_expect(repository, alias, Some(current), expect)?;
        sqlx::query("DELETE FROM aliases WHERE organization = $1 AND repository = $2 AND name = $3")
            .bind(organization)
            .bind(repository)
            .bind(alias)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let change = record_move(&mut tx, organization, repository, alias, Some(current), None, by, false).await?;
        tx.commit().await.map_err(db)?;
        Ok(change)
    }

    /// The alias moves of a repository (of one alias), oldest first.
    pub async fn alias_history(
        &self,
        organization: &str,
        repository: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasMove>> {
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

    /// Where an alias points now.
    async fn alias_target(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        organization: &str,
        repository: &str,
        alias: &str,
    ) -> Result<Option<u64>> {
        let number: Option<i64> =
            sqlx::query_scalar("SELECT number FROM aliases WHERE organization = $1 AND repository = $2 AND name = $3")
                .bind(organization)
                .bind(repository)
                .bind(alias)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?;
        Ok(number.map(|n| n as u64))
    }

    /// [`Error::NotFound`] unless the repository exists; with `lock`, its row is locked
    /// (against other alias moves, not against new models' foreign keys) until the
    /// transaction ends.
    async fn repository_exists<'e>(
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

    /// Deletes a repository and every model in it, in one transaction.
    pub async fn delete_repository(&self, organization: &str, repository: &str) -> Result<()> {
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
    pub async fn commit(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()> {
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

    /// The size of stored content `organization` may read, touched so that garbage
    /// collection spares it for its grace period (a client told it exists names it
    /// instead of sending it); `None` when it is not stored or not granted.
    pub async fn reuse(&self, organization: &str, sha256: &str) -> Result<Option<u64>> {
        validate_name("organization", organization)?;
        validate_sha256(sha256)?;
        let size: Option<i64> = sqlx::query_scalar(
            "UPDATE blobs b SET touched_at = now() FROM grants g
             WHERE b.sha256 = $2 AND g.sha256 = b.sha256 AND g.organization = $1 AND NOT b.deleting
             RETURNING b.size",
        )
        .bind(organization)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(size.map(|s| s as u64))
    }

    /// Whether `organization` may read stored content with this
    /// [sample](runner_core::registry::sample).
    pub async fn sample_known(&self, organization: &str, sample: &str) -> Result<bool> {
        validate_name("organization", organization)?;
        validate_sha256(sample)?;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM samples s JOIN grants g ON g.organization = s.organization AND g.sha256 = s.sha256
             JOIN blobs b ON b.sha256 = s.sha256 AND NOT b.deleting
             WHERE s.organization = $1 AND s.sample = $2)",
        )
        .bind(organization)
        .bind(sample)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    /// The size of stored content `organization` may read, untouched.
    async fn granted_size(&self, organization: &str, sha256: &str) -> Result<Option<u64>> {
        validate_name("organization", organization)?;
        validate_sha256(sha256)?;
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM blobs b JOIN grants g ON g.sha256 = b.sha256 AND g.organization = $1
             WHERE b.sha256 = $2 AND NOT b.deleting",
        )
        .bind(organization)
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(size.map(|s| s as u64))
    }

    /// Streams an upload into the object store, hashing on the way: a small one in one
    /// `PUT`, a large one as a multipart upload whose parts go out while the next is
    /// received. The object is completed only when the sha256 matches, and aborted when
    /// it does not, when the client disconnects or the upload is too large. Returns
    /// `false` when the organization already had the content (nothing is read).
    pub async fn put_blob(
        &self,
        organization: &str,
        sha256: &str,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
    ) -> Result<bool> {
        self.receive_blob(organization, Some(sha256), body, max_size, declared).await.map(|(_, new)| new)
    }

    /// [`SharedStore::put_blob`], or with no `expected` sha256 an upload named by what
    /// arrives: a large one goes to a key of its own under `uploads/`, and is copied to
    /// its content's key once hashed (a copy inside the store, which moves no bytes
    /// through the replica) unless the store holds that content already. Returns what
    /// was stored, and whether it is new to the organization.
    pub async fn receive_blob(
        &self,
        organization: &str,
        expected: Option<&str>,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
    ) -> Result<(Stored, bool)> {
        validate_name("organization", organization)?;
        if let Some(sha256) = expected {
            if let Some(size) = self.reuse(organization, sha256).await? {
                return Ok((Stored { sha256: sha256.to_string(), size }, false));
            }
        }
        let path = match expected {
            Some(sha256) => blob_path(sha256),
            None => ObjectPath::from(format!("{UNNAMED}/{}", hex::encode(rand::random::<[u8; 16]>()))),
        };
        let mut upload: Option<Multipart> = None;
        let received = self.receive(&path, body, max_size, declared, &mut upload).await;
        let (first, size, actual, sample) = match received {
            Ok(done) => done,
            Err(e) => {
                if let Some(upload) = upload {
                    upload.abort().await;
                }
                return Err(e);
            }
        };
        if let Some(sha256) = expected.filter(|sha256| *sha256 != actual) {
            if let Some(upload) = upload {
                upload.abort().await;
            }
            return Err(Error::Checksum { path: format!("upload of {sha256}"), expected: sha256.to_string(), actual });
        }
        let sha256 = actual;
        // Completed under the content's lock: a collector deleting this content either
        // finished first (and the row is written again below) or waits for this one, and
        // then finds the mark cleared.
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_content(&mut tx, &sha256).await?;
        // Marked content is not stored, whatever the bucket holds: it is written again
        // below, and the mark cleared in this transaction.
        let stored = sqlx::query_scalar::<_, i64>("SELECT size FROM blobs WHERE sha256 = $1 AND NOT deleting")
            .bind(&sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_some();
        let target = blob_path(&sha256);
        match upload {
            Some(upload) => {
                upload.complete(self).await?;
                if path != target {
                    let copied = match stored {
                        true => Ok(()),
                        false => self.objects.copy(&path, &target).await.map_err(store),
                    };
                    // Left behind only by a replica that dies here: `gc` deletes it.
                    if let Err(e) = self.objects.delete(&path).await {
                        tracing::warn!(%path, error = %e, "cannot delete an unnamed upload's object; gc will");
                    }
                    copied?;
                }
            }
            None if expected.is_none() && stored => {}
            None => self.objects.put(&target, PutPayload::from(first)).await.map(|_| ()).map_err(store)?,
        }
        let new = sqlx::query_scalar::<_, bool>("SELECT true FROM grants WHERE organization = $1 AND sha256 = $2")
            .bind(organization)
            .bind(&sha256)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .is_none();
        sqlx::query(
            "INSERT INTO blobs (sha256, size) VALUES ($1, $2)
             ON CONFLICT (sha256) DO UPDATE SET touched_at = now(), deleting = false",
        )
        .bind(&sha256)
        .bind(size as i64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        grant(&mut *tx, organization, &sha256).await?;
        if let Some(sample) = sample {
            sqlx::query(
                "INSERT INTO samples (organization, sample, sha256) VALUES ($1, $2, $3)
                 ON CONFLICT (organization, sample) DO UPDATE SET sha256 = EXCLUDED.sha256",
            )
            .bind(organization)
            .bind(&sample)
            .bind(&sha256)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok((Stored { sha256, size }, new))
    }

    /// Reads the body: returns the bytes of a small upload (not yet stored), the size,
    /// the sha256, and the sample of large content whose length was `declared`. A large
    /// one is sent as parts into `upload` as it arrives.
    async fn receive(
        &self,
        path: &ObjectPath,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
        upload: &mut Option<Multipart>,
    ) -> Result<(Bytes, u64, String, Option<String>)> {
        let mut stream = body.into_data_stream();
        let mut hasher = Sha256::new();
        let mut sampler = declared.and_then(Sampler::new);
        let mut size = 0u64;
        // Parts are filled to exactly PART bytes, in buffers reused from upload to upload:
        // fresh 8 MiB allocations by the hundred fragment glibc's arenas, and a replica's
        // peak RSS grew to several times the parts in flight. A part's buffer comes back
        // only when the HTTP client's connection drops the body it sent, which can be
        // after the part's answer: each buffer holds one of this upload's permits, so a
        // new one is taken only once an earlier one is back.
        let live = Arc::new(tokio::sync::Semaphore::new(PARTS_IN_FLIGHT + 1));
        let lease = || async { live.clone().acquire_owned().await.expect("the semaphore is never closed") };
        let mut permit = lease().await;
        let mut buffer = self.parts.take();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::serving(ErrorKind::BadRequest, format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(Error::serving(ErrorKind::TooLarge, format!("files may be at most {max_size} bytes")));
            }
            hasher.update(&chunk);
            if let Some(sampler) = sampler.as_mut() {
                sampler.update(&chunk);
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = rest.len().min(PART - buffer.len());
                buffer.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buffer.len() == PART {
                    let full = self.parts.bytes(std::mem::take(&mut buffer));
                    let part = Bytes::from_owner(Leased { bytes: full, _permit: permit });
                    if upload.is_none() {
                        *upload = Some(Multipart::start(self, path).await?);
                    }
                    upload.as_mut().expect("started").send(self, part).await?;
                    permit = lease().await;
                    buffer = self.parts.take();
                }
            }
        }
        let buffer = self.parts.bytes(buffer);
        if let Some(upload) = upload.as_mut() {
            if !buffer.is_empty() {
                upload.send(self, buffer.clone()).await?;
            }
        }
        Ok((buffer, size, hex::encode(hasher.finalize()), sampler.and_then(Sampler::finish)))
    }

    /// Answers a download: the whole content, or one byte range of it (`Range:
    /// bytes=A-B`, `bytes=A-`, `bytes=-N`), streamed from the store. `None` when the
    /// organization may not read it.
    pub async fn get_blob(&self, organization: &str, sha256: &str, headers: &HeaderMap) -> Result<Option<Response>> {
        let Some(size) = self.granted_size(organization, sha256).await? else { return Ok(None) };
        if let Some((signer, ttl)) = &self.presign {
            let url = signer.signed_url(Method::GET, &blob_path(sha256), *ttl).await.map_err(store)?;
            let location = HeaderValue::from_str(url.as_str()).map_err(|e| Error::msg(format!("a signed URL: {e}")))?;
            let headers = [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
            return Ok(Some((StatusCode::TEMPORARY_REDIRECT, headers).into_response()));
        }
        let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| parse_range(v, size));
        let (status, start, end) = match range {
            None | Some(ByteRange::Ignored) => (StatusCode::OK, 0, size),
            Some(ByteRange::Part(start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
            Some(ByteRange::Unsatisfiable) => {
                return Ok(Some(
                    (
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                        format!("the range asked for lies outside the content's {size} bytes"),
                    )
                        .into_response(),
                ));
            }
        };
        let options = GetOptions { range: Some(GetRange::Bounded(start..end)), ..Default::default() };
        let body = match (start, end) {
            (0, 0) => Body::empty(),
            // Small content (a model's own file, a config) is answered from memory once
            // read: a warm model's downloads cost the store nothing.
            _ if size <= SMALL_CONTENT => {
                Body::from(self.small_content(sha256, size).await?.slice(start as usize..end as usize))
            }
            _ => {
                let got = self.objects.get_opts(&blob_path(sha256), options).await.map_err(|e| missing(e, sha256))?;
                Body::from_stream(got.into_stream())
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if status == StatusCode::PARTIAL_CONTENT {
            let range = format!("bytes {start}-{}/{size}", end - 1);
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&range).expect("ascii"));
        }
        Ok(Some(response))
    }

    /// Small content, from memory or read whole from the store. Kept only when its
    /// sha256 checks; damaged content is logged and answered as it is, like large
    /// content (streamed unchecked): the client checks every download and names the
    /// file in its error.
    async fn small_content(&self, sha256: &str, size: u64) -> Result<Bytes> {
        if let Some(content) = self.small.get(sha256) {
            return Ok(content);
        }
        let got = self.objects.get(&blob_path(sha256)).await.map_err(|e| missing(e, sha256))?;
        let content = got.bytes().await.map_err(store)?;
        let actual = hex::encode(Sha256::digest(&content));
        if actual == sha256 && content.len() as u64 == size {
            self.small.insert(sha256.to_string(), content.clone());
        } else {
            tracing::error!(%sha256, size, actual, held = content.len(), "content is damaged in the object store");
        }
        Ok(content)
    }

    /// The token whose sha256 is `hash`.
    pub async fn find_token(&self, hash: &str) -> Result<Option<Token>> {
        let row = sqlx::query("SELECT id, organization, access, sha256 FROM tokens WHERE sha256 = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.as_ref().map(token))
    }

    /// Stores a new token (hashed) and returns it.
    pub async fn create_token(&self, organization: &str, right: Right) -> Result<String> {
        validate_name("organization", organization)?;
        let (secret, token) = crate::tokens::new_secret(organization, right);
        match insert_token(&self.pool, &token).await? {
            0 => Err(Error::msg("a new token collided with a stored one; create it again")),
            _ => Ok(secret),
        }
    }

    /// Removes what no model needs, sparing what was touched within `grace`: numbers
    /// whose registration was abandoned, content no model names (marked, then deleted),
    /// and multipart uploads a replica left unfinished. Safe while registrations run on
    /// any replica, whatever the grace: a registration it overtakes is refused, never
    /// made ready without its contents (see the module's notes). With `dry_run`, only
    /// reports.
    pub async fn collect_garbage(&self, grace: Duration, dry_run: bool) -> Result<Collected> {
        let seconds = grace.as_secs_f64();
        let mut collected = Collected::default();
        let abandoned =
            sqlx::query(concat!("SELECT organization, repository, number FROM models m WHERE ", abandoned!("$1")))
                .bind(seconds)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        for row in abandoned {
            let id = ModelId::new(row.get::<&str, _>(0), row.get::<&str, _>(1), row.get::<i64, _>(2) as u64)?;
            if dry_run || self.give_back_abandoned(&id, seconds).await? {
                collected.abandoned.push(id.to_string());
            }
        }
        // Content no model names, untouched for the grace period: marked, one at a time,
        // each in a transaction of its own that is committed before its object is touched.
        let orphans = sqlx::query(concat!("SELECT sha256, size FROM blobs b WHERE ", collectable!("$1")))
            .bind(seconds)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        for row in orphans {
            let (sha256, size): (String, i64) = (row.get(0), row.get(1));
            match dry_run {
                true => {
                    collected.blobs += 1;
                    collected.bytes += size as u64;
                }
                false => self.mark_for_deletion(&sha256, seconds).await?,
            }
        }
        if !dry_run {
            // Every marked content: those marked just now, and those of a collector that
            // died before it finished.
            let marked: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM blobs WHERE deleting")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            for sha256 in marked {
                if let Some((size, grants)) = self.delete_marked(&sha256).await? {
                    collected.blobs += 1;
                    collected.bytes += size;
                    collected.grants += grants;
                }
            }
        }
        let stale =
            sqlx::query("SELECT path, upload_id FROM uploads WHERE started_at < now() - make_interval(secs => $1)")
                .bind(seconds)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        for row in stale {
            let (path, upload_id): (String, String) = (row.get(0), row.get(1));
            if !dry_run {
                match self.objects.abort_multipart(&ObjectPath::from(path.as_str()), &upload_id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store(e)),
                }
                forget_upload(&self.pool, &path, &upload_id).await?;
            }
            collected.uploads += 1;
        }
        // Unnamed uploads completed by a replica that died before copying them to their
        // content's key (a finished one is deleted at once).
        let cutoff = std::time::SystemTime::now() - grace;
        let mut leftovers = self.objects.list(Some(&ObjectPath::from(UNNAMED)));
        while let Some(object) = leftovers.next().await {
            let object = object.map_err(store)?;
            if std::time::SystemTime::from(object.last_modified) >= cutoff {
                continue;
            }
            if !dry_run {
                match self.objects.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store(e)),
                }
            }
            collected.uploads += 1;
        }
        Ok(collected)
    }

    /// Gives back a number still uploading after the grace period, unless it is its
    /// repository's highest: the next number is taken one above the highest, so a number
    /// given back is never taken again (a late commit of its registration is refused,
    /// never made into someone else's reservation). Under the repository's row lock, as
    /// numbers are taken; the `DELETE` waits for a commit holding the model's row, and
    /// then matches nothing.
    async fn give_back_abandoned(&self, id: &ModelId, grace_seconds: f64) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT 1 FROM repositories WHERE organization = $1 AND name = $2 FOR UPDATE")
            .bind(&id.organization)
            .bind(&id.repository)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let given = sqlx::query(concat!(
            "DELETE FROM models m WHERE m.organization = $1 AND m.repository = $2 AND m.number = $3 AND ",
            abandoned!("$4")
        ))
        .bind(&id.organization)
        .bind(&id.repository)
        .bind(number(id))
        .bind(grace_seconds)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(given == 1)
    }

    /// The first step of deleting content: marks it, if it is still unnamed, untouched
    /// for `grace_seconds`, and not sent since a live reservation of an organization
    /// that may read it began (a registration in flight keeps its number touched, and
    /// may be about to name it), in a transaction that holds its lock exclusively.
    /// The check is a statement after the lock, so it reads every commit that held the
    /// lock before (its model's files are visible); a commit after this one reads the
    /// mark and refuses the content. A touch (`reuse`) racing this `UPDATE` either comes
    /// first, and the row no longer matches when PostgreSQL checks it again after the
    /// row lock, or comes after, and matches no marked row (`NOT deleting`).
    async fn mark_for_deletion(&self, sha256: &str, grace_seconds: f64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_content(&mut tx, sha256).await?;
        sqlx::query(concat!("UPDATE blobs b SET deleting = true WHERE b.sha256 = $1 AND ", collectable!("$2")))
            .bind(sha256)
            .bind(grace_seconds)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// The second step: deletes marked content's object, then its row (with its grants
    /// and samples), under its lock; `None` when it is no longer marked (an upload of
    /// the same content cleared the mark and wrote the object again). A collector killed
    /// between the two leaves the row marked, and the next run finishes it.
    async fn delete_marked(&self, sha256: &str) -> Result<Option<(u64, usize)>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_content(&mut tx, sha256).await?;
        let row = sqlx::query(
            "SELECT size, EXISTS (SELECT 1 FROM model_files f WHERE f.sha256 = b.sha256) FROM blobs b
             WHERE sha256 = $1 AND deleting",
        )
        .bind(sha256)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let (size, named): (i64, bool) = (row.get(0), row.get(1));
        if named {
            // Cannot happen: commits refuse marked content under this lock. Should it
            // anyway, the content is kept.
            tracing::error!(%sha256, "content marked for deletion is named by a model; it is kept");
            sqlx::query("UPDATE blobs SET deleting = false WHERE sha256 = $1")
                .bind(sha256)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Ok(None);
        }
        match self.objects.delete(&blob_path(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store(e)),
        }
        self.small.remove(sha256);
        let grants = sqlx::query("DELETE FROM grants WHERE sha256 = $1")
            .bind(sha256)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        sqlx::query("DELETE FROM blobs WHERE sha256 = $1").bind(sha256).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some((size as u64, grants as usize)))
    }
}

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
                self.put_blob(org, &file.sha256, body, u64::MAX, Some(file.size)).await.map_err(|e| match e {
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
            if self.alias_target(&mut tx, organization, repository, &alias.name).await?.is_some() {
                continue;
            }
            let id = ModelId::new(organization, repository, alias.number)?;
            ready_manifest(&mut tx, &id, &self.location).await?;
            sqlx::query("INSERT INTO aliases (organization, repository, name, number) VALUES ($1, $2, $3, $4)")
                .bind(organization)
                .bind(repository)
                .bind(&alias.name)
                .bind(alias.number as i64)
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
                "INSERT INTO alias_moves (organization, repository, alias, from_number, to_number, at, by_whom, forced)
                 VALUES ($1, $2, $3, $4, $5, $6::TEXT::TIMESTAMPTZ, $7, $8)",
            )
            .bind(organization)
            .bind(repository)
            .bind(&change.alias)
            .bind(change.from.map(|n| n as i64))
            .bind(change.to.map(|n| n as i64))
            .bind(&change.at)
            .bind(&change.by)
            .bind(change.forced)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(imported.len())
    }
}

/// The manifest of a ready model, its row share-locked until the transaction ends.
async fn ready_manifest(tx: &mut Transaction<'static, Postgres>, id: &ModelId, location: &str) -> Result<Manifest> {
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

fn alias_move(row: &sqlx::postgres::PgRow) -> AliasMove {
    AliasMove {
        alias: row.get(0),
        from: row.get::<Option<i64>, _>(1).map(|n| n as u64),
        to: row.get::<Option<i64>, _>(2).map(|n| n as u64),
        at: row.get(3),
        by: row.get(4),
        forced: row.get(5),
    }
}

/// Records one move of an alias in its history.
#[allow(clippy::too_many_arguments)]
async fn record_move(
    tx: &mut Transaction<'static, Postgres>,
    organization: &str,
    repository: &str,
    alias: &str,
    from: Option<u64>,
    to: Option<u64>,
    by: &str,
    forced: bool,
) -> Result<AliasMove> {
    let row = sqlx::query(concat!(
        "INSERT INTO alias_moves (organization, repository, alias, from_number, to_number, by_whom, forced)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
        move_columns!()
    ))
    .bind(organization)
    .bind(repository)
    .bind(alias)
    .bind(from.map(|n| n as i64))
    .bind(to.map(|n| n as i64))
    .bind(by)
    .bind(forced)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    Ok(alias_move(&row))
}

/// Runs `sql`, whose `$1`, `$2` and `$3` are a model's organization, repository and
/// number; returns the rows it changed.
async fn on_model<'e>(executor: impl sqlx::PgExecutor<'e>, sql: &'static str, id: &ModelId) -> Result<u64> {
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
async fn ensure_repository<'e>(
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

/// Lets `organization` read the content with this sha256 (idempotent).
async fn grant<'e>(executor: impl sqlx::PgExecutor<'e>, organization: &str, sha256: &str) -> Result<()> {
    sqlx::query(
        "WITH org AS (INSERT INTO organizations (name) VALUES ($1) ON CONFLICT DO NOTHING)
         INSERT INTO grants (organization, sha256) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(organization)
    .bind(sha256)
    .execute(executor)
    .await
    .map_err(db)?;
    Ok(())
}

/// Stores a token unless one with its id or hash is stored; returns the rows added.
async fn insert_token(pool: &PgPool, token: &Token) -> Result<u64> {
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

/// Takes the advisory lock of one content, exclusively, until the transaction ends.
async fn lock_content(tx: &mut Transaction<'static, Postgres>, sha256: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(content_lock(sha256)).execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

async fn forget_upload(pool: &PgPool, path: &str, upload_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM uploads WHERE path = $1 AND upload_id = $2")
        .bind(path)
        .bind(upload_id)
        .execute(pool)
        .await
        .map_err(db)?;
    Ok(())
}

/// A token from a row of `SELECT id, organization, access, sha256 FROM tokens`.
fn token(row: &sqlx::postgres::PgRow) -> Token {
    Token { id: row.get(0), organization: row.get(1), right: Right::from_access(row.get(2)), sha256: row.get(3) }
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

/// A multipart upload in flight: recorded in `uploads` first, so that a replica killed
/// mid-upload leaves something the garbage collector can abort.
///
/// Dropped unfinished (the request's future dropped, as hyper does when an HTTP/2 client
/// resets its stream), it aborts itself in the background rather than wait for `gc`.
struct Multipart {
    path: ObjectPath,
    id: String,
    parts: Vec<tokio::task::JoinHandle<object_store::Result<PartId>>>,
    done: Vec<PartId>,
    objects: Arc<dyn Objects>,
    pool: PgPool,
    /// Completed or aborted: nothing left to do when dropped.
    settled: bool,
}

impl Multipart {
    async fn start(shared: &SharedStore, path: &ObjectPath) -> Result<Multipart> {
        let id = shared.objects.create_multipart(path).await.map_err(store)?;
        sqlx::query("INSERT INTO uploads (path, upload_id) VALUES ($1, $2)")
            .bind(path.as_ref())
            .bind(&id)
            .execute(&shared.pool)
            .await
            .map_err(db)?;
        Ok(Multipart {
            path: path.clone(),
            id,
            parts: Vec::new(),
            done: Vec::new(),
            objects: shared.objects.clone(),
            pool: shared.pool.clone(),
            settled: false,
        })
    }

    /// Sends one part in the background, first waiting for the oldest when
    /// [`PARTS_IN_FLIGHT`] are out.
    async fn send(&mut self, shared: &SharedStore, part: Bytes) -> Result<()> {
        if self.parts.len() - self.done.len() >= PARTS_IN_FLIGHT {
            self.wait_one().await?;
        }
        let (objects, path, id, index) = (shared.objects.clone(), self.path.clone(), self.id.clone(), self.parts.len());
        self.parts.push(tokio::spawn(async move { objects.put_part(&path, &id, index, PutPayload::from(part)).await }));
        Ok(())
    }

    async fn wait_one(&mut self) -> Result<()> {
        let next = self.done.len();
        let part = (&mut self.parts[next])
            .await
            .map_err(|e| Error::msg(format!("a part upload failed: {e}")))?
            .map_err(store)?;
        self.done.push(part);
        Ok(())
    }

    async fn complete(mut self, shared: &SharedStore) -> Result<()> {
        let result = async {
            while self.done.len() < self.parts.len() {
                self.wait_one().await?;
            }
            shared.objects.complete_multipart(&self.path, &self.id, std::mem::take(&mut self.done)).await.map_err(store)
        }
        .await;
        match result {
            Ok(_) => {
                self.settled = true;
                forget_upload(&shared.pool, self.path.as_ref(), &self.id).await
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Drops the parts sent; when that fails too, the collector aborts it later.
    async fn abort(mut self) {
        if let Some(task) = self.start_abort() {
            let _ = task.await;
        }
    }

    /// Stops the parts in flight and aborts the upload in a task of its own: the
    /// request's future may be dropped meanwhile (hyper drops it when an HTTP/2 client
    /// resets its stream, just after the body fails), and the abort must still happen.
    /// `None` outside a runtime: the collector aborts it later.
    fn start_abort(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.settled = true;
        for part in &self.parts {
            part.abort();
        }
        let abort = abort_upload(self.objects.clone(), self.pool.clone(), self.path.clone(), self.id.clone());
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| runtime.spawn(abort));
        if task.is_none() {
            tracing::warn!(path = %self.path, "an unfinished multipart upload is left for gc to abort");
        }
        task
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if !self.settled {
            self.start_abort();
        }
    }
}

/// Aborts a multipart upload and forgets it; when the store refuses, the row stays for
/// the collector.
async fn abort_upload(objects: Arc<dyn Objects>, pool: PgPool, path: ObjectPath, id: String) {
    match objects.abort_multipart(&path, &id).await {
        Ok(()) => {
            let _ = forget_upload(&pool, path.as_ref(), &id).await;
        }
        Err(e) => tracing::warn!(%path, error = %e, "cannot abort a multipart upload; gc will"),
    }
}

/// A store error reading content the database lists.
fn missing(e: object_store::Error, sha256: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => {
            Error::msg(format!("content {sha256} is recorded in the database but missing from the object store"))
        }
        other => store(other),
    }
}

/// Bytes that hold a permit until the last of them is dropped.
struct Leased {
    bytes: Bytes,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Leased {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Idle part buffers kept for the next upload: one upload's worth.
const IDLE_PARTS: usize = PARTS_IN_FLIGHT + 1;

impl crate::verify::Scrub for SharedStore {
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

    async fn check(&self, sha256: &str, size: u64, deep: bool) -> Result<crate::verify::Found> {
        use crate::verify::Found;
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

impl crate::export::Source for SharedStore {
    async fn organizations(&self) -> Result<Vec<String>> {
        SharedStore::organizations(self).await
    }

    async fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        SharedStore::repositories(self, organization).await
    }

    async fn ready_models(&self, organization: &str, repository: &str) -> Result<Vec<Manifest>> {
        Ok(self.models(organization, repository).await?.into_iter().filter_map(|m| m.manifest).collect())
    }

    async fn alias_book(&self, organization: &str, repository: &str) -> Result<(Vec<Alias>, Vec<AliasMove>)> {
        Ok((self.aliases(organization, repository).await?, self.alias_history(organization, repository, None).await?))
    }

    async fn tokens(&self) -> Result<Vec<Token>> {
        let rows = sqlx::query("SELECT id, organization, access, sha256 FROM tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.iter().map(token).collect())
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
