//! Bearer tokens: each of one organization, with a right (read, write or admin), optionally
//! limited to some of its repositories (globs), a name, and a life cycle (created,
//! expires, revoked, last used). Only a token's sha256 is stored.
//!
//! The directory backend keeps them in `tokens.json` (rewritten whole, fsynced, renamed
//! into place, under `tokens.lock`), and the times they were last used in
//! `token-uses.json` (written by the server, at most once a minute); the shared backend in
//! the `tokens` table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use rand::RngCore;
use runner_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;

/// What a token may do; each right includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// List and download.
    Read,
    /// Read, and register (create numbers, upload, commit, discard) and move aliases.
    Write,
    /// Write, and delete models and repositories, and read the audit log.
    Admin,
}

impl Right {
    /// How the shared registry's `tokens.access` column writes it.
    pub(crate) fn access(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
            Right::Admin => "admin",
        }
    }

    /// Back from [`Right::access`]; anything else reads only.
    pub(crate) fn from_access(access: &str) -> Right {
        match access {
            "admin" => Right::Admin,
            "write" => Right::Write,
            _ => Right::Read,
        }
    }

    /// Whether a token with this right may do what needs `needed`.
    pub fn allows(self, needed: Right) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Right {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.access())
    }
}

/// A token as stored: never the token itself, only its sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// A short id to tell tokens apart (in logs, the audit log and `token revoke`).
    pub id: String,
    /// What it is for (`ci`, `alice-laptop`); empty for a token made before tokens had
    /// names.
    #[serde(default)]
    pub name: String,
    /// The organization it is for.
    pub organization: String,
    /// What it may do there.
    pub right: Right,
    /// The repositories it may reach, as globs (`iris`, `vision-*`); empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Hex sha256 of the token.
    pub sha256: String,
    /// When it was created (unknown for a token made before tokens had a life cycle).
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<OffsetDateTime>,
    /// When it stops working; `None`: never.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked; a revoked token is refused for good.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<OffsetDateTime>,
    /// When a request last presented it, to the minute.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// Whether a stored token may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// It may.
    Valid,
    /// Revoked at that time.
    Revoked(OffsetDateTime),
    /// Expired at that time.
    Expired(OffsetDateTime),
}

impl TokenState {
    /// `valid`, `revoked` or `expired`, as listings and the API say it.
    pub fn name(self) -> &'static str {
        match self {
            TokenState::Valid => "valid",
            TokenState::Revoked(_) => "revoked",
            TokenState::Expired(_) => "expired",
        }
    }
}

/// A time to the second, UTC, as token listings and refusals write it:
/// `2026-12-06T01:12:29Z`.
pub fn to_the_second(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

impl Token {
    /// How the audit log names it: `token ID (NAME, RIGHT[ on GLOBS])`.
    pub fn describe(&self) -> String {
        let repos = match self.repositories.is_empty() {
            true => String::new(),
            false => format!(" on {}", self.repositories.join(",")),
        };
        format!("token {} ({}, {}{repos})", self.id, self.label(), self.right)
    }

    /// Whether it may be used at `now`.
    pub fn state(&self, now: OffsetDateTime) -> TokenState {
        match (self.revoked_at, self.expires_at) {
            (Some(at), _) => TokenState::Revoked(at),
            (None, Some(at)) if at <= now => TokenState::Expired(at),
            _ => TokenState::Valid,
        }
    }

    /// Whether it may reach `repository` (every repository when it names none).
    pub fn covers(&self, repository: &str) -> bool {
        self.repositories.is_empty()
            || self.repositories.iter().any(|glob| glob::Pattern::new(glob).is_ok_and(|p| p.matches(repository)))
    }

    /// Its name, or its id when it has none: how the audit log and pages name it.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

/// The longest lifetime a token may be given (100 years); without one it lives until
/// revoked.
pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 86_400);

/// What `token create` makes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    /// The organization it is for.
    pub organization: String,
    /// What it is for (letters, digits, `-`, `_`, `.`; at most 64).
    pub name: String,
    /// What it may do.
    pub right: Right,
    /// The repositories it may reach, as globs; empty: all of them.
    pub repositories: Vec<String>,
    /// How long it works; `None`: until revoked.
    pub expires_in: Option<Duration>,
}

impl NewToken {
    /// Checks it and makes the token: the secret to hand out once, and the stored form.
    pub fn mint(&self) -> Result<(String, Token)> {
        runner_core::validate_name("organization", &self.organization)?;
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(Error::invalid_input(format!(
                "token name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.` (say what it is for: `ci`, `alice-laptop`)",
                self.name
            )));
        }
        for glob in &self.repositories {
            glob::Pattern::new(glob).map_err(|e| {
                Error::invalid_input(format!(
                    "`{glob}` is not a repository glob ({e}); write names or globs such as `vision-*`"
                ))
            })?;
        }
        let now = OffsetDateTime::now_utc();
        let expires_at = match self.expires_in {
            None => None,
            Some(lifetime) => Some(
                time::Duration::try_from(lifetime)
                    .ok()
                    .filter(|_| lifetime <= MAX_LIFETIME)
                    .and_then(|lifetime| now.checked_add(lifetime))
                    .ok_or_else(|| {
                        Error::invalid_input(format!(
                            "a token may live {} days at most, not {} seconds: give a shorter lifetime, or none (until revoked)",
                            MAX_LIFETIME.as_secs() / 86_400,
                            lifetime.as_secs()
                        ))
                    })?,
            ),
        };
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("rrt_{}", hex::encode(secret));
        let stored = Token {
            id: hex::encode(&secret[..4]),
            name: self.name.clone(),
            organization: self.organization.clone(),
            right: self.right,
            repositories: self.repositories.clone(),
            sha256: token_hash(&token),
            created_at: Some(now),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        Ok((token, stored))
    }
}

/// Hex sha256 of a token: what the token file and the database store.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The token file inside a data directory.
pub fn tokens_path(data: &Path) -> PathBuf {
    data.join("tokens.json")
}

/// Times of last use are kept to this precision: a token in use is written at most once
/// a minute.
pub const LAST_USED_PRECISION: Duration = Duration::from_secs(60);

/// The file's identity: a rewrite renames a new file into place, so a new inode (or size,
/// or time) says it changed.
type Stamp = Option<(u64, u64, std::time::SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.ino(), m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)))
}

fn read(path: &Path) -> Result<(Stamp, HashMap<String, Token>)> {
    let stamp = stamp(path);
    let list: Vec<Token> = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::msg(format!("{} is not a token file: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::msg(format!("reading {}: {e}", path.display()))),
    };
    Ok((stamp, list.into_iter().map(|t| (t.sha256.clone(), t)).collect()))
}

/// The tokens stored in a data directory's token file, with the times they were last
/// used.
pub(crate) fn stored(data: &Path) -> Result<Vec<Token>> {
    let uses = read_uses(data);
    let mut tokens: Vec<Token> = read(&tokens_path(data))?.1.into_values().collect();
    for token in &mut tokens {
        token.last_used_at = token.last_used_at.max(uses.get(&token.id).copied());
    }
    tokens.sort_by(|a, b| (&a.organization, &a.id).cmp(&(&b.organization, &b.id)));
    Ok(tokens)
}

fn uses_path(data: &Path) -> PathBuf {
    data.join("token-uses.json")
}

/// When each token (by id) was last used, as the server last wrote it.
fn read_uses(data: &Path) -> HashMap<String, OffsetDateTime> {
    #[derive(Deserialize)]
    struct Use {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    }
    let uses: HashMap<String, Use> =
        std::fs::read(uses_path(data)).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
    uses.into_iter().map(|(id, u)| (id, u.at)).collect()
}

/// The tokens of a data directory, as the server sees them.
///
/// Every lookup checks whether the token file changed (one `stat`), and reads it again
/// when it did: a token revoked by `runner-registry token revoke` is refused from the
/// next request on, with no cache to outlive it.
#[derive(Debug)]
pub struct Tokens {
    data: PathBuf,
    loaded: RwLock<(Stamp, HashMap<String, Token>)>,
    /// When each token was last used, by id; written to `token-uses.json` at most once
    /// per [`LAST_USED_PRECISION`](crate::LAST_USED_PRECISION) per token.
    uses: Mutex<HashMap<String, OffsetDateTime>>,
    /// Held while `token-uses.json` is written: two writes at once would share its
    /// temporary file.
    writing: Mutex<()>,
}

impl Tokens {
    /// The tokens of `data` (none yet is fine: create one with `runner-registry token create`).
    pub fn load(data: &Path) -> Result<Tokens> {
        Ok(Tokens {
            loaded: RwLock::new(read(&tokens_path(data))?),
            data: data.to_path_buf(),
            uses: Mutex::new(read_uses(data)),
            writing: Mutex::new(()),
        })
    }

    /// The stored token matching `presented`, if any (revoked and expired ones too: the
    /// caller says why it refuses them).
    pub fn find(&self, presented: &str) -> Option<Token> {
        let hash = token_hash(presented);
        let path = tokens_path(&self.data);
        let now = stamp(&path);
        if self.loaded.read().unwrap_or_else(|p| p.into_inner()).0 != now {
            if let Ok(fresh) = read(&path) {
                *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = fresh;
            }
        }
        let mut token = self.loaded.read().unwrap_or_else(|p| p.into_inner()).1.get(&hash).cloned()?;
        let uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
        token.last_used_at = token.last_used_at.max(uses.get(&token.id).copied());
        Some(token)
    }

    /// Records that `token` was used now; returns whether the uses should be written
    /// ([`Tokens::write_uses`]): when this token's last use is older than
    /// [`LAST_USED_PRECISION`](crate::LAST_USED_PRECISION), so the file is written at most
    /// once a minute per token in use.
    pub fn used(&self, token: &Token) -> bool {
        let now = OffsetDateTime::now_utc();
        let mut uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
        let stale = uses.get(&token.id).is_none_or(|at| now - *at >= LAST_USED_PRECISION);
        if stale {
            uses.insert(token.id.clone(), now);
        }
        stale
    }

    /// Writes the times of last use to `token-uses.json` (renamed into place).
    pub fn write_uses(&self) -> Result<()> {
        // Held from the snapshot to the rename, so a later snapshot is never overwritten by
        // an earlier one.
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        #[derive(Serialize)]
        struct Use {
            #[serde(with = "time::serde::rfc3339")]
            at: OffsetDateTime,
        }
        let uses: HashMap<String, Use> = {
            let uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
            uses.iter().map(|(id, at)| (id.clone(), Use { at: *at })).collect()
        };
        let json = serde_json::to_vec_pretty(&uses).expect("uses serialize");
        let (tmp, path) = (self.data.join(".token-uses.json.tmp"), uses_path(&self.data));
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::msg(format!("writing {}: {e}", path.display())))
    }

    /// Creates a token and returns it; only its hash is stored.
    pub fn create(data: &Path, new: &NewToken) -> Result<(String, Token)> {
        let (secret, stored) = new.mint()?;
        change(data, |list| {
            list.push(stored.clone());
            Ok(())
        })?;
        Ok((secret, stored))
    }

    /// Revokes the token with id `id` (of `organization`, when given), for good; returns
    /// it. Revoking a revoked token changes nothing.
    pub fn revoke(data: &Path, organization: Option<&str>, id: &str) -> Result<Token> {
        let mut revoked = None;
        change(data, |list| {
            let token = list
                .iter_mut()
                .find(|t| t.id == id && organization.is_none_or(|o| t.organization == o))
                .ok_or_else(|| no_such_token(id))?;
            token.revoked_at = token.revoked_at.or(Some(OffsetDateTime::now_utc()));
            revoked = Some(token.clone());
            Ok(())
        })?;
        Ok(revoked.expect("set by the change"))
    }
}

/// The error for a token id that names no token.
pub(crate) fn no_such_token(id: &str) -> Error {
    Error::NotFound {
        what: "token",
        message: format!("no token has id `{id}` (`runner-registry token list` shows them)"),
    }
}

/// Changes a data directory's token file with `edit`, holding `tokens.lock` so that two
/// commands changing tokens at once both land; the file is rewritten whole, fsynced and
/// renamed into place, so a server reads either the old list or the new one.
fn change(data: &Path, edit: impl FnOnce(&mut Vec<Token>) -> Result<()>) -> Result<()> {
    std::fs::create_dir_all(data).map_err(|e| Error::msg(format!("creating {}: {e}", data.display())))?;
    let lock_path = data.join("tokens.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::msg(format!("opening {}: {e}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::msg(format!("locking {}: {e}", lock_path.display())))?;
    let path = tokens_path(data);
    let mut list: Vec<Token> = read(&path)?.1.into_values().collect();
    edit(&mut list)?;
    list.sort_by(|a, b| a.id.cmp(&b.id));
    let json = serde_json::to_vec_pretty(&list).expect("tokens serialize");
    let tmp = data.join(".tokens.json.tmp");
    let written = (|| {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data)?.sync_all()
    })();
    written.map_err(|e| Error::msg(format!("writing {}: {e}", path.display())))
}

/// Adds `tokens` (stored forms) to a data directory's token file, except those it has
/// (by id or hash), whose revocations it takes; returns how many were added.
pub(crate) fn merge(data: &Path, tokens: Vec<Token>) -> Result<usize> {
    let mut added = 0;
    change(data, |list| {
        for token in tokens {
            match list.iter_mut().find(|t| t.id == token.id || t.sha256 == token.sha256) {
                Some(held) => held.revoked_at = held.revoked_at.or(token.revoked_at),
                None => {
                    list.push(token);
                    added += 1;
                }
            }
        }
        Ok(())
    })?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(right: Right, repositories: &[&str]) -> NewToken {
        NewToken {
            organization: "acme".into(),
            name: "ci".into(),
            right,
            repositories: repositories.iter().map(|r| r.to_string()).collect(),
            expires_in: None,
        }
    }

    #[test]
    fn rights_include_the_ones_before_them() {
        assert!(Right::Admin.allows(Right::Write) && Right::Admin.allows(Right::Read));
        assert!(Right::Write.allows(Right::Read) && !Right::Write.allows(Right::Admin));
        assert!(!Right::Read.allows(Right::Write));
        for right in [Right::Read, Right::Write, Right::Admin] {
            assert_eq!(Right::from_access(right.access()), right);
        }
    }

    #[test]
    fn a_token_covers_the_repositories_its_globs_match() {
        let (_, all) = new(Right::Write, &[]).mint().unwrap();
        assert!(all.covers("iris") && all.covers("digits"));
        let (_, some) = new(Right::Write, &["iris", "vision-*"]).mint().unwrap();
        assert!(some.covers("iris") && some.covers("vision-large"));
        assert!(!some.covers("digits") && !some.covers("iris2"));
    }

    #[test]
    fn revoked_and_expired_tokens_say_so() {
        let (_, mut token) = new(Right::Read, &[]).mint().unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(token.state(now), TokenState::Valid);
        token.expires_at = Some(now - Duration::from_secs(1));
        assert!(matches!(token.state(now), TokenState::Expired(_)));
        token.revoked_at = Some(now);
        assert_eq!(token.state(now), TokenState::Revoked(now));
    }

    #[test]
    fn names_and_globs_are_checked_when_minting() {
        let mut bad = new(Right::Read, &[]);
        bad.name = "has space".into();
        assert!(bad.mint().unwrap_err().to_string().contains("token name"));
        assert!(new(Right::Read, &["[oops"]).mint().unwrap_err().to_string().contains("repository glob"));
        // Found by schemathesis: a lifetime past the calendar was a panic (500).
        for seconds in [698_506_232_965_399, u64::MAX, MAX_LIFETIME.as_secs() + 1] {
            let far = NewToken { expires_in: Some(Duration::from_secs(seconds)), ..new(Right::Read, &[]) };
            assert!(far.mint().unwrap_err().to_string().contains("days at most"), "{seconds}");
        }
        let longest = NewToken { expires_in: Some(MAX_LIFETIME), ..new(Right::Read, &[]) };
        assert!(longest.mint().unwrap().1.expires_at.is_some());
    }

    #[test]
    fn a_token_file_from_before_the_life_cycle_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"[{"id": "ab12cd34", "organization": "acme", "right": "write", "sha256": "00"}]"#;
        std::fs::write(tokens_path(dir.path()), old).unwrap();
        let tokens = stored(dir.path()).unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!((tokens[0].right, tokens[0].label(), tokens[0].expires_at), (Right::Write, "ab12cd34", None));
        assert_eq!(tokens[0].state(OffsetDateTime::now_utc()), TokenState::Valid);
    }

    #[test]
    fn each_token_in_use_is_written_down_at_most_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, ci) = Tokens::create(dir.path(), &new(Right::Write, &[])).unwrap();
        let (_, other) = Tokens::create(dir.path(), &new(Right::Read, &[])).unwrap();
        let server = Tokens::load(dir.path()).unwrap();
        assert!(server.used(&ci), "a first use is written");
        assert!(!server.used(&ci), "again within the minute: not");
        assert!(server.used(&other), "another token's first use is written too");
        server.write_uses().unwrap();
        let listed = stored(dir.path()).unwrap();
        assert!(listed.iter().all(|t| t.last_used_at.is_some()), "{listed:?}");
        assert!(server.find(&secret).unwrap().last_used_at.is_some());
    }

    #[test]
    fn a_revoked_token_is_seen_revoked_by_a_running_server_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, token) = Tokens::create(dir.path(), &new(Right::Write, &[])).unwrap();
        let server = Tokens::load(dir.path()).unwrap();
        assert_eq!(server.find(&secret).unwrap().state(OffsetDateTime::now_utc()), TokenState::Valid);
        Tokens::revoke(dir.path(), None, &token.id).unwrap();
        assert!(matches!(server.find(&secret).unwrap().state(OffsetDateTime::now_utc()), TokenState::Revoked(_)));
        assert!(Tokens::revoke(dir.path(), Some("other"), &token.id).is_err(), "another organization's id is unknown");
        assert!(Tokens::revoke(dir.path(), None, "nope").unwrap_err().to_string().contains("token list"));
    }
}
