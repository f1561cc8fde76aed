//! `runner-registry verify`: a scrub, for either backend. It reads every ready model's
//! manifest and checks that every file it names is stored with its size and readable by
//! the model's organization, and with `deep` that its bytes hash to its sha256. Each
//! content is checked once however many models name it, a few at a time.
//!
//! It is what an operator runs after an incident (a store restored from a backup, a
//! bucket someone cleaned by hand, a disk that failed): a registry that answers
//! `ready` for a model it can no longer serve is found here, not by a user's `serve`.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use runner_core::Result;
use serde::Serialize;

use crate::storage::{Found, Scrub};

/// One file of one model that cannot be served as its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The model (`org/repo:number`).
    pub model: String,
    /// The file's volume path.
    pub file: String,
    /// Its content's sha256, from the manifest.
    pub sha256: String,
    /// What is wrong.
    pub problem: String,
}

/// What [`verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// Ready models read.
    pub models: usize,
    /// Files they name.
    pub files: usize,
    /// Distinct contents checked.
    pub contents: usize,
    /// Bytes read and hashed (`deep` only).
    pub bytes_read: u64,
    /// Everything wrong, by model and file; empty for a sound registry.
    pub problems: Vec<Problem>,
}

/// Checks every file of every ready model in `store`, `concurrency` contents at a time;
/// `progress` is advanced by one for each content checked (its length is set here).
pub async fn verify<S: Scrub + ?Sized>(
    store: &S,
    deep: bool,
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> Result<Verified> {
    let manifests = store.manifests().await?;
    let mut verified = Verified { models: manifests.len(), ..Verified::default() };
    // Each content once, with the size the first manifest naming it gives.
    let mut contents: BTreeMap<&str, u64> = BTreeMap::new();
    let mut grants: BTreeSet<(&str, &str)> = BTreeSet::new();
    for manifest in &manifests {
        verified.files += manifest.files.len();
        for file in &manifest.files {
            contents.entry(&file.sha256).or_insert(file.size);
            grants.insert((&manifest.model.organization, &file.sha256));
        }
    }
    verified.contents = contents.len();
    progress.set_length(contents.len() as u64);
    let found: BTreeMap<&str, Found> = futures::stream::iter(contents.iter())
        .map(|(sha256, size)| async move {
            let found = store.check(sha256, *size, deep).await;
            progress.inc(1);
            found.map(|found| (*sha256, found))
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    if deep {
        verified.bytes_read = found
            .iter()
            .filter(|(_, found)| matches!(found, Found::Sound | Found::Corrupt(_)))
            .map(|(sha256, _)| contents[sha256])
            .sum();
    }
    let mut refused = BTreeSet::new();
    for (organization, sha256) in grants {
        if matches!(found[sha256], Found::Sound) && !store.granted(organization, sha256).await? {
            refused.insert((organization, sha256));
        }
    }
    for manifest in &manifests {
        let organization = manifest.model.organization.as_str();
        for file in &manifest.files {
            let problem = match &found[file.sha256.as_str()] {
                Found::Sound if refused.contains(&(organization, file.sha256.as_str())) => {
                    format!("stored, but organization `{organization}` may not read it (its downloads answer 404)")
                }
                Found::Sound => continue,
                Found::Missing(why) => format!("missing: {why}"),
                Found::Size(size) => format!("stored with {size} bytes, not the {} its manifest says", file.size),
                Found::Corrupt(actual) => format!("corrupt: its bytes hash to sha256 {actual}"),
            };
            verified.problems.push(Problem {
                model: manifest.model.to_string(),
                file: file.path.clone(),
                sha256: file.sha256.clone(),
                problem,
            });
        }
    }
    Ok(verified)
}
