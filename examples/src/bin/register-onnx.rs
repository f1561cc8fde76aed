//! `cargo run --features onnx --bin register-onnx -- model.onnx my-model`: registers an
//! ONNX file as it is, to be served by runner-onnx's generic runner (tensors by input name
//! as JSON, the KServe V2 protocol over HTTP and gRPC, V2 metadata from the graph).
//! `serve my-model:latest` (this crate's `serve`, built with the same feature) serves it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use runner_onnx::{register_onnx_model, OnnxModel};

/// Registers an ONNX graph (and the external-data files it names) into a registry.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The .onnx file; a `<file>.data` beside it (torch.onnx.export's external weights) is
    /// kept with it.
    file: PathBuf,

    /// The repository to register into, e.g. `my-model`.
    repository: String,

    /// Another file the graph names as external data, stored beside it (repeatable).
    #[arg(long = "with-file", value_name = "PATH")]
    with_files: Vec<PathBuf>,

    /// Registry: a directory (created when missing), or a registry server's URL (token
    /// from RUNNER_REGISTRY_TOKEN).
    #[arg(long, env = runner_core::REGISTRY_ENV, default_value = runner_core::DEFAULT_REGISTRY, value_name = "PATH|URL")]
    registry: String,

    /// Organization to register into.
    #[arg(long, env = "RUNNER_ORGANIZATION", value_name = "ORG")]
    organization: Option<String>,

    /// Re-register this existing model number instead of creating the next one.
    #[arg(long, value_name = "N")]
    number: Option<u64>,
}

fn main() -> ExitCode {
    runner_examples::link();
    let args = Args::parse();
    match register(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn register(args: &Args) -> runner_core::Result<()> {
    let mut model = OnnxModel::load(&args.file)?;
    for file in &args.with_files {
        model = model.with_file(file)?;
    }
    let signature = model.signature().clone();
    let mut builder = register_onnx_model(&args.repository, model);
    if let Some(organization) = &args.organization {
        builder = builder.organization(organization);
    }
    if let Some(number) = args.number {
        builder = builder.number(number);
    }
    let registry = runner_core::open_registry(&args.registry)?;
    let registered = builder.register(registry.as_ref())?;
    println!("registered {}", registered.id());
    for (what, specs) in [("input", &signature.inputs), ("output", &signature.outputs)] {
        for spec in specs {
            println!("  {what} {} {} {}", spec.name, spec.datatype, spec.describe_shape());
        }
    }
    println!("serve it: cargo run --release --features onnx --bin serve -- {}:latest", args.repository);
    Ok(())
}
