//! Volume paths and names: a volume path that is accepted never leaves the volume (every
//! component is a plain name, so joining it to the volume's folder stays below it), and
//! an accepted name is one path component.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use runner_core::{validate_name, validate_volume_path};

fuzz_target!(|text: &str| {
    if validate_volume_path(text).is_ok() {
        let root = Path::new("/volume");
        let joined = root.join(text);
        assert!(joined.starts_with(root), "{text:?} leaves the volume: {}", joined.display());
        let components: Vec<Component> = Path::new(text).components().collect();
        assert!(!components.is_empty(), "{text:?} names nothing");
        for component in &components {
            assert!(matches!(component, Component::Normal(_)), "{text:?} has the component {component:?}");
        }
        assert_eq!(components.len(), text.split('/').count(), "{text:?} has empty or `.` components");
        assert!(!text.contains('\\') && !text.contains('\0'), "{text:?}");
    }
    if validate_name("repository", text).is_ok() {
        assert!(!text.is_empty() && !text.contains('/') && text != "." && text != "..", "{text:?}");
        let components: Vec<Component> = Path::new(text).components().collect();
        assert!(matches!(components.as_slice(), [Component::Normal(_)]), "{text:?}");
    }
});
