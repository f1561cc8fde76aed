//! How fast the registry browser opens a large repository: registers MODELS (default
//! 10,000) small models into one repository of a directory registry, then times page
//! loads against `runner-registry serve` (started by bench/pages.sh) side by side with the
//! JSON API's pages and its full listing. Prints medians and p90s over ROUNDS requests each.
//!
//! `pages --data DIR --models N` fills DIR; `pages --url URL --rounds R` measures.

use std::time::{Duration, Instant};

use runner_core::{register_model, LocalRegistry};
use runner_examples::sum::{SumModel, SumRunner};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn fill(dir: &str, models: u64) {
    let registry = LocalRegistry::open(dir).expect("opening the registry");
    let started = Instant::now();
    for n in 0..models {
        register_model::<SumRunner>("big")
            .model(SumModel { scale: (n % 7) as f64 })
            .requirements([format!("numpy=={}", n % 3)])
            .register(&registry)
            .expect("registering");
    }
    for repo in 0..200 {
        register_model::<SumRunner>(format!("repo-{repo:03}")).model(SumModel::plain()).register(&registry).unwrap();
    }
    println!(
        "registered {models} models into default/big and 200 one-model repositories in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn measure(url: &str, rounds: usize) {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let pages = [
        ("browser: repositories (201, first page)", "/orgs/default"),
        ("browser: repositories searched (?q=big)", "/orgs/default?q=big"),
        ("browser: models of big, newest page", "/orgs/default/big"),
        ("browser: models of big, page 100", "/orgs/default/big?page=100"),
        ("browser: models of big, oldest page", "/orgs/default/big?page=200"),
        ("browser: one model (manifest, files, changes)", "/orgs/default/big/5000"),
        ("API: GET .../repos/big/models?limit=50 (newest page)", "/v1/orgs/default/repos/big/models?limit=50"),
        (
            "API: GET .../repos/big/models?limit=50&before=5001",
            "/v1/orgs/default/repos/big/models?limit=50&before=5001",
        ),
        ("API: GET .../repos/big/models (every manifest)", "/v1/orgs/default/repos/big/models"),
    ];
    println!("| request | median | p90 | bytes |");
    println!("|---|---|---|---|");
    for (what, path) in pages {
        let mut times = Vec::with_capacity(rounds);
        let mut size = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            let response = http.get(format!("{url}{path}")).send().expect("request");
            assert!(response.status().is_success(), "{path}: {}", response.status());
            size = response.bytes().expect("body").len();
            times.push(started.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {what} | {:.1} ms | {:.1} ms | {size} |",
            ms(times[times.len() / 2]),
            ms(times[(times.len() * 9 / 10).min(times.len() - 1)])
        );
    }
}

fn main() {
    if let Some(dir) = arg("--data") {
        fill(&dir, arg("--models").map_or(10_000, |n| n.parse().expect("--models N")));
    } else if let Some(url) = arg("--url") {
        measure(&url, arg("--rounds").map_or(20, |n| n.parse().expect("--rounds N")));
    } else {
        eprintln!("usage: pages --data DIR [--models N] | pages --url URL [--rounds R]");
        std::process::exit(2);
    }
}
