//! Names: organizations, repositories, model references and volume paths.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The organization used when none is given (the seed's `organization_name`).
pub const DEFAULT_ORGANIZATION: &str = "default";

/// Checks an organization or repository name: 1 to 64 characters of lowercase ASCII
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let bad = |message: &str| Error::InvalidName { what, value: name.to_string(), message: message.to_string() };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("must be 1 to 64 characters long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(bad("must start with a lowercase letter or a digit"));
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(bad(&format!("character `{c}` is not allowed; use lowercase letters, digits, `-`, `_` and `.`")));
    }
    if name.contains("..") {
        return Err(bad("must not contain `..`"));
    }
    Ok(())
}

/// One registered model: organization, repository and number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelId {
    /// The organization (the seed's `organization_name`).
    pub organization: String,
    /// The model repository.
    pub repository: String,
    /// The model number, from 1.
    pub number: u64,
}

impl ModelId {
    /// A model id, with its names checked.
    pub fn new(organization: &str, repository: &str, number: u64) -> Result<Self> {
        validate_name("organization", organization)?;
        validate_name("repository", repository)?;
        if number == 0 {
            return Err(Error::InvalidName {
                what: "model number",
                value: "0".into(),
                message: "model numbers start at 1".into(),
            });
        }
        Ok(ModelId { organization: organization.into(), repository: repository.into(), number })
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.organization != DEFAULT_ORGANIZATION {
            write!(f, "{}/", self.organization)?;
        }
        write!(f, "{}:{}", self.repository, self.number)
    }
}

/// Checks an alias name: the rules of [`validate_name`], starting with a lowercase letter
/// (so that it never looks like a model number), and not `latest`.
///
/// ```
/// use runner_core::validate_alias;
/// assert!(validate_alias("prod").is_ok());
/// assert!(validate_alias("canary-2").is_ok());
/// for bad in ["3", "2024.1", "latest", "Prod", ""] {
///     assert!(validate_alias(bad).is_err(), "{bad}");
/// }
/// ```
pub fn validate_alias(name: &str) -> Result<()> {
    validate_name("alias", name)?;
    let bad =
        |message: &str| Error::InvalidName { what: "alias", value: name.to_string(), message: message.to_string() };
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("must start with a lowercase letter, so that it cannot be read as a model number"));
    }
    if name == "latest" {
        return Err(bad("`latest` always means the highest ready number; choose another name"));
    }
    Ok(())
}

/// Which model of a repository a [`ModelRef`] points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Version {
    /// A given model number.
    Number(u64),
    /// The highest-numbered model that is ready.
    Latest,
    /// The model an alias of the repository points at (`iris:prod`).
    Alias(String),
}

/// A reference to a model as users type it: `repo:3`, `repo:latest`, `repo:prod` (an
/// alias), `org/repo:3`, or `repo` (the latest model).
///
/// ```
/// use runner_core::{ModelRef, Version};
/// let r: ModelRef = "acme/iris:3".parse().unwrap();
/// assert_eq!((r.organization.as_str(), r.repository.as_str(), r.version), ("acme", "iris", Version::Number(3)));
/// let latest: ModelRef = "iris".parse().unwrap();
/// assert_eq!(latest.version, Version::Latest);
/// let prod: ModelRef = "iris:prod".parse().unwrap();
/// assert_eq!(prod.version, Version::Alias("prod".into()));
/// assert!("iris:Prod".parse::<ModelRef>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// The organization (default: [`DEFAULT_ORGANIZATION`]).
    pub organization: String,
    /// The repository.
    pub repository: String,
    /// The model number or `latest`.
    pub version: Version,
}

impl FromStr for ModelRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |message: &str| {
            Error::InvalidName {
            what: "model reference",
            value: s.to_string(),
            message: format!(
                "{message}; write `repository:number`, `repository:latest`, `repository:alias` or `organization/repository:number`"
            ),
        }
        };
        let (path, version) = match s.rsplit_once(':') {
            Some((path, "latest")) => (path, Version::Latest),
            Some((path, n)) => match n.parse::<u64>() {
                Ok(0) => return Err(bad("model numbers start at 1")),
                Ok(n) => (path, Version::Number(n)),
                Err(_) if validate_alias(n).is_ok() => (path, Version::Alias(n.to_string())),
                Err(_) => return Err(bad(&format!("`{n}` is neither a model number nor an alias name"))),
            },
            None => (s, Version::Latest),
        };
        let (organization, repository) = match path.split_once('/') {
            Some((org, repo)) => (org, repo),
            None => (DEFAULT_ORGANIZATION, path),
        };
        validate_name("organization", organization).map_err(|e| bad(&e.to_string()))?;
        validate_name("repository", repository).map_err(|e| bad(&e.to_string()))?;
        Ok(ModelRef { organization: organization.into(), repository: repository.into(), version })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.organization != DEFAULT_ORGANIZATION {
            write!(f, "{}/", self.organization)?;
        }
        match &self.version {
            Version::Number(n) => write!(f, "{}:{n}", self.repository),
            Version::Latest => write!(f, "{}:latest", self.repository),
            Version::Alias(alias) => write!(f, "{}:{alias}", self.repository),
        }
    }
}

impl From<&ModelId> for ModelRef {
    fn from(id: &ModelId) -> Self {
        ModelRef {
            organization: id.organization.clone(),
            repository: id.repository.clone(),
            version: Version::Number(id.number),
        }
    }
}

/// Checks a path inside a model volume: relative, `/`-separated, no empty, `.` or `..`
/// components, no backslashes or NUL bytes, at most 1024 bytes.
pub fn validate_volume_path(path: &str) -> Result<()> {
    let bad = |message: &str| Error::InvalidName {
        what: "volume path",
        value: path.to_string(),
        message: message.to_string(),
    };
    if path.is_empty() {
        return Err(bad("is empty"));
    }
    if path.len() > 1024 {
        return Err(bad("is longer than 1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(bad("is absolute; volume paths are relative to the model volume"));
    }
    if path.contains('\\') || path.contains('\0') {
        return Err(bad("contains `\\` or a NUL byte; separate components with `/`"));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(bad("has an empty component (`//` or a trailing `/`)")),
            "." | ".." => return Err(bad("has a `.` or `..` component, which could escape the volume")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a sha256 in lowercase hex (64 characters, so it is also safe in a path).
pub fn validate_sha256(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "sha256",
            value: sha256.to_string(),
            message: "must be 64 lowercase hexadecimal characters".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["iris", "a", "my-model_2.v1", "0day"] {
            validate_name("repository", ok).unwrap();
        }
        for bad in ["", "Iris", "-x", "a/b", "a..b", "a b", &"x".repeat(65)] {
            assert!(validate_name("repository", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn model_refs_round_trip() {
        for s in ["iris:3", "iris:latest", "acme/iris:12", "iris:prod", "acme/iris:canary-2"] {
            assert_eq!(s.parse::<ModelRef>().unwrap().to_string(), s);
        }
        assert_eq!("default/iris:2".parse::<ModelRef>().unwrap().to_string(), "iris:2");
        for bad in ["iris:0", "iris:-1", ":3", "a/b/c:1", "../x:1", "iris:3.5", "iris:Prod", "iris:a b"] {
            let err = bad.parse::<ModelRef>().unwrap_err().to_string();
            assert!(err.contains("repository:number"), "{bad}: {err}");
        }
    }

    #[test]
    fn volume_paths() {
        for ok in ["model.bin", "a/b/c.txt", "checkpoints/epoch-1.pt", ".hidden"] {
            validate_volume_path(ok).unwrap();
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/", "./a", "a\\b"] {
            assert!(validate_volume_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
