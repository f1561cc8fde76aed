//! Compile-time behaviour of `#[runner]`: every hook combination compiles and runs
//! (`ui/pass`), and every misuse fails with the message in its `.stderr` (`ui/fail`).
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite` and read each one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
