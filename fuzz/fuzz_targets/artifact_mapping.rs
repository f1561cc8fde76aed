//! Artifact mappings (`local => remote`, `dir/* => remote/*`), against a small folder made
//! once: a mapping that is accepted plans only files inside that folder (no symbolic link
//! leads out), each to a valid volume path that is not reserved.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runner_core::{expand_artifact, validate_volume_path, RESERVED_FILES};

fn base() -> &'static PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::create_dir_all(dir.join("data/nested")).unwrap();
        std::fs::write(dir.join("weights.bin"), b"w").unwrap();
        std::fs::write(dir.join("data/a.txt"), b"a").unwrap();
        std::fs::write(dir.join("data/nested/b.txt"), b"b").unwrap();
        std::fs::canonicalize(dir).unwrap()
    })
}

fuzz_target!(|input: (&str, &str)| {
    let (local, remote) = input;
    // A local side may name any file of the user's machine (`/data/*`, `../shared/*`):
    // only mappings inside the fixture are fuzzed (the fuzzer found `//*`, which walks the
    // whole disk), so that every file planned must come from below it.
    if local.starts_with('/') || local.split('/').any(|part| part == "..") {
        return;
    }
    let base = base();
    let Ok(files) = expand_artifact(base, local, remote) else { return };
    for file in files {
        validate_volume_path(&file.volume_path)
            .unwrap_or_else(|e| panic!("{local:?} => {remote:?} planned {:?}: {e}", file.volume_path));
        assert!(
            !RESERVED_FILES.contains(&file.volume_path.as_str()),
            "{local:?} => {remote:?}: {:?}",
            file.volume_path
        );
        let local_file = std::fs::canonicalize(&file.local).unwrap();
        assert!(local_file.starts_with(base), "{local:?} => {remote:?} reads {}", local_file.display());
    }
});
