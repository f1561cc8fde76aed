//! `cargo run --bin serve -- iris:latest`: serves registered models over HTTP with the
//! example runners compiled in. `--help` lists the options.

use std::process::ExitCode;

fn main() -> ExitCode {
    runner_examples::link();
    runner_core::cli::serve_main()
}
