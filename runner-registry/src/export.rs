//! `runner-registry export --to DIR`: the inverse of `import --from DIR`. A whole
//! registry, one organization or one repository, from either backend, into the directory
//! layout (`serve --data DIR`'s), with its aliases and their history and its tokens
//! (hashed, as they are stored): a backup of a shared registry that `import` restores,
//! or a copy to serve from one machine.
//!
//! Every content is checked against its sha256 as it is written, and a model is placed
//! only once all its contents are in, so an interrupted export leaves no half model;
//! run again, it skips what is already there and finishes.

use runner_core::registry::store::{DirectoryStore, Placed};
use runner_core::{Error, Result};
use serde::Serialize;

use crate::blocking::blocking;
use crate::storage::Source;
use crate::tokens::Token;

/// What [`export`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Exported {
    /// Contents written, each checked against its sha256.
    pub contents: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Contents the directory held already.
    pub reused: usize,
    /// Ready models placed.
    pub models: usize,
    /// Models the directory held already, with the same manifest.
    pub already: usize,
    /// Models whose number the directory holds with another manifest: left as they are.
    pub conflicts: Vec<String>,
    /// Repositories whose aliases (and history) were written.
    pub aliases: usize,
    /// Tokens written (hashed).
    pub tokens: usize,
}

/// Which part of a registry to export.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// One organization (every one when `None`).
    pub organization: Option<String>,
    /// One repository of it (every one when `None`).
    pub repository: Option<String>,
}

/// Copies what `selection` names from `source` into the directory registry `to`.
pub async fn export<S: Source + ?Sized>(source: &S, to: &DirectoryStore, selection: &Selection) -> Result<Exported> {
    let mut exported = Exported::default();
    let organizations = match &selection.organization {
        Some(organization) => vec![organization.clone()],
        None => source.organizations().await?,
    };
    for organization in &organizations {
        let repositories = match &selection.repository {
            Some(repository) => vec![repository.clone()],
            None => source.repositories(organization).await?,
        };
        for repository in &repositories {
            for manifest in source.ready_models(organization, repository).await? {
                for file in &manifest.files {
                    let (target, sha256) = (to.clone(), file.sha256.clone());
                    let size = file.size;
                    if blocking(move || target.content(&sha256, Some(size))).await?.is_some() {
                        exported.reused += 1;
                        continue;
                    }
                    let target = to.clone();
                    let mut writer = blocking(move || target.blob_writer()).await?;
                    source.copy_content(&file.sha256, &mut writer).await?;
                    let sha256 = file.sha256.clone();
                    blocking(move || writer.finish(&sha256)).await.map_err(|e| match e {
                        Error::Checksum { actual, .. } => Error::msg(format!(
                            "`{}` of {} should have sha256 {} but the registry holds content with {actual}; nothing of {} was exported (run `runner-registry verify --deep`)",
                            file.path, manifest.model, file.sha256, manifest.model
                        )),
                        other => other,
                    })?;
                    exported.contents += 1;
                    exported.bytes += file.size;
                }
                let (target, placing) = (to.clone(), manifest.clone());
                match blocking(move || target.place_model(&placing)).await? {
                    Placed::New => exported.models += 1,
                    Placed::Already => exported.already += 1,
                    Placed::Conflict => exported.conflicts.push(manifest.model.to_string()),
                }
            }
            let (aliases, history) = source.alias_book(organization, repository).await?;
            if aliases.is_empty() && history.is_empty() {
                continue;
            }
            let (target, org, repo) = (to.clone(), organization.clone(), repository.clone());
            if blocking(move || target.place_aliases(&org, &repo, &aliases, &history)).await? == Placed::New {
                exported.aliases += 1;
            }
        }
    }
    let tokens: Vec<Token> = source.list_tokens(selection.organization.as_deref()).await?;
    let root = to.registry().root().to_path_buf();
    exported.tokens = blocking(move || crate::tokens::merge(&root, tokens)).await?;
    Ok(exported)
}
