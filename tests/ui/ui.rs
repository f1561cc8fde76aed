//! Compile-time behaviour of `#[runner]`: every hook combination compiles and runs
//! (`pass/`), and every misuse fails with the message in its `.stderr` (`fail/`).
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite` and read each one.

#[test]
fn ui() {
    // trybuild links every program under pass/ into a target directory of its own
    // (target/tests/trybuild). Debug info is most of each binary (80 of 98 MB, std's and
    // the dependencies'), and nothing reads it there: without it the directory takes a
    // fraction of the disk, which CI ran out of. Cargo reads this from the environment
    // trybuild passes on; it changes only how trybuild's own build links.
    // This binary has this one test: no other thread reads the environment meanwhile.
    std::env::set_var("CARGO_PROFILE_DEV_STRIP", "debuginfo");
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
