//! The registry's request and response bodies, and its commit preconditions: a body that
//! reads writes back as one that reads the same; a precondition read from headers writes
//! back as headers that read the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner_core::registry::protocol::{AliasQuery, Created, ErrorBody, Models, Precondition, SetAlias};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(bytes) else { return };
    let written = serde_json::to_vec(&value).unwrap();
    let again: T = serde_json::from_slice(&written)
        .unwrap_or_else(|e| panic!("{value:?} wrote {} which fails: {e}", String::from_utf8_lossy(&written)));
    assert_eq!(again, value);
}

fuzz_target!(|bytes: &[u8]| {
    round_trip::<SetAlias>(bytes);
    round_trip::<AliasQuery>(bytes);
    round_trip::<Created>(bytes);
    round_trip::<Models>(bytes);
    round_trip::<ErrorBody>(bytes);
    let text = String::from_utf8_lossy(bytes);
    let (none_match, if_match) = text.split_once('\n').unwrap_or((&text, ""));
    for (a, b) in [(Some(none_match), None), (None, Some(if_match)), (Some(none_match), Some(if_match))] {
        if let Some(expected) = Precondition::parse(a, b) {
            let (name, value) = Precondition::header(&expected);
            let again = match name {
                "if-none-match" => Precondition::parse(Some(&value), None),
                _ => Precondition::parse(None, Some(&value)),
            };
            assert_eq!(again, Some(expected), "{a:?} {b:?}");
        }
    }
});
