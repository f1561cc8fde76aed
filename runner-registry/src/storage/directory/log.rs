//! The directory's audit log: `audit.log` beside the registry, one JSON object a line,
//! opened for appending only. Each entry is one `write` of a whole line followed by
//! `fdatasync`, so an entry acknowledged is on disk, and writers in several processes
//! (the server, `token create`, `gc`) never interleave within a line (`O_APPEND` places
//! each write at the end atomically). Nothing rewrites the file; a line cut short by a
//! crash is the last one, and reading skips it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use runner_core::{Error, Result};

use crate::audit::{AuditEntry, AuditQuery};

/// The file, opened once per process.
#[derive(Debug)]
pub(super) struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl AuditLog {
    pub(super) fn at(data: &Path) -> AuditLog {
        AuditLog { path: data.join("audit.log"), file: Mutex::new(None) }
    }

    pub(super) fn append(&self, entry: &AuditEntry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).expect("an audit entry serializes");
        line.push(b'\n');
        let failed = |e: std::io::Error| Error::storing("the audit log", e);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            let mut opened = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(failed)?;
            // A line a crash cut short would swallow the next entry: end it first (an
            // empty line, if two processes both do, is skipped like the torn one).
            if !ends_a_line(&self.path).map_err(failed)? {
                opened.write_all(b"\n").map_err(failed)?;
            }
            *file = Some(opened);
        }
        let file = file.as_mut().expect("opened above");
        file.write_all(&line).map_err(failed)?;
        file.sync_data().map_err(failed)
    }

    pub(super) fn read(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::msg(format!("reading {}: {e}", self.path.display()))),
        };
        let mut entries: Vec<AuditEntry> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<AuditEntry>(line).ok())
            .filter(|entry| query.matches(entry))
            .collect();
        if let Some(limit) = query.limit {
            entries.drain(..entries.len().saturating_sub(limit));
        }
        Ok(entries)
    }
}

/// Whether the file is empty or ends with a newline.
fn ends_a_line(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, Who};

    #[test]
    fn entries_append_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::at(dir.path());
        let who = Who::anonymous();
        for n in 1..=3 {
            log.append(&AuditEntry::now(&who, "acme", Action::Commit, Some("iris"), format!("iris:{n}"))).unwrap();
        }
        // Another process appending (a second handle), then a crash mid-line.
        AuditLog::at(dir.path()).append(&AuditEntry::now(&who, "acme", Action::Gc, None, "gc".into())).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("audit.log"))
            .unwrap()
            .write_all(b"{\"at\":")
            .unwrap();
        let all = log.read(&AuditQuery::default()).unwrap();
        assert_eq!(all.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["iris:1", "iris:2", "iris:3", "gc"]);
        // The next process to append ends the torn line first: its entry is kept whole.
        AuditLog::at(dir.path()).append(&AuditEntry::now(&who, "acme", Action::Gc, None, "after".into())).unwrap();
        let all = log.read(&AuditQuery::default()).unwrap();
        assert_eq!(all.last().unwrap().target, "after");
        assert_eq!(all.len(), 5);
        let newest = log.read(&AuditQuery { limit: Some(2), repository: Some("iris".into()), ..Default::default() });
        assert_eq!(newest.unwrap().iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["iris:2", "iris:3"]);
    }
}
