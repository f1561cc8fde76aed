//! `cargo run --bin register`: registers every example runner with its declared defaults
//! into the registry (`--registry`, `RUNNER_REGISTRY`, or `./.runner-registry`).

use std::process::ExitCode;

fn main() -> ExitCode {
    runner_examples::link();
    runner_core::cli::register_main()
}
