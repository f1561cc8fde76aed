//! Test helper: registers one `sum` model from a separate process, so tests can race real
//! processes and kill one mid-upload.
//!
//! `registrar REGISTRY REPOSITORY [ARTIFACT]`: prints the model number it registered.

use runner_core::{register_model, LocalRegistry};
use runner_examples::sum::{SumModel, SumRunner};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, registry, repository, rest @ ..] = args.as_slice() else {
        eprintln!("usage: registrar REGISTRY REPOSITORY [ARTIFACT]");
        std::process::exit(2);
    };
    let registry = LocalRegistry::open(registry).expect("open the registry");
    let mut registration = register_model::<SumRunner>(repository.as_str()).model(SumModel { scale: 1.0 });
    if let Some(artifact) = rest.first() {
        registration = registration.artifact(artifact.as_str(), "data.bin");
    }
    match registration.register(&registry) {
        Ok(registered) => println!("{}", registered.id().number),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
