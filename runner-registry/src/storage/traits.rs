//! The server-side storage contract: what the HTTP API, the pages and the admin commands
//! ask of a registry's storage, in one trait per concern, and [`Storage`], all of them.
//! The directory backend ([`Directory`](super::Directory)) and the shared one
//! ([`SharedStore`](super::SharedStore)) implement each trait, and each rule is stated
//! once, here: a caller never learns which backend answers.
//!
//! The traits are object-safe (`async_trait`), so a server holds its storage as one
//! `Arc<dyn Storage>` ([`Backend`](super::Backend)) chosen at start: one boxed future per
//! call, nothing against the database round trip or the disk write behind it.
//!
//! Rules every backend keeps:
//! - Names are validated before anything is read ([`runner_core::validate_name`]); an
//!   invalid or missing organization, repository or model is [`Error::NotFound`] or
//!   [`Error::InvalidInput`], never a server error.
//! - A registry never shows half a model: a model is `uploading` until its commit, and a
//!   commit writes its files and manifest at once or not at all.
//! - Content is scoped to organizations: an organization reads (downloads, reuses,
//!   names in a commit) only content it sent or that its models name.
//! - Failures to reach a backing service are [`ErrorKind::Overloaded`]
//!   (HTTP 503, retried by clients), with nothing half-written.
//!
//! [`Error::NotFound`]: runner_core::Error::NotFound
//! [`Error::InvalidInput`]: runner_core::Error::InvalidInput
//! [`ErrorKind::Overloaded`]: runner_core::ErrorKind::Overloaded

use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use runner_core::registry::protocol::Stored;
use runner_core::registry::store::{BlobWriter, Collected};
use runner_core::registry::{Alias, AliasMove, AliasOptions, Expect};
use runner_core::{Expected, Manifest, ModelId, ModelSummary, Result};

use crate::audit::{AuditEntry, AuditQuery};
use crate::tokens::{NewToken, Token};

/// Repositories and their numbered models.
#[async_trait]
pub trait Models: Send + Sync {
    /// The repositories of an organization, sorted.
    async fn repositories(&self, organization: &str) -> Result<Vec<String>>;

    /// The organizations (each has a repository, a token or content), sorted; for the
    /// browser without auth, and for export.
    async fn organizations(&self) -> Result<Vec<String>>;

    /// The numbers taken in a repository (ready and uploading), ascending, with no
    /// manifest read; [`Error::NotFound`](runner_core::Error::NotFound) for a repository
    /// that does not exist.
    async fn model_numbers(&self, organization: &str, repository: &str) -> Result<Vec<u64>>;

    /// The models of a repository, uploading ones too, by number.
    async fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>>;

    /// A model's status and manifest, or `None` when the number does not exist.
    async fn model(&self, id: &ModelId) -> Result<Option<ModelSummary>>;

    /// Takes the next number of a repository (creating the repository when needed), one
    /// above the highest ever taken: concurrent callers get distinct numbers, and a
    /// number given back is never taken again.
    async fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId>;

    /// Gives back an uploading number; a ready model is left alone.
    async fn discard(&self, id: &ModelId) -> Result<()>;

    /// Keeps an uploading number reserved: garbage collection neither gives it back nor
    /// collects what its organization sent since it was taken. A ready model is left as
    /// it is; a number that does not exist (given back) is
    /// [`Error::Gone`](runner_core::Error::Gone).
    async fn keep_alive(&self, id: &ModelId) -> Result<()>;

    /// Deletes a model; its contents stay while others name them. A model an alias points
    /// at is refused, naming the aliases.
    async fn delete_model(&self, id: &ModelId) -> Result<()>;

    /// Deletes a repository and every model in it, at once.
    async fn delete_repository(&self, organization: &str, repository: &str) -> Result<()>;

    /// Makes a model ready with `manifest`, under `expected` when given
    /// ([`Error::Conflict`](runner_core::Error::Conflict) when another commit got there
    /// first). Every file's content must be stored, of its size and readable by the
    /// organization, or the commit is refused with
    /// [`Error::Gone`](runner_core::Error::Gone) naming what is missing, and nothing is
    /// written; garbage collection cannot delete a content a commit is naming.
    async fn commit(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()>;
}

/// Aliases: names for model numbers that move, with the history of every move.
#[async_trait]
pub trait Aliases: Send + Sync {
    /// The aliases of a repository, by name.
    async fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>>;

    /// Moves (or creates) an alias onto ready model `number` under `options` (the
    /// compare-and-set `expect`, and `force` to move across a change of API); moves of
    /// one repository's aliases queue up. `by` (who asked) is recorded in its history.
    async fn set_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        number: u64,
        options: &AliasOptions,
        by: &str,
    ) -> Result<AliasMove>;

    /// Deletes an alias when `expect` holds; recorded in its history.
    async fn delete_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        expect: Expect,
        by: &str,
    ) -> Result<AliasMove>;

    /// The alias moves of a repository (of one alias), oldest first.
    async fn alias_history(&self, organization: &str, repository: &str, alias: Option<&str>) -> Result<Vec<AliasMove>>;
}

/// File contents, by sha256: uploads, reuse and downloads.
#[async_trait]
pub trait Contents: Send + Sync {
    /// The size of stored content the organization may read, touched so that garbage
    /// collection spares it for its grace period (a client told it exists names it
    /// instead of sending it); `None` when it is not stored or not granted.
    async fn reuse(&self, organization: &str, sha256: &str) -> Result<Option<u64>>;

    /// Whether the organization may read stored content with this
    /// [sample](runner_core::registry::sample).
    async fn sample_known(&self, organization: &str, sample: &str) -> Result<bool>;

    /// The largest content [`Contents::receive`] takes with no `expected` sha256.
    fn max_unnamed_size(&self) -> u64;

    /// Streams an upload into the store, hashing on the way, and grants it to the
    /// organization. With `expected`, nothing is kept unless the sha256 matches
    /// ([`Error::Checksum`](runner_core::Error::Checksum)), and nothing is read when the
    /// organization has that content already; without, the content is stored under the
    /// sha256 of what arrived. More than `max_size` bytes is
    /// [`ErrorKind::TooLarge`](runner_core::ErrorKind::TooLarge). With the length the
    /// request `declared`, the sample of large content is recorded on the way. Returns
    /// what was stored, and whether it is new to the organization.
    async fn receive(
        &self,
        organization: &str,
        expected: Option<&str>,
        body: Body,
        max_size: u64,
        declared: Option<u64>,
    ) -> Result<(Stored, bool)>;

    /// Answers a download of content (with HTTP Range, from `request`'s headers), or
    /// `None` when the organization may not read that content.
    async fn download(&self, organization: &str, sha256: &str, request: Request) -> Result<Option<Response>>;
}

/// Bearer tokens, stored hashed, with their life cycle.
///
/// A revoked or expired token is refused from the first request after the change, on
/// every replica: each lookup reads the stored token (one indexed query; in a directory,
/// one `stat` of the token file, and a read when it changed), with no cache to outlive a
/// revocation.
#[async_trait]
pub trait Access: Send + Sync {
    /// The stored token matching the token a client `presented`, revoked and expired ones
    /// included (the caller says why it refuses them); its use is recorded, to the
    /// minute ([`LAST_USED_PRECISION`](crate::LAST_USED_PRECISION)).
    async fn find_token(&self, presented: &str) -> Result<Option<Token>>;

    /// Creates a token and returns it with its stored form; only its hash is stored.
    async fn create_token(&self, new: &NewToken) -> Result<(String, Token)>;

    /// The stored tokens (of one organization), revoked and expired ones included, by
    /// organization and id.
    async fn list_tokens(&self, organization: Option<&str>) -> Result<Vec<Token>>;

    /// Revokes a token for good and returns it; with `organization`, only a token of
    /// that organization (another's is unknown there).
    /// [`Error::NotFound`](runner_core::Error::NotFound) for an id that names none.
    async fn revoke_token(&self, organization: Option<&str>, id: &str) -> Result<Token>;
}

/// The audit log: appended to, never rewritten.
#[async_trait]
pub trait Audit: Send + Sync {
    /// Appends one entry, durably (committed, or written and fsynced) before it returns.
    async fn record(&self, entry: &AuditEntry) -> Result<()>;

    /// The entries `query` asks for, oldest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;

    /// Records a change that is done: it stands whether or not its entry can be written,
    /// so a failure is logged as an error rather than answered as a failed request.
    async fn record_done(&self, entry: &AuditEntry) {
        if let Err(e) = self.record(entry).await {
            tracing::error!(error = %e, action = %entry.action, organization = %entry.organization, target = %entry.target,
                "the change is done, but the audit log cannot record it");
        }
    }
}

/// Garbage collection.
#[async_trait]
pub trait Collector: Send + Sync {
    /// Removes what no model needs (numbers whose registration was abandoned, content no
    /// model names, uploads left unfinished), sparing what was touched within `grace`.
    /// Safe while the server and registrations run, whatever the grace: a registration
    /// it overtakes is refused, never made ready without its contents. With `dry_run`,
    /// only reports.
    async fn collect_garbage(&self, grace: Duration, dry_run: bool) -> Result<Collected>;
}

/// What a backend holds of one content, for [`Scrub::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Stored, with the size asked for (and, when read, the sha256).
    Sound,
    /// Not stored at all.
    Missing(String),
    /// Stored with another size.
    Size(u64),
    /// Stored with the right size, but its bytes hash to another sha256.
    Corrupt(String),
}

/// What [`verify`](crate::verify::verify) reads: a scrub of the whole store.
#[async_trait]
pub trait Scrub: Send + Sync {
    /// The manifest of every ready model, of every organization.
    async fn manifests(&self) -> Result<Vec<Manifest>>;

    /// What the store holds of content `sha256`, expected `size` bytes long; with
    /// `deep`, its bytes are read and hashed.
    async fn check(&self, sha256: &str, size: u64, deep: bool) -> Result<Found>;

    /// Whether `organization` may read content `sha256` (its downloads answer 404
    /// otherwise).
    async fn granted(&self, organization: &str, sha256: &str) -> Result<bool>;
}

/// What [`export`](crate::export::export) reads, besides the organizations and
/// repositories of [`Models`] and the tokens of [`Access`].
#[async_trait]
pub trait Source: Models + Access {
    /// The manifests of a repository's ready models, by number.
    async fn ready_models(&self, organization: &str, repository: &str) -> Result<Vec<Manifest>>;

    /// A repository's aliases and the whole history of their moves.
    async fn alias_book(&self, organization: &str, repository: &str) -> Result<(Vec<Alias>, Vec<AliasMove>)>;

    /// Copies content `sha256` into `to`, which checks it when finished.
    async fn copy_content(&self, sha256: &str, to: &mut BlobWriter) -> Result<()>;
}

/// A registry server's whole storage contract: each backend implements every part.
pub trait Storage: Models + Aliases + Contents + Access + Audit + Collector + Scrub + Source + std::fmt::Debug {}

impl<T: Models + Aliases + Contents + Access + Audit + Collector + Scrub + Source + std::fmt::Debug> Storage for T {}
