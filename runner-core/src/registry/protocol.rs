//! The registry's wire protocol, defined once for the client (`HttpRegistry`, feature
//! `http-client`) and the server (`runner-registry`): routes, request and response
//! bodies, the error envelope and the commit preconditions.
//!
//! | route | right | what |
//! |---|---|---|
//! | `GET /v1/orgs/{org}/repos` | read | [`Repositories`] |
//! | `DELETE /v1/orgs/{org}/repos/{repo}` | write | delete a repository and its models |
//! | `GET /v1/orgs/{org}/repos/{repo}/models` | read | [`Models`] |
//! | `POST /v1/orgs/{org}/repos/{repo}/models` | write | take the next number: [`Created`] |
//! | `GET /v1/orgs/{org}/repos/{repo}/models/{n}` | read | [`ModelView`] |
//! | `DELETE /v1/orgs/{org}/repos/{repo}/models/{n}` | write | delete a model |
//! | `PUT /v1/orgs/{org}/repos/{repo}/models/{n}/manifest` | write | commit, with a [`Precondition`] |
//! | `DELETE /v1/orgs/{org}/repos/{repo}/models/{n}/reservation` | write | give back a number |
//! | `PUT /v1/orgs/{org}/repos/{repo}/models/{n}/reservation` | write | keep a number reserved while its registration works |
//! | `GET /v1/orgs/{org}/repos/{repo}/aliases` | read | [`Aliases`] |
//! | `PUT /v1/orgs/{org}/repos/{repo}/aliases/{alias}` | write | move (or create) an alias: [`SetAlias`] -> [`AliasMove`] |
//! | `DELETE /v1/orgs/{org}/repos/{repo}/aliases/{alias}` | write | delete an alias (`?expect=N`: only if it points at N) -> [`AliasMove`] |
//! | `GET /v1/orgs/{org}/repos/{repo}/history` | read | every alias move of the repository (`?alias=prod`: of one): [`AliasHistory`] |
//! | `HEAD /v1/orgs/{org}/blobs/{sha256}` | read | is this content stored? |
//! | `PUT /v1/orgs/{org}/blobs/{sha256}` | write | upload, checked against the sha256 |
//! | `GET /v1/orgs/{org}/blobs/{sha256}` | read | download, with HTTP Range |
//!
//! Errors are an [`ErrorBody`]: `{"error": {"status": 404, "code": "not_found", "message": "..."}}`.

use serde::{Deserialize, Serialize};

pub use super::alias::{Alias, AliasMove, Canary, Expect};
use super::traits::{Expected, ModelStatus, ModelSummary};
/// The error envelope, shared with the serving HTTP server.
pub use crate::error::{ErrorBody, ErrorDetail};
use crate::manifest::Manifest;
use crate::names::ModelId;

/// Response header of `HEAD` [`route::BLOB`]: the largest file the server accepts, in
/// bytes, so that a client refuses a larger one before sending it (a server cannot make
/// a client that is still sending read its early 413).
pub const MAX_FILE_SIZE_HEADER: &str = "x-runner-max-file-size";

/// Response header of `HEAD` [`route::BLOBS`]: the largest content the server takes
/// unnamed (`POST`), in bytes. The client asks before sending, and names a larger file
/// first instead; a server that does not answer takes no unnamed uploads.
pub const MAX_UNNAMED_SIZE_HEADER: &str = "x-runner-max-unnamed-size";

/// Query parameter of `HEAD` [`route::BLOBS`]: the [sample](super::sample) of a large
/// file the client has not hashed (64 lowercase hex digits).
pub const SAMPLE_QUERY: &str = "sample";

/// Response header of `HEAD` [`route::BLOBS`]`?sample=`: `true` when the organization
/// may read content with that sample (the client then hashes its file and names it,
/// and sends nothing if the server holds it), `false` when it may not (the content is
/// new: it is sent unnamed, and the file read once). Nothing is told of content other
/// organizations hold.
pub const SAMPLE_KNOWN_HEADER: &str = "x-runner-sample-known";

/// Route templates (axum syntax), one per resource; [`path`] fills them in.
pub mod route {
    /// An organization's repositories.
    pub const REPOSITORIES: &str = "/v1/orgs/{org}/repos";
    /// One repository.
    pub const REPOSITORY: &str = "/v1/orgs/{org}/repos/{repo}";
    /// A repository's models.
    pub const MODELS: &str = "/v1/orgs/{org}/repos/{repo}/models";
    /// One model.
    pub const MODEL: &str = "/v1/orgs/{org}/repos/{repo}/models/{number}";
    /// A model's manifest: `PUT` commits.
    pub const MANIFEST: &str = "/v1/orgs/{org}/repos/{repo}/models/{number}/manifest";
    /// A model's number while uploading: `DELETE` gives it back, `PUT` keeps it
    /// reserved (garbage collection gives back numbers untouched for its grace period).
    pub const RESERVATION: &str = "/v1/orgs/{org}/repos/{repo}/models/{number}/reservation";
    /// File content by sha256.
    pub const BLOB: &str = "/v1/orgs/{org}/blobs/{sha256}";
    /// Content not named yet: `POST` uploads it and is told its sha256 (the client
    /// hashes as it sends, and reads the file once); `HEAD` tells how large it may be,
    /// and whether the organization holds content with a given sample.
    pub const BLOBS: &str = "/v1/orgs/{org}/blobs";
    /// A repository's aliases.
    pub const ALIASES: &str = "/v1/orgs/{org}/repos/{repo}/aliases";
    /// One alias: `PUT` moves it, `DELETE` deletes it.
    pub const ALIAS: &str = "/v1/orgs/{org}/repos/{repo}/aliases/{alias}";
    /// The alias moves of a repository.
    pub const HISTORY: &str = "/v1/orgs/{org}/repos/{repo}/history";
}

/// Concrete paths for the templates in [`route`].
pub mod path {
    use crate::names::ModelId;

    /// [`super::route::REPOSITORIES`].
    pub fn repositories(org: &str) -> String {
        format!("/v1/orgs/{org}/repos")
    }
    /// [`super::route::REPOSITORY`].
    pub fn repository(org: &str, repo: &str) -> String {
        format!("/v1/orgs/{org}/repos/{repo}")
    }
    /// [`super::route::MODELS`].
    pub fn models(org: &str, repo: &str) -> String {
        format!("/v1/orgs/{org}/repos/{repo}/models")
    }
    /// [`super::route::MODEL`].
    pub fn model(id: &ModelId) -> String {
        format!("/v1/orgs/{}/repos/{}/models/{}", id.organization, id.repository, id.number)
    }
    /// [`super::route::MANIFEST`].
    pub fn manifest(id: &ModelId) -> String {
        format!("{}/manifest", model(id))
    }
    /// [`super::route::RESERVATION`].
    pub fn reservation(id: &ModelId) -> String {
        format!("{}/reservation", model(id))
    }
    /// [`super::route::BLOB`].
    pub fn blob(org: &str, sha256: &str) -> String {
        format!("{}/{sha256}", blobs(org))
    }
    /// [`super::route::BLOBS`].
    pub fn blobs(org: &str) -> String {
        format!("/v1/orgs/{org}/blobs")
    }
    /// [`super::route::ALIASES`].
    pub fn aliases(org: &str, repo: &str) -> String {
        format!("/v1/orgs/{org}/repos/{repo}/aliases")
    }
    /// [`super::route::ALIAS`].
    pub fn alias(org: &str, repo: &str, alias: &str) -> String {
        format!("/v1/orgs/{org}/repos/{repo}/aliases/{alias}")
    }
    /// [`super::route::HISTORY`].
    pub fn history(org: &str, repo: &str) -> String {
        format!("/v1/orgs/{org}/repos/{repo}/history")
    }
}

/// `GET` [`route::ALIASES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aliases {
    /// The repository's aliases, by name.
    pub aliases: Vec<Alias>,
}

/// `PUT` [`route::ALIAS`]: where to point it, and under which conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAlias {
    /// The ready model number it will point at.
    #[serde(deserialize_with = "super::alias::whole_number")]
    pub number: u64,
    /// The compare-and-set condition (default: any).
    #[serde(default)]
    pub expect: Expect,
    /// Move it past an API fingerprint change.
    #[serde(default)]
    pub force: bool,
    /// The split after the move (none: every request goes to `number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Why, recorded in the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET` [`route::HISTORY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasHistory {
    /// The moves, oldest first.
    pub moves: Vec<AliasMove>,
}

/// The query of `DELETE` [`route::ALIAS`] and `GET` [`route::HISTORY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasQuery {
    /// `DELETE`: delete only if the alias points at this number.
    pub expect: Option<u64>,
    /// `GET` history: the moves of this alias only.
    pub alias: Option<String>,
}

/// `GET` [`route::REPOSITORIES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repositories {
    /// Repository names, sorted.
    pub repositories: Vec<String>,
}

/// The answer to `POST` [`route::BLOBS`]: what the server stored, named by the sha256 it
/// computed (201 when new to the organization, 200 when it had that content already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// sha256 of the content received, lowercase hex.
    pub sha256: String,
    /// Bytes received.
    pub size: u64,
}

/// `GET` [`route::MODELS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Models {
    /// Without [`ModelsQuery::limit`]: every model of the repository, uploading ones too,
    /// by number. With it: one page, newest first.
    pub models: Vec<ModelView>,
    /// With [`ModelsQuery::limit`], when older models remain: the `before` of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// The query of `GET` [`route::MODELS`]: one page of models, newest first.
///
/// ```
/// use runner_core::registry::protocol::ModelsQuery;
/// let page = ModelsQuery { limit: Some(50), before: Some(120) };
/// assert_eq!(page.query(), "?limit=50&before=120");
/// assert_eq!(ModelsQuery::default().query(), "");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsQuery {
    /// At most this many models ([`MAX_PAGE`] at most), newest first. Absent: every
    /// model, oldest first.
    pub limit: Option<usize>,
    /// Only models numbered below this.
    pub before: Option<u64>,
}

/// The most models one page of `GET` [`route::MODELS`] holds.
pub const MAX_PAGE: usize = 1000;

impl ModelsQuery {
    /// The query string (`?limit=50&before=120`), empty when neither is set.
    pub fn query(&self) -> String {
        let parts: Vec<String> = [self.limit.map(|n| format!("limit={n}")), self.before.map(|n| format!("before={n}"))]
            .into_iter()
            .flatten()
            .collect();
        match parts.is_empty() {
            true => String::new(),
            false => format!("?{}", parts.join("&")),
        }
    }
}

/// `POST` [`route::MODELS`]: the number taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The new model's number.
    pub number: u64,
}

/// One model as listed, and `GET` [`route::MODEL`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelView {
    /// Model number.
    pub number: u64,
    /// `uploading` or `ready`.
    pub status: ModelStatus,
    /// The manifest, once ready.
    pub manifest: Option<Manifest>,
}

impl ModelView {
    /// The view of a listed model.
    pub fn of(summary: ModelSummary) -> ModelView {
        ModelView { number: summary.id.number, status: summary.status, manifest: summary.manifest }
    }

    /// Back to a listing line of repository `org/repo`.
    pub fn into_summary(self, org: &str, repo: &str) -> crate::error::Result<ModelSummary> {
        Ok(ModelSummary { id: ModelId::new(org, repo, self.number)?, status: self.status, manifest: self.manifest })
    }
}

/// The precondition of a commit, as HTTP headers: of two registrations of one number,
/// one wins and the other gets 412.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition;

impl Precondition {
    /// The header (`If-None-Match: *` or `If-Match: "sha256"`) that says what a commit
    /// expects to replace.
    pub fn header(expected: &Expected) -> (&'static str, String) {
        match expected {
            Expected::Nothing => ("if-none-match", "*".to_string()),
            Expected::Manifest(sha256) => ("if-match", format!("\"{sha256}\"")),
        }
    }

    /// What a commit expects, from its `If-None-Match` and `If-Match` headers.
    pub fn parse(if_none_match: Option<&str>, if_match: Option<&str>) -> Option<Expected> {
        match (if_none_match, if_match) {
            (Some(star), _) if star.trim() == "*" => Some(Expected::Nothing),
            (_, Some(tag)) => Some(Expected::Manifest(tag.trim().trim_matches('"').to_string())),
            _ => None,
        }
    }
}

/// What a `Range` header asks of content of some size: see [`parse_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end`: never empty, and never past the content's end.
    Part(u64, u64),
    /// Outside the content: 416.
    Unsatisfiable,
    /// Not one byte range this server serves (several ranges, another unit): the whole
    /// content, as RFC 9110 allows.
    Ignored,
}

/// Reads a `Range` header for content of `size` bytes as RFC 9110 says: one byte range
/// (`bytes=A-B`, `bytes=A-`, `bytes=-N`) is served; anything else is answered with the
/// whole content.
///
/// ```
/// use runner_core::registry::protocol::{parse_range, ByteRange};
/// assert_eq!(parse_range("bytes=990-2000", 1000), ByteRange::Part(990, 1000));
/// assert_eq!(parse_range("bytes=1000-", 1000), ByteRange::Unsatisfiable);
/// assert_eq!(parse_range("bytes=0-1,5-6", 1000), ByteRange::Ignored);
/// ```
pub fn parse_range(value: &str, size: u64) -> ByteRange {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return ByteRange::Ignored };
    if spec.contains(',') {
        return ByteRange::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return ByteRange::Ignored };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(n) if size > 0 => ByteRange::Part(size.saturating_sub(n), size),
            Some(_) => ByteRange::Unsatisfiable,
            None => ByteRange::Ignored,
        },
        (false, _) => match (parse(first), if last.is_empty() { Some(u64::MAX) } else { parse(last) }) {
            (Some(start), Some(end)) if start <= end => match start < size {
                true => ByteRange::Part(start, end.saturating_add(1).min(size)),
                false => ByteRange::Unsatisfiable,
            },
            _ => ByteRange::Ignored,
        },
        (true, true) => ByteRange::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), ByteRange::Part(0, 100));
        assert_eq!(parse_range("bytes=990-2000", 1000), ByteRange::Part(990, 1000));
        assert_eq!(parse_range("bytes=500-", 1000), ByteRange::Part(500, 1000));
        assert_eq!(parse_range("bytes=-10", 1000), ByteRange::Part(990, 1000));
        assert_eq!(parse_range("bytes=-5000", 1000), ByteRange::Part(0, 1000));
        assert_eq!(parse_range("bytes=1000-", 1000), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), ByteRange::Ignored);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), ByteRange::Ignored);
        assert_eq!(parse_range("items=0-1", 1000), ByteRange::Ignored);
        assert_eq!(parse_range("bytes=x-1", 1000), ByteRange::Ignored);
    }

    /// Fills a template the way a router matches it.
    fn fill(template: &str, values: &[(&str, &str)]) -> String {
        values.iter().fold(template.to_string(), |t, (k, v)| t.replace(&format!("{{{k}}}"), v))
    }

    #[test]
    fn model_numbers_may_be_written_as_whole_floats() {
        let set: SetAlias = serde_json::from_str(r#"{"number": 4.0, "expect": {"number": 3.0}}"#).unwrap();
        assert_eq!((set.number, set.expect), (4, Expect::Number(3)));
        let set: SetAlias = serde_json::from_str(r#"{"number": 4, "expect": "unset", "force": true}"#).unwrap();
        assert_eq!((set.number, set.expect, set.force), (4, Expect::Unset, true));
        for bad in [r#"{"number": 4.5}"#, r#"{"number": -1}"#, r#"{"number": 1e30}"#, r#"{"number": "4"}"#] {
            let error = serde_json::from_str::<SetAlias>(bad).unwrap_err().to_string();
            assert!(error.contains("a model number (a whole number from 1)"), "{bad}: {error}");
        }
    }

    #[test]
    fn paths_fill_their_templates() {
        let id = ModelId::new("acme", "iris", 7).unwrap();
        let m = [("org", "acme"), ("repo", "iris"), ("number", "7")];
        assert_eq!(path::repositories("acme"), fill(route::REPOSITORIES, &m));
        assert_eq!(path::repository("acme", "iris"), fill(route::REPOSITORY, &m));
        assert_eq!(path::models("acme", "iris"), fill(route::MODELS, &m));
        assert_eq!(path::model(&id), fill(route::MODEL, &m));
        assert_eq!(path::manifest(&id), fill(route::MANIFEST, &m));
        assert_eq!(path::reservation(&id), fill(route::RESERVATION, &m));
        assert_eq!(path::blob("acme", "ab12"), fill(route::BLOB, &[("org", "acme"), ("sha256", "ab12")]));
        assert_eq!(path::blobs("acme"), fill(route::BLOBS, &[("org", "acme")]));
        assert_eq!(path::aliases("acme", "iris"), fill(route::ALIASES, &m));
        assert_eq!(
            path::alias("acme", "iris", "prod"),
            fill(route::ALIAS, &[("org", "acme"), ("repo", "iris"), ("alias", "prod")])
        );
        assert_eq!(path::history("acme", "iris"), fill(route::HISTORY, &m));
    }

    #[test]
    fn preconditions_round_trip() {
        for expected in [Expected::Nothing, Expected::Manifest("ab".repeat(32))] {
            let (name, value) = Precondition::header(&expected);
            let parsed = match name {
                "if-none-match" => Precondition::parse(Some(&value), None),
                _ => Precondition::parse(None, Some(&value)),
            };
            assert_eq!(parsed, Some(expected));
        }
        assert_eq!(Precondition::parse(None, None), None);
    }

    #[test]
    fn the_error_envelope_has_its_documented_shape() {
        let body = serde_json::to_value(ErrorBody::new(404, "not_found", "no such model")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"status": 404, "code": "not_found", "message": "no such model"}})
        );
    }
}
