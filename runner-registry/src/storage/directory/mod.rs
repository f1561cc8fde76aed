//! The directory backend: one server's registry in a directory, through runner-core's
//! [`DirectoryStore`] (the embedded registry's own code, so the two cannot drift), with
//! the token file beside it. Every call runs the blocking directory code on tokio's
//! blocking pool; uploads are streamed by `content`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runner_core::registry::store::{Collected, DirectoryStore};
use runner_core::registry::{Alias, AliasMove, AliasOptions, Expect};
use runner_core::{Expected, Manifest, ModelId, ModelStatus, ModelSummary, Registry, Result};
use time::OffsetDateTime;

use crate::blocking::blocking;
use crate::storage::{Access, Aliases, Collector, Models};
use crate::tokens::{NewToken, Token, TokenState, Tokens};

mod admin;
mod audit;
mod content;
mod log;

/// A registry in one directory (blobs, manifests, grants and the token file), owned by
/// one server.
#[derive(Debug, Clone)]
pub struct Directory {
    store: DirectoryStore,
    tokens: Arc<Tokens>,
    audit: Arc<log::AuditLog>,
}

impl Directory {
    /// The directory registry at `data` for the server that owns it, after sweeping what
    /// an earlier run left behind.
    pub fn serve(data: &Path) -> Result<Directory> {
        let store = DirectoryStore::open(data)?;
        // This process owns the directory: uploads cut off by a crash are dropped now.
        let removed = store.clean_tmp()?;
        if removed > 0 {
            tracing::info!(removed, "removed partial uploads left by an earlier run");
        }
        // Registries written before content was scoped: each organization reads what its
        // models name.
        let granted = store.grant_existing()?;
        if granted > 0 {
            tracing::info!(granted, "granted organizations the content their models name");
        }
        Directory::over(store, data)
    }

    /// A directory registry opened beside a server and registrations that may be running
    /// (`gc`, `verify`, `token`): what they are writing in `tmp/` is left alone.
    pub fn beside_others(data: &Path) -> Result<Directory> {
        Directory::over(DirectoryStore::open(data)?, data)
    }

    /// The backend over `store`, opened at `data`, with its tokens and audit log.
    fn over(store: DirectoryStore, data: &Path) -> Result<Directory> {
        Ok(Directory { store, tokens: Arc::new(Tokens::load(data)?), audit: Arc::new(log::AuditLog::at(data)) })
    }

    /// Runs `f` on the directory registry, on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&runner_core::LocalRegistry) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        blocking(move || f(store.registry())).await
    }
}

#[async_trait]
impl Models for Directory {
    async fn repositories(&self, organization: &str) -> Result<Vec<String>> {
        let organization = organization.to_string();
        self.run(move |r| r.repositories(&organization)).await
    }

    async fn organizations(&self) -> Result<Vec<String>> {
        self.run(|r| r.organizations()).await
    }

    async fn model_numbers(&self, organization: &str, repository: &str) -> Result<Vec<u64>> {
        let (organization, repository) = (organization.to_string(), repository.to_string());
        self.run(move |r| r.model_numbers(&organization, &repository)).await
    }

    async fn models(&self, organization: &str, repository: &str) -> Result<Vec<ModelSummary>> {
        let (organization, repository) = (organization.to_string(), repository.to_string());
        self.run(move |r| r.models(&organization, &repository)).await
    }

    async fn model(&self, id: &ModelId) -> Result<Option<ModelSummary>> {
        let id = id.clone();
        self.run(move |r| {
            Ok(match r.status(&id)? {
                None => None,
                Some(ModelStatus::Uploading) => {
                    Some(ModelSummary { id, status: ModelStatus::Uploading, manifest: None })
                }
                Some(status) => Some(ModelSummary { manifest: Some(r.manifest(&id)?), id, status }),
            })
        })
        .await
    }

    async fn create_model(&self, organization: &str, repository: &str) -> Result<ModelId> {
        let (organization, repository) = (organization.to_string(), repository.to_string());
        self.run(move |r| r.create_model(&organization, &repository)).await
    }

    async fn discard(&self, id: &ModelId) -> Result<()> {
        let id = id.clone();
        self.run(move |r| r.discard(&id)).await
    }

    async fn keep_alive(&self, id: &ModelId) -> Result<()> {
        let id = id.clone();
        self.run(move |r| Registry::keep_alive(r, &id)).await
    }

    async fn delete_model(&self, id: &ModelId) -> Result<()> {
        let id = id.clone();
        self.run(move |r| r.delete_model(&id)).await
    }

    async fn delete_repository(&self, organization: &str, repository: &str) -> Result<()> {
        let (organization, repository) = (organization.to_string(), repository.to_string());
        self.run(move |r| r.delete_repository(&organization, &repository)).await
    }

    async fn commit(&self, manifest: &Manifest, expected: Option<&Expected>) -> Result<()> {
        let (store, manifest, expected) = (self.store.clone(), manifest.clone(), expected.cloned());
        blocking(move || store.commit_manifest(&manifest, expected.as_ref())).await
    }
}

#[async_trait]
impl Aliases for Directory {
    async fn aliases(&self, organization: &str, repository: &str) -> Result<Vec<Alias>> {
        let (organization, repository) = (organization.to_string(), repository.to_string());
        self.run(move |r| r.aliases(&organization, &repository)).await
    }

    async fn set_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        number: u64,
        options: &AliasOptions,
        by: &str,
    ) -> Result<AliasMove> {
        let (organization, repository, alias) = (organization.to_string(), repository.to_string(), alias.to_string());
        let (options, by) = (options.clone(), by.to_string());
        self.run(move |r| r.set_alias_by(&organization, &repository, &alias, number, &options, &by)).await
    }

    async fn delete_alias(
        &self,
        organization: &str,
        repository: &str,
        alias: &str,
        expect: Expect,
        by: &str,
    ) -> Result<AliasMove> {
        let (organization, repository, alias) = (organization.to_string(), repository.to_string(), alias.to_string());
        let by = by.to_string();
        self.run(move |r| r.delete_alias_by(&organization, &repository, &alias, expect, &by)).await
    }

    async fn alias_history(&self, organization: &str, repository: &str, alias: Option<&str>) -> Result<Vec<AliasMove>> {
        let (organization, repository) = (organization.to_string(), repository.to_string());
        let alias = alias.map(str::to_string);
        self.run(move |r| r.alias_history(&organization, &repository, alias.as_deref())).await
    }
}

#[async_trait]
impl Access for Directory {
    async fn find_token(&self, presented: &str) -> Result<Option<Token>> {
        let token = self.tokens.find(presented);
        if let Some(token) = token.as_ref().filter(|t| t.state(OffsetDateTime::now_utc()) == TokenState::Valid) {
            if self.tokens.used(token) {
                let tokens = Arc::clone(&self.tokens);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = tokens.write_uses() {
                        tracing::warn!(error = %e, "cannot record when tokens were last used");
                    }
                });
            }
        }
        Ok(token)
    }

    async fn create_token(&self, new: &NewToken) -> Result<(String, Token)> {
        let (root, new) = (self.store.registry().root().to_path_buf(), new.clone());
        blocking(move || Tokens::create(&root, &new)).await
    }

    async fn list_tokens(&self, organization: Option<&str>) -> Result<Vec<Token>> {
        let (root, organization) = (self.store.registry().root().to_path_buf(), organization.map(str::to_string));
        let tokens = blocking(move || crate::tokens::stored(&root)).await?;
        Ok(tokens.into_iter().filter(|t| organization.as_ref().is_none_or(|o| *o == t.organization)).collect())
    }

    async fn revoke_token(&self, organization: Option<&str>, id: &str) -> Result<Token> {
        let (root, id) = (self.store.registry().root().to_path_buf(), id.to_string());
        let organization = organization.map(str::to_string);
        blocking(move || Tokens::revoke(&root, organization.as_deref(), &id)).await
    }
}

#[async_trait]
impl Collector for Directory {
    async fn collect_garbage(&self, grace: Duration, dry_run: bool) -> Result<Collected> {
        let store = self.store.clone();
        blocking(move || store.collect_garbage(grace, dry_run)).await
    }
}
