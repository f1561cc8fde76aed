//! Model references (`org/repo:number|latest|alias`), as users type them: a reference
//! that parses prints as one that parses back to itself, and its names pass the name
//! rules on their own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner_core::{validate_alias, validate_name, ModelRef, Version};

fuzz_target!(|text: &str| {
    let Ok(reference) = text.parse::<ModelRef>() else { return };
    let printed = reference.to_string();
    let again: ModelRef =
        printed.parse().unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
    assert_eq!(again, reference, "{text:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed);
    validate_name("organization", &reference.organization).unwrap();
    validate_name("repository", &reference.repository).unwrap();
    match &reference.version {
        Version::Number(n) => assert!(*n >= 1),
        Version::Alias(alias) => validate_alias(alias).unwrap(),
        Version::Latest => {}
    }
});
