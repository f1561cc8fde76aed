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
//! - garbage collection cannot delete what a model names, by the order of its steps
//!   (the `gc` module's notes argue it interleaving by interleaving).
//!
//! Errors reaching the database or the store are [`ErrorKind::Overloaded`] (HTTP 503,
//! which clients retry): the transaction is rolled back, so nothing is half-written.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::ObjectStore;
use runner_core::registry::buffers::BufferPool;
use runner_core::Result;
use runner_core::{Error, ErrorKind, ModelId};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, SqlSafeStr, Transaction};

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
pub(super) const PART: usize = 8 << 20;
/// Parts of one upload sent at once; with one being filled, the memory an upload holds.
pub(super) const PARTS_IN_FLIGHT: usize = 3;
/// Idle part buffers kept for the next upload: one upload's worth.
pub(super) const IDLE_PARTS: usize = PARTS_IN_FLIGHT + 1;

/// The schema, embedded; applied at start under sqlx's migration lock, so replicas may
/// start together.
fn migrator() -> Migrator {
    let migration = |version, name: &str, sql: &'static str| {
        Migration::new(version, name.to_string().into(), MigrationType::Simple, sql.into_sql_str(), false)
    };
    Migrator::with_migrations(vec![
        migration(1, "registry", include_str!("../../../migrations/0001_registry.sql")),
        migration(2, "aliases", include_str!("../../../migrations/0002_aliases.sql")),
        migration(3, "organizations", include_str!("../../../migrations/0003_organizations.sql")),
        migration(4, "samples", include_str!("../../../migrations/0004_samples.sql")),
        migration(5, "deleting", include_str!("../../../migrations/0005_deleting.sql")),
        migration(6, "access", include_str!("../../../migrations/0006_access.sql")),
        migration(7, "splits", include_str!("../../../migrations/0007_splits.sql")),
    ])
}

/// A failure to reach the database: 503, retried by clients.
pub(super) fn db(error: sqlx::Error) -> Error {
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
pub(super) fn store(error: object_store::Error) -> Error {
    Error::new(
        ErrorKind::Overloaded,
        format!("the registry's object store is unavailable ({error}); nothing was changed: retry shortly"),
    )
}

/// Where content with this sha256 lives in the bucket.
/// Where uploads not named beforehand lie until they are hashed and copied to their
/// content's key.
pub(super) const UNNAMED: &str = "uploads";

/// The largest object one S3 `CopyObject` copies (5 GiB); larger content is not taken
/// unnamed.
pub(super) const MAX_COPY: u64 = 5 << 30;

pub(super) fn blob_path(sha256: &str) -> ObjectPath {
    ObjectPath::from(format!("blobs/sha256/{}/{sha256}", &sha256[..2]))
}

/// The advisory lock of one content: completing its object and each step of deleting it
/// take it exclusively, commits naming it take it shared (see the module's notes).
pub(super) fn content_lock(sha256: &str) -> i64 {
    let bytes = hex::decode(&sha256[..16]).expect("a validated sha256 is hex");
    i64::from_be_bytes(bytes.try_into().expect("eight bytes"))
}

pub(super) fn number(id: &ModelId) -> i64 {
    i64::try_from(id.number).unwrap_or(i64::MAX)
}

/// The registry on PostgreSQL and an object store.
#[derive(Clone)]
pub struct SharedStore {
    pub(super) pool: PgPool,
    pub(super) objects: Arc<dyn Objects>,
    pub(super) location: String,
    /// Downloads answered with a presigned URL valid this long, when set.
    pub(super) presign: Option<(Arc<dyn Signer>, Duration)>,
    /// Part buffers of [`PART`] bytes, reused: a part's buffer comes back when the part
    /// has been sent and its bytes are dropped.
    pub(super) parts: BufferPool,
    /// Small contents read from the store lately, checked against their sha256.
    pub(super) small: Arc<SmallContents>,
}

/// Contents of at most this many bytes are kept in memory once read from the store.
pub(super) const SMALL_CONTENT: u64 = 256 << 10;
/// Bytes of small contents a replica keeps, at most.
const SMALL_CONTENTS: u64 = 8 << 20;

/// Small contents by sha256, weighed by their size. Content never changes under its
/// sha256, so a cached one is never stale; who may read it is asked of the database on
/// every request all the same.
pub(super) type SmallContents = quick_cache::sync::Cache<String, Bytes, BySize>;

#[derive(Clone)]
pub(super) struct BySize;

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
}

/// Takes the advisory lock of one content, exclusively, until the transaction ends.
pub(super) async fn lock_content(tx: &mut Transaction<'static, Postgres>, sha256: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(content_lock(sha256)).execute(&mut **tx).await.map_err(db)?;
    Ok(())
}

/// A store error reading content the database lists.
pub(super) fn missing(e: object_store::Error, sha256: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => {
            Error::msg(format!("content {sha256} is recorded in the database but missing from the object store"))
        }
        other => store(other),
    }
}
