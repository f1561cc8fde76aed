//! Bearer tokens scoped to one organization with read or write rights, stored hashed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use rand::RngCore;
use runner_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// List and download.
    Read,
    /// Read, and register (create numbers, upload, commit, discard).
    Write,
}

impl Right {
    /// How the shared registry's `tokens.access` column writes it.
    pub(crate) fn access(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Write => "write",
        }
    }

    /// Back from [`Right::access`]; anything else reads only.
    pub(crate) fn from_access(access: &str) -> Right {
        if access == Right::Write.access() {
            Right::Write
        } else {
            Right::Read
        }
    }
}

/// A token as stored: never the token itself, only its sha256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    /// A short id to tell tokens apart.
    pub id: String,
    /// The organization it is for.
    pub organization: String,
    /// What it may do there.
    pub right: Right,
    /// Hex sha256 of the token.
    pub sha256: String,
}

/// The tokens of a data directory, reloaded when the file changes.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    loaded: RwLock<(Option<SystemTime>, HashMap<String, Token>)>,
}

/// Hex sha256 of a token: what the token file and the database store.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The token file inside a data directory.
pub fn tokens_path(data: &Path) -> PathBuf {
    data.join("tokens.json")
}

fn read(path: &Path) -> Result<(Option<SystemTime>, HashMap<String, Token>)> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let list: Vec<Token> = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::msg(format!("{} is not a token file: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::msg(format!("reading {}: {e}", path.display()))),
    };
    Ok((modified, list.into_iter().map(|t| (t.sha256.clone(), t)).collect()))
}

/// A fresh token for `organization` with `right`, and its stored form.
pub(crate) fn new_secret(organization: &str, right: Right) -> (String, Token) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("rrt_{}", hex::encode(secret));
    let stored = Token {
        id: hex::encode(&secret[..4]),
        organization: organization.to_string(),
        right,
        sha256: token_hash(&token),
    };
    (token, stored)
}

/// The tokens stored in a data directory's token file.
pub(crate) fn stored(data: &Path) -> Result<Vec<Token>> {
    Ok(read(&tokens_path(data))?.1.into_values().collect())
}

impl Tokens {
    /// The tokens of `data` (none yet is fine: create one with `runner-registry token create`).
    pub fn load(data: &Path) -> Result<Tokens> {
        let path = tokens_path(data);
        Ok(Tokens { loaded: RwLock::new(read(&path)?), path })
    }

    /// The stored token matching `presented`, if any.
    pub fn find(&self, presented: &str) -> Option<Token> {
        let hash = token_hash(presented);
        if let Some(token) = self.loaded.read().expect("token lock").1.get(&hash) {
            return Some(token.clone());
        }
        // Unknown: the file may have gained tokens since it was read.
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let mut loaded = self.loaded.write().expect("token lock");
        if modified != loaded.0 {
            if let Ok(fresh) = read(&self.path) {
                *loaded = fresh;
            }
        }
        loaded.1.get(&hash).cloned()
    }

    /// Creates a token for `organization` and returns it; only its hash is stored.
    pub fn create(data: &Path, organization: &str, right: Right) -> Result<String> {
        runner_core::validate_name("organization", organization)?;
        std::fs::create_dir_all(data).map_err(|e| Error::msg(format!("creating {}: {e}", data.display())))?;
        let path = tokens_path(data);
        let (_, existing) = read(&path)?;
        let (token, stored) = new_secret(organization, right);
        let mut list: Vec<Token> = existing.into_values().collect();
        list.push(stored);
        write(data, list)?;
        Ok(token)
    }
}

/// Replaces a data directory's token file with `list`, whole.
fn write(data: &Path, mut list: Vec<Token>) -> Result<()> {
    let path = tokens_path(data);
    list.sort_by(|a, b| a.id.cmp(&b.id));
    let json = serde_json::to_vec_pretty(&list).expect("tokens serialize");
    let tmp = data.join(".tokens.json.tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::msg(format!("writing {}: {e}", path.display())))
}

/// Adds `tokens` (stored forms) to a data directory's token file, except those it has
/// (by id or hash); returns how many were added.
pub(crate) fn merge(data: &Path, tokens: Vec<Token>) -> Result<usize> {
    std::fs::create_dir_all(data).map_err(|e| Error::msg(format!("creating {}: {e}", data.display())))?;
    let (_, existing) = read(&tokens_path(data))?;
    let mut list: Vec<Token> = existing.into_values().collect();
    let before = list.len();
    for token in tokens {
        if !list.iter().any(|t| t.id == token.id || t.sha256 == token.sha256) {
            list.push(token);
        }
    }
    let added = list.len() - before;
    if added > 0 {
        write(data, list)?;
    }
    Ok(added)
}
