//! The access commands: `token create`, `token list`, `token revoke`, and `audit`. Each
//! change is itself recorded in the audit log, as made by the operator (`$USER`).

use time::OffsetDateTime;

use super::args::{StorageArgs, TokenCommand};
use crate::audit::{Action, AuditEntry, AuditQuery, Who};
use crate::storage::Storage;
use crate::tokens::{to_the_second, NewToken, Right};

/// Records a change an admin command made, as the operator.
pub(crate) async fn record(
    storage: &dyn Storage,
    organization: &str,
    action: Action,
    repository: Option<&str>,
    target: String,
) {
    storage.record_done(&AuditEntry::now(&Who::operator(), organization, action, repository, target)).await;
}

/// `token create`, `token list`, `token revoke`.
pub(crate) async fn token(command: TokenCommand) -> Result<(), String> {
    match command {
        TokenCommand::Create { storage, org, name, expires, repos, read: _, write, admin } => {
            let backend = open(&storage).await?;
            let right = match (write, admin) {
                (_, true) => Right::Admin,
                (true, _) => Right::Write,
                _ => Right::Read,
            };
            let new = NewToken { organization: org, name, right, repositories: repos, expires_in: expires };
            let (secret, token) = backend.create_token(&new).await.map_err(|e| e.to_string())?;
            record(&*backend, &token.organization, Action::CreateToken, None, token.describe()).await;
            println!("{secret}");
            Ok(())
        }
        TokenCommand::List { storage, org, json } => {
            let backend = open(&storage).await?;
            let tokens = backend.list_tokens(org.as_deref()).await.map_err(|e| e.to_string())?;
            let now = OffsetDateTime::now_utc();
            if json {
                for token in &tokens {
                    // The stored hash stays out of it too: a listing is for people and scripts.
                    let mut value = serde_json::to_value(token).expect("a token serializes");
                    value.as_object_mut().expect("an object").remove("sha256");
                    value["state"] = token.state(now).name().into();
                    println!("{value}");
                }
                return Ok(());
            }
            println!(
                "{:<9} {:<16} {:<12} {:<6} {:<16} {:<20} {:<20} {:<20} STATE",
                "ID", "NAME", "ORG", "RIGHT", "REPOS", "CREATED", "EXPIRES", "LAST USED"
            );
            for token in &tokens {
                let repos = if token.repositories.is_empty() { "*".to_string() } else { token.repositories.join(",") };
                println!(
                    "{:<9} {:<16} {:<12} {:<6} {:<16} {:<20} {:<20} {:<20} {}",
                    token.id,
                    token.label(),
                    token.organization,
                    token.right,
                    repos,
                    when(token.created_at, "-"),
                    when(token.expires_at, "never"),
                    when(token.last_used_at, "never"),
                    token.state(now).name()
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { storage, id } => {
            let backend = open(&storage).await?;
            let token = backend.revoke_token(None, &id).await.map_err(|e| e.to_string())?;
            record(&*backend, &token.organization, Action::RevokeToken, None, token.describe()).await;
            println!("revoked token {} ({}) of {}", token.id, token.label(), token.organization);
            Ok(())
        }
    }
}

/// `audit`.
pub(crate) async fn audit(storage: &StorageArgs, query: AuditQuery, json: bool) -> Result<(), String> {
    let backend = open(storage).await?;
    let entries = backend.audit(&query).await.map_err(|e| e.to_string())?;
    for entry in &entries {
        if json {
            println!("{}", serde_json::to_string(entry).expect("an entry serializes"));
        } else {
            println!(
                "{}  {:<12} {:<18} {:<18} {}  by {} ({}){}",
                when(Some(entry.at), "-"),
                entry.organization,
                entry.action.as_str(),
                entry.repository.as_deref().unwrap_or("-"),
                entry.target,
                entry.who.token_id,
                entry.who.token_name,
                entry.address.as_ref().map(|a| format!(" from {a}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn open(storage: &StorageArgs) -> Result<crate::storage::Backend, String> {
    storage.open(false).await.map_err(|e| e.to_string())
}

/// A time to the second, or `none`.
fn when(at: Option<OffsetDateTime>, none: &str) -> String {
    at.map_or_else(|| none.to_string(), to_the_second)
}
