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
    #[cfg_attr(not(feature = "http-client"), allow(dead_code))]
    pub(crate) fn hash(&self, path: &Path) -> Result<(String, u64)> {
        if let Some(known) = self.cached(path) {
            return Ok(known);
        }
        let before = Seen::now(path);
        let (sha256, size) = hash_file(path)?;
        self.remember(path, before, &sha256, size);
        Ok((sha256, size))
    }

    /// The remembered sha256 and size of `path` when the file is provably unchanged since
    /// they were recorded; reads nothing of the file.
    pub(crate) fn cached(&self, path: &Path) -> Option<(String, u64)> {
        let seen = Seen::now(path)?;
        let entry = std::fs::read(self.entry_path(&seen.key)).ok()?;
        let entry = serde_json::from_slice::<Entry>(&entry).ok()?;
        let trusted = entry.size == seen.size
            && entry.modified_ns == seen.modified_ns
            && (entry.inode, entry.device) == (seen.inode, seen.device)
            && entry.modified_ns + RACY.as_nanos() < entry.recorded_ns;
        trusted.then_some((entry.sha256, entry.size))
    }

    /// Remembers that `path`, as `before` saw it (taken before its bytes were read), has
    /// this sha256. Best effort: a cache that cannot be written only costs a re-read.
    pub(crate) fn remember(&self, path: &Path, before: Option<Seen>, sha256: &str, size: u64) {
        let Some(before) = before else { return };
        // Still the file that was read: otherwise nothing is remembered.
        if Seen::now(path).as_ref() != Some(&before) || before.size != size {
            return;
        }
        let entry = Entry {
            size,
            modified_ns: before.modified_ns,
            inode: before.inode,
            device: before.device,
            recorded_ns: before.recorded_ns,
            sha256: sha256.to_string(),
        };
        if std::fs::create_dir_all(&self.dir).is_ok() {
            if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(&self.dir) {
                if std::io::Write::write_all(&mut tmp, &serde_json::to_vec(&entry).expect("entries serialize")).is_ok()
                {
                    let _ = tmp.persist(self.entry_path(&before.key));
                }
            }
        }
    }

    fn entry_path(&self, key: &Path) -> PathBuf {
        self.dir.join(hex::encode(Sha256::digest(key.to_string_lossy().as_bytes())))
    }
}

/// A file's identity at one moment: what an entry is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    key: PathBuf,
    size: u64,
    modified_ns: u128,
    inode: u64,
    device: u64,
    recorded_ns: u128,
}

impl PartialEq for Seen {
    /// The same file, unchanged (when it was looked at aside).
    fn eq(&self, other: &Seen) -> bool {
        (&self.key, self.size, self.modified_ns, self.inode, self.device)
            == (&other.key, other.size, other.modified_ns, other.inode, other.device)
    }
}

impl Seen {
    /// `path` as it is now; `None` when it cannot be identified (then nothing is cached).
    pub(crate) fn now(path: &Path) -> Option<Seen> {
        let recorded_ns = nanos(SystemTime::now());
        let key = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(path).ok()?;
        let (inode, device) = identity(&meta);
        Some(Seen { key, size: meta.len(), modified_ns: nanos(meta.modified().ok()?), inode, device, recorded_ns })
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
