//! Remembers files' sha256 by identity (path, size, modification time, inode), so that
//! registering an unchanged 1 GiB checkpoint again does not read it again.
//!
//! Like git's index, an entry is trusted only when the file was last modified well before
//! the entry was recorded: a file rewritten within the same instant (same size and
//! timestamp) is hashed again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::digest::hash_file;
use crate::Result;

/// How much older than its entry a file's timestamp must be for the entry to be trusted.
const RACY: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize, PartialEq)]
struct Entry {
    size: u64,
    modified_ns: u128,
    inode: u64,
    device: u64,
    recorded_ns: u128,
    sha256: String,
}

/// A directory of remembered hashes.
#[derive(Debug, Clone)]
pub(crate) struct HashCache {
    dir: PathBuf,
}

fn nanos(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.ino(), meta.dev())
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

impl HashCache {
    pub(crate) fn new(dir: PathBuf) -> HashCache {
        HashCache { dir }
    }

    /// sha256 and size of `path`, from the cache when the file is provably unchanged.
    pub(crate) fn hash(&self, path: &Path) -> Result<(String, u64)> {
        let Some((key, meta)) = std::fs::canonicalize(path).ok().zip(std::fs::metadata(path).ok()) else {
            return hash_file(path);
        };
        let Ok(modified) = meta.modified() else { return hash_file(path) };
        let entry_path = self.dir.join(hex::encode(Sha256::digest(key.to_string_lossy().as_bytes())));
        let (inode, device) = identity(&meta);
        let matches = |e: &Entry| {
            e.size == meta.len()
                && e.modified_ns == nanos(modified)
                && (e.inode, e.device) == (inode, device)
                && e.modified_ns + RACY.as_nanos() < e.recorded_ns
        };
        if let Some(entry) = std::fs::read(&entry_path).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok()) {
            if matches(&entry) {
                return Ok((entry.sha256, entry.size));
            }
        }
        let recorded = SystemTime::now();
        let (sha256, size) = hash_file(path)?;
        let entry = Entry {
            size,
            modified_ns: nanos(modified),
            inode,
            device,
            recorded_ns: nanos(recorded),
            sha256: sha256.clone(),
        };
        // Best effort: a cache that cannot be written only costs a re-read next time.
        if std::fs::create_dir_all(&self.dir).is_ok() {
            if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(&self.dir) {
                if std::io::Write::write_all(&mut tmp, &serde_json::to_vec(&entry).expect("entries serialize")).is_ok()
                {
                    let _ = tmp.persist(&entry_path);
                }
            }
        }
        Ok((sha256, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_come_from_the_cache_and_changed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::new(dir.path().join("hashes"));
        let file = dir.path().join("weights.bin");
        std::fs::write(&file, b"first").unwrap();
        // Old enough to be trusted.
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let first = cache.hash(&file).unwrap();
        assert_eq!(first, hash_file(&file).unwrap());

        // Poison the entry: an identical file is answered from the cache.
        let entry_path = std::fs::read_dir(dir.path().join("hashes")).unwrap().next().unwrap().unwrap().path();
        let mut entry: Entry = serde_json::from_slice(&std::fs::read(&entry_path).unwrap()).unwrap();
        entry.sha256 = "0".repeat(64);
        std::fs::write(&entry_path, serde_json::to_vec(&entry).unwrap()).unwrap();
        assert_eq!(cache.hash(&file).unwrap().0, "0".repeat(64), "served from the cache");

        // Same size, but a new timestamp: hashed again.
        std::fs::write(&file, b"other").unwrap();
        assert_eq!(cache.hash(&file).unwrap(), hash_file(&file).unwrap());
    }

    #[test]
    fn a_file_rewritten_with_its_old_timestamp_right_after_hashing_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::new(dir.path().join("hashes"));
        let file = dir.path().join("racy.bin");
        std::fs::write(&file, b"aaaa").unwrap();
        let stamp = std::fs::metadata(&file).unwrap().modified().unwrap();
        cache.hash(&file).unwrap();
        // Same size, same timestamp, same inode: only the racy rule tells them apart.
        std::fs::write(&file, b"bbbb").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(stamp).unwrap();
        assert_eq!(cache.hash(&file).unwrap(), hash_file(&file).unwrap());
    }
}
