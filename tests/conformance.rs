//! The `Registry` conformance suite (runner-core's `conformance` feature) run against the
//! in-memory registry and the directory registry; the HTTP client runs it in
//! runner-registry's tests, against a real server.

use std::path::{Path, PathBuf};

use runner_core::registry::conformance::{self, Internals};
use runner_core::{FileEntry, LocalRegistry, MemoryRegistry};

/// Flips a bit in the middle of a stored file, keeping its size.
fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

fn blob_path(root: &Path, file: &FileEntry) -> PathBuf {
    root.join("blobs/sha256").join(&file.sha256[..2]).join(&file.sha256)
}

#[test]
fn the_memory_registry_conforms() {
    let registry = MemoryRegistry::new();
    let internals = Internals {
        stored_contents: &|| registry.blob_count(),
        corrupt: &|file| assert!(registry.corrupt(&file.sha256), "{} is not stored", file.sha256),
    };
    conformance::all(&registry, "default", &internals);
    // A second organization of the same registry starts empty: its repositories are its own.
    conformance::all(&registry, "acme", &internals);
}

#[test]
fn the_directory_registry_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let registry = LocalRegistry::open(&root).unwrap();
    conformance::all(
        &registry,
        "default",
        &Internals {
            stored_contents: &|| registry.blob_count().unwrap(),
            corrupt: &|file| flip_a_bit(&blob_path(&root, file)),
        },
    );
}
