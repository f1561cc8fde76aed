//! Volumes: a model's files laid out by their volume paths, plus its manifest, the way
//! `load_model` reads them. Every backend builds them the same way: in a staging folder,
//! renamed into place whole, then checked file by file.

use std::fs;
use std::path::{Path, PathBuf};

use super::digest::hash_file;
use super::hashes::HashCache;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{FileEntry, Manifest, MANIFEST_FILE};
use crate::names::validate_volume_path;

/// The error for a file whose stored content is gone.
pub(crate) fn missing_content(manifest: &Manifest, file: &FileEntry) -> Error {
    Error::NotFound {
        what: "file",
        message: format!(
            "{}: the stored content of `{}` (sha256 {}) is missing; register the model again",
            manifest.model, file.path, file.sha256
        ),
    }
}

/// The volume of `manifest` at `volumes/SHA256-OF-MANIFEST`, built when missing: staged
/// in a folder of `staging_in` (`put` writes each file at the path it is given, and says
/// whether that content was checked against its sha256 just now), renamed into place
/// whole (a concurrent builder's copy is used when it won the race), then every file
/// checked against its size and sha256, so a volume written into since is caught too.
/// Content checked by `put` is not read again; with `hashes`, a file provably unchanged
/// since it was last hashed is not either (its sha256 is remembered by path, size, mtime
/// and inode, as for uploads), so loading a model a second time reads none of it.
pub(crate) fn build_volume(
    volumes: &Path,
    staging_in: &Path,
    manifest: &Manifest,
    hashes: Option<&HashCache>,
    mut put: impl FnMut(&FileEntry, &Path) -> Result<bool>,
) -> Result<PathBuf> {
    let mut checked = std::collections::BTreeSet::new();
    let manifest_bytes = manifest.to_json();
    let volume = volumes.join(manifest.sha256());
    if !volume.is_dir() {
        let staging = tempfile::Builder::new()
            .prefix("volume-")
            .tempdir_in(staging_in)
            .ctx("creating a folder in", staging_in)?;
        for file in &manifest.files {
            validate_volume_path(&file.path)?;
            let target = staging.path().join(&file.path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).ctx("creating", parent)?;
            }
            if put(file, &target)? {
                checked.insert(file.path.as_str());
            }
        }
        let manifest_path = staging.path().join(MANIFEST_FILE);
        fs::write(&manifest_path, &manifest_bytes).ctx("writing", &manifest_path)?;
        let staged = staging.keep();
        if let Err(e) = fs::rename(&staged, &volume) {
            // Another thread or process built the same volume first: use theirs.
            let _ = fs::remove_dir_all(&staged);
            if !volume.is_dir() {
                return Err(Error::io("creating", &volume, e));
            }
            checked.clear();
        }
    }
    for file in manifest.files.iter().filter(|file| !checked.contains(file.path.as_str())) {
        let path = volume.join(&file.path);
        let (sha256, size) = match hashes {
            Some(hashes) => hashes.hash(&path)?,
            None => hash_file(&path)?,
        };
        if sha256 != file.sha256 || size != file.size {
            return Err(Error::Checksum { path: file.path.clone(), expected: file.sha256.clone(), actual: sha256 });
        }
    }
    Ok(volume)
}
