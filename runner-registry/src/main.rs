//! `runner-registry`: the registry server and its admin commands ([`runner_registry::cli`]).

fn main() -> std::process::ExitCode {
    runner_registry::cli::run()
}
