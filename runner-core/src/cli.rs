//! Entry points of the `register` binary (and, later, `serve`): a user's binary is
//! `fn main() -> ExitCode { runner_core::cli::register_main() }` in a crate that links
//! the runners.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::catalog::{runners, RegisterOptions, RunnerEntry};
use crate::registry::{open_registry, registry_location, REGISTRY_ENV};
use crate::DEFAULT_REGISTRY;

/// Register models with the runners compiled into this binary, each with the defaults
/// declared in its `#[runner(...)]` (repository, requirements, artifacts, model builder).
#[derive(Debug, Parser)]
#[command(name = "register", version)]
pub struct RegisterArgs {
    /// Register only these runners (default: every runner in this binary).
    #[arg(value_name = "RUNNER")]
    pub runners: Vec<String>,

    /// Registry: a directory (created when missing).
    #[arg(long, env = REGISTRY_ENV, default_value = DEFAULT_REGISTRY, value_name = "PATH")]
    pub registry: String,

    /// Organization to register into.
    #[arg(long, env = "RUNNER_ORGANIZATION", value_name = "ORG")]
    pub organization: Option<String>,

    /// Repository to register into (default: each runner's declared repository; one runner only).
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,

    /// Re-register this existing model number instead of creating the next one (one runner only).
    #[arg(long, value_name = "N")]
    pub number: Option<u64>,

    /// List the runners in this binary and their defaults; register nothing.
    #[arg(long)]
    pub list: bool,
}

/// Runs the `register` command line. Prints what it registered; exits 1 if any
/// registration failed, 2 on bad arguments.
pub fn register_main() -> ExitCode {
    let args = RegisterArgs::parse();
    match register_command(&args, &mut std::io::stdout()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// The `register` command on parsed arguments, writing its report to `out`. Returns
/// whether every registration succeeded; `Err` for arguments that cannot be acted on.
pub fn register_command(args: &RegisterArgs, out: &mut dyn std::io::Write) -> Result<bool, String> {
    let all = runners();
    if let Some(pair) = all.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!(
            "two runners are named `{}` ({} and {}); give one another #[runner(name = ...)]",
            pair[0].name,
            (pair[0].rust_type)(),
            (pair[1].rust_type)()
        ));
    }
    let selected: Vec<&RunnerEntry> = if args.runners.is_empty() {
        all.clone()
    } else {
        let mut selected = Vec::new();
        for name in &args.runners {
            match all.iter().find(|r| r.name == name) {
                Some(entry) => selected.push(*entry),
                None => {
                    let names: Vec<&str> = all.iter().map(|r| r.name).collect();
                    return Err(format!("no runner named `{name}` in this binary (it has: {})", names.join(", ")));
                }
            }
        }
        selected
    };
    if selected.is_empty() {
        return Err("this binary contains no runners; link the crate that defines them".into());
    }
    let w = |e: std::io::Error| e.to_string();
    if args.list {
        writeln!(out, "{:<16} {:<16} {:<8} TYPE", "RUNNER", "REPOSITORY", "BUILDER").map_err(w)?;
        for entry in &selected {
            let builder = if (entry.has_builder)() { "yes" } else { "no" };
            writeln!(
                out,
                "{:<16} {:<16} {:<8} {}",
                entry.name,
                (entry.default_repository)(),
                builder,
                (entry.rust_type)()
            )
            .map_err(w)?;
        }
        return Ok(true);
    }
    if (args.number.is_some() || args.repository.is_some()) && selected.len() != 1 {
        return Err("--number and --repository apply to one runner: name it, e.g. `register iris --number 2`".into());
    }
    let location = registry_location(Some(&args.registry));
    let registry = open_registry(&location).map_err(|e| e.to_string())?;
    let options = RegisterOptions {
        number: args.number,
        organization: args.organization.clone(),
        repository: args.repository.clone(),
    };
    writeln!(out, "registry: {}", registry.location()).map_err(w)?;
    writeln!(out, "{:<16} {:<24} {:>6} {:>12} {:>9}", "RUNNER", "MODEL", "FILES", "BYTES", "SECONDS").map_err(w)?;
    let mut ok = true;
    for entry in selected {
        let started = Instant::now();
        match entry.register(registry.as_ref(), &options) {
            Ok(registered) => writeln!(
                out,
                "{:<16} {:<24} {:>6} {:>12} {:>9.3}",
                entry.name,
                registered.id().to_string(),
                registered.manifest.files.len(),
                registered.bytes(),
                started.elapsed().as_secs_f64()
            )
            .map_err(w)?,
            Err(e) => {
                ok = false;
                writeln!(out, "{:<16} FAILED: {e}", entry.name).map_err(w)?;
            }
        }
    }
    Ok(ok)
}
