//! Manifests as read from storage: one that is accepted writes back as JSON that reads as
//! the same manifest (with the same sha256), and every file in it has a valid path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner_core::{validate_volume_path, Manifest, ModelId};

fuzz_target!(|bytes: &[u8]| {
    let id = ModelId::new("default", "iris", 1).unwrap();
    let Ok(manifest) = Manifest::from_json(&id, bytes) else { return };
    let written = manifest.to_json();
    let again = Manifest::from_json(&id, &written).unwrap_or_else(|e| panic!("a manifest written back fails: {e}"));
    assert_eq!(again, manifest);
    assert_eq!(again.sha256(), manifest.sha256());
    for file in &manifest.files {
        validate_volume_path(&file.path).unwrap();
    }
});
