//! `Range` headers: a part served is never empty and never past the content's end; only
//! a single `bytes=` range is ever served; past-the-end asks are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner_core::registry::protocol::{parse_range, ByteRange};

fuzz_target!(|input: (u64, &str)| {
    let (size, value) = input;
    match parse_range(value, size) {
        ByteRange::Part(start, end) => {
            assert!(start < end && end <= size, "{value:?} of {size} bytes gave {start}..{end}");
            assert!(value.trim().starts_with("bytes=") && !value.contains(','), "{value:?}");
        }
        ByteRange::Unsatisfiable => assert!(value.trim().starts_with("bytes="), "{value:?}"),
        ByteRange::Ignored => {}
    }
});
