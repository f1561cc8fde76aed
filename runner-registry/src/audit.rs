//! The audit log: one entry for every change (a number taken, content uploaded, a model
//! committed or deleted, an alias moved, a token created or revoked, gc, import,
//! export), naming who made it, when, and from which address. Appended, never rewritten:
//! a table in PostgreSQL, an fsynced file of JSON lines in the directory backend.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::tokens::Token;

/// What a change was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A model number taken (`POST .../models`).
    Reserve,
    /// A reservation kept alive (`PUT .../reservation`).
    KeepAlive,
    /// A reservation given back (`DELETE .../reservation`).
    Discard,
    /// Content uploaded (`PUT` or `POST .../blobs`).
    Upload,
    /// A model committed: ready (`PUT .../manifest`).
    Commit,
    /// A model deleted.
    DeleteModel,
    /// A repository deleted with its models.
    DeleteRepository,
    /// An alias moved or created.
    SetAlias,
    /// An alias deleted.
    DeleteAlias,
    /// A token created.
    CreateToken,
    /// A token revoked.
    RevokeToken,
    /// Garbage collected.
    Gc,
    /// A directory registry imported.
    Import,
    /// The registry (or part of it) exported.
    Export,
}

impl Action {
    /// Its name, as entries and `runner-registry audit` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reserve => "reserve",
            Action::KeepAlive => "keep_alive",
            Action::Discard => "discard",
            Action::Upload => "upload",
            Action::Commit => "commit",
            Action::DeleteModel => "delete_model",
            Action::DeleteRepository => "delete_repository",
            Action::SetAlias => "set_alias",
            Action::DeleteAlias => "delete_alias",
            Action::CreateToken => "create_token",
            Action::RevokeToken => "revoke_token",
            Action::Gc => "gc",
            Action::Import => "import",
            Action::Export => "export",
        }
    }

    /// Back from [`Action::as_str`].
    pub fn parse(name: &str) -> Option<Action> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a change: a token, anyone (a server without auth), or an operator at the
/// registry's storage (the `runner-registry` admin commands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// The token's id; `anonymous` without auth; `operator` for an admin command.
    pub token_id: String,
    /// The token's name (or id); the user running an admin command.
    pub token_name: String,
}

impl Who {
    /// A request made with `token`.
    pub fn token(token: &Token) -> Who {
        Who { token_id: token.id.clone(), token_name: token.label().to_string() }
    }

    /// A request to a server without auth.
    pub fn anonymous() -> Who {
        Who { token_id: "anonymous".into(), token_name: "anonymous".into() }
    }

    /// An admin command run at the storage by the operating system user `$USER`.
    pub fn operator() -> Who {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        Who { token_id: "operator".into(), token_name: user }
    }

    /// How alias history names who moved an alias (`token ID`, or `anonymous`).
    pub fn by(&self) -> String {
        match self.token_id.as_str() {
            "anonymous" | "operator" => self.token_id.clone(),
            id => format!("token {id}"),
        }
    }
}

/// One change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The organization changed; `*` for a change of the whole registry (gc, import,
    /// export of everything).
    pub organization: String,
    /// Who.
    #[serde(flatten)]
    pub who: Who,
    /// What.
    pub action: Action,
    /// The repository changed, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// What exactly: `iris:3`, `prod -> 4`, a content's sha256 and size, a token's id.
    pub target: String,
    /// The client's address, for a change made over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl AuditEntry {
    /// An entry made now.
    pub fn now(who: &Who, organization: &str, action: Action, repository: Option<&str>, target: String) -> AuditEntry {
        AuditEntry {
            at: OffsetDateTime::now_utc(),
            organization: organization.to_string(),
            who: who.clone(),
            action,
            repository: repository.map(str::to_string),
            target,
            address: None,
        }
    }

    /// The same entry, made from `address`.
    pub fn from_address(self, address: Option<std::net::SocketAddr>) -> AuditEntry {
        AuditEntry { address: address.map(|a| a.ip().to_string()), ..self }
    }
}

/// Which entries to read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Only this organization's (and, with it, not the registry-wide ones).
    pub organization: Option<String>,
    /// Only changes of this repository.
    pub repository: Option<String>,
    /// Only changes at or after this time.
    pub since: Option<OffsetDateTime>,
    /// The newest this many, at most (oldest first still); `None`: all.
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Whether `entry` is one of those asked for.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.organization.as_ref().is_none_or(|o| *o == entry.organization)
            && self.repository.as_ref().is_none_or(|r| entry.repository.as_ref() == Some(r))
            && self.since.is_none_or(|since| entry.at >= since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_it_was_written() {
        let who = Who { token_id: "ab12cd34".into(), token_name: "ci".into() };
        let entry = AuditEntry::now(&who, "acme", Action::SetAlias, Some("iris"), "prod -> 4".into())
            .from_address(Some("10.0.0.7:5000".parse().unwrap()));
        let line = serde_json::to_string(&entry).unwrap();
        assert!(line.contains(r#""action":"set_alias""#) && line.contains(r#""token_id":"ab12cd34""#), "{line}");
        assert_eq!(serde_json::from_str::<AuditEntry>(&line).unwrap(), entry);
        assert_eq!(entry.address.as_deref(), Some("10.0.0.7"));
        for action in [Action::Reserve, Action::Commit, Action::RevokeToken, Action::Export] {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("nope"), None);
    }

    #[test]
    fn a_query_picks_by_organization_repository_and_time() {
        let who = Who::anonymous();
        let entry = AuditEntry::now(&who, "acme", Action::Commit, Some("iris"), "iris:1".into());
        assert!(AuditQuery::default().matches(&entry));
        assert!(AuditQuery { repository: Some("iris".into()), ..Default::default() }.matches(&entry));
        assert!(!AuditQuery { repository: Some("digits".into()), ..Default::default() }.matches(&entry));
        assert!(!AuditQuery { organization: Some("other".into()), ..Default::default() }.matches(&entry));
        let later = entry.at + time::Duration::seconds(1);
        assert!(!AuditQuery { since: Some(later), ..Default::default() }.matches(&entry));
    }
}
