//! The registry transfer benchmark's client: registers a model with one large artifact
//! into a registry (a directory or a server URL), or loads it back, and reports time,
//! file bytes sent or received, and this process's peak RSS.
//!
//! `transfer register REGISTRY FILE` / `transfer load REGISTRY MODEL CACHE`

use std::time::Instant;

use runner_core::{register_model, HttpRegistry, Registry};
use runner_examples::sum::{SumModel, SumRunner};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let started = Instant::now();
    let bytes = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "register", url, file] => {
            let registry = HttpRegistry::new(url, None).expect("registry");
            let registered = register_model::<SumRunner>("transfer")
                .model(SumModel { scale: 1.0 })
                .artifact(*file, "checkpoint.bin")
                .register(&registry)
                .expect("register");
            eprintln!("registered {}", registered.id());
            registry.bytes_sent()
        }
        [_, "load", url, model, cache] => {
            let registry = HttpRegistry::with_cache(url, None, std::path::Path::new(cache)).expect("registry");
            let id = registry.resolve(&model.parse().expect("model")).expect("resolve");
            let manifest = registry.manifest(&id).expect("manifest");
            registry.fetch(&manifest).expect("fetch");
            registry.bytes_received()
        }
        _ => {
            eprintln!("usage: transfer register URL FILE | transfer load URL MODEL CACHE");
            std::process::exit(2);
        }
    };
    println!(
        "{{\"seconds\": {:.3}, \"bytes\": {bytes}, \"peak_rss_mib\": {:.1}}}",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}
