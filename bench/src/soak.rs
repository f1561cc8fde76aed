//! The soak's load (`bench/soak.sh` starts the servers and calls it): mixed traffic at a
//! fixed concurrency against `serve` (good predictions, malformed bodies, wrong shapes,
//! oversize bodies, metrics scrapes, model info, unknown models) and `runner-registry`
//! (registrations of fresh models, ranged downloads, dedupe checks, listings), each
//! request checked against the one status it must get. Every 5 s it samples both
//! servers' RSS and open file descriptors from /proc.
//!
//! ```text
//! soak --serve URL --serve-pid PID --registry URL --registry-pid PID --token TOKEN
//!      [--seconds 600] [--warmup 60] [--concurrency 64]
//! ```
//!
//! Prints, per kind of request, how many were sent and how many got an unexpected status
//! (with the first few), then RSS and descriptors at the end of the warm-up, their range
//! after it, and their change (the target: within 5%). Exits 1 on any unexpected status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runner_core::{register_model, HttpRegistry, Registry};
use runner_examples::sum::{SumModel, SumRunner};
use serde_json::json;

/// One kind of request, its share of the traffic, and the status it must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    IrisPredict,
    SumPredict,
    MalformedJson,
    WrongShape,
    Oversize,
    UnknownModel,
    Metrics,
    ModelInfo,
    V2Ready,
    Register,
    RangedDownload,
    DedupeHit,
    DedupeMiss,
    ListModels,
}

/// How many of the soak's registrations stay in the registry.
const CHURN: u64 = 200;

const MIX: &[(Kind, u32, u16)] = &[
    (Kind::IrisPredict, 30, 200),
    (Kind::SumPredict, 10, 200),
    (Kind::MalformedJson, 5, 400),
    (Kind::WrongShape, 5, 422),
    (Kind::Oversize, 2, 413),
    (Kind::UnknownModel, 2, 404),
    (Kind::Metrics, 3, 200),
    (Kind::ModelInfo, 3, 200),
    (Kind::V2Ready, 3, 200),
    (Kind::Register, 3, 0),
    (Kind::RangedDownload, 8, 206),
    (Kind::DedupeHit, 5, 200),
    (Kind::DedupeMiss, 2, 404),
    (Kind::ListModels, 2, 200),
];

#[derive(Default)]
struct Tally {
    sent: u64,
    unexpected: u64,
    examples: Vec<String>,
}

struct Sample {
    at: Duration,
    rss_kib: [u64; 2],
    /// Open descriptors other than sockets (files, pipes, the event loop): what a leak of
    /// file handles grows. Sockets follow the connections the load holds at the moment.
    fds: [u64; 2],
    sockets: [u64; 2],
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (non-socket descriptors, sockets) open in `pid`.
fn fds(pid: u32) -> (u64, u64) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return (0, 0) };
    let (mut files, mut sockets) = (0, 0);
    for entry in dir.flatten() {
        match std::fs::read_link(entry.path()) {
            Ok(target) if target.to_string_lossy().starts_with("socket:") => sockets += 1,
            _ => files += 1,
        }
    }
    (files, sockets)
}

struct Setup {
    serve: String,
    registry: String,
    token: String,
    /// A blob every ranged download and dedupe hit asks for, and its size.
    blob: (String, u64),
    work: std::path::PathBuf,
}

async fn one(kind: Kind, http: &reqwest::Client, setup: &Arc<Setup>, n: u64) -> Result<u16, String> {
    let serve = &setup.serve;
    let registry = &setup.registry;
    let status = |r: reqwest::Result<reqwest::Response>| r.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
    let x = (n % 50) as f64 / 10.0 + 0.1;
    match kind {
        Kind::IrisPredict => status(
            http.post(format!("{serve}/models/iris/predict"))
                .json(&json!({"sepal_length": 5.0 + x, "sepal_width": 3.0, "petal_length": 1.0 + x, "petal_width": 0.2 + x / 3.0}))
                .send()
                .await,
        ),
        Kind::SumPredict => {
            status(http.post(format!("{serve}/models/sum/predict")).json(&json!({"values": [x, 2.0, -x]})).send().await)
        }
        Kind::MalformedJson => status(
            http.post(format!("{serve}/models/sum/predict"))
                .header("content-type", "application/json")
                .body("{\"values\": [1, 2")
                .send()
                .await,
        ),
        Kind::WrongShape => {
            status(http.post(format!("{serve}/models/iris/predict")).json(&json!({"sepal_length": 5.0})).send().await)
        }
        Kind::Oversize => status(
            http.post(format!("{serve}/models/sum/predict"))
                .header("content-type", "application/json")
                .body(format!("{{\"values\": [{}1]}}", "1,".repeat(60_000)))
                .send()
                .await,
        ),
        Kind::UnknownModel => status(http.post(format!("{serve}/models/nope/predict")).json(&json!({})).send().await),
        Kind::Metrics => status(http.get(format!("{serve}/metrics")).send().await),
        Kind::ModelInfo => status(http.get(format!("{serve}/models/iris")).send().await),
        Kind::V2Ready => status(http.get(format!("{serve}/v2/models/iris/ready")).send().await),
        Kind::RangedDownload => {
            let (sha, size) = &setup.blob;
            let start = n % (size / 2);
            status(
                http.get(format!("{registry}/v1/orgs/acme/blobs/{sha}"))
                    .bearer_auth(&setup.token)
                    .header("range", format!("bytes={start}-{}", start + 4095))
                    .send()
                    .await,
            )
        }
        Kind::DedupeHit => status(
            http.head(format!("{registry}/v1/orgs/acme/blobs/{}", setup.blob.0)).bearer_auth(&setup.token).send().await,
        ),
        Kind::DedupeMiss => status(
            http.head(format!("{registry}/v1/orgs/acme/blobs/{:064x}", n as u128 * 7919 + 1))
                .bearer_auth(&setup.token)
                .send()
                .await,
        ),
        Kind::ListModels => {
            status(http.get(format!("{registry}/v1/orgs/acme/repos/soak/models")).bearer_auth(&setup.token).send().await)
        }
        Kind::Register => {
            let setup = setup.clone();
            tokio::task::spawn_blocking(move || {
                let file = setup.work.join(format!("fresh-{n}.bin"));
                let content: Vec<u8> = (0..4096u64).map(|i| ((i * 31 + n * 7) % 251) as u8).collect();
                std::fs::write(&file, content).map_err(|e| e.to_string())?;
                let client = HttpRegistry::with_cache(&setup.registry, Some(setup.token.clone()), &setup.work.join("cache"))
                    .map_err(|e| e.to_string())?;
                let registered = register_model::<SumRunner>("soak")
                    .organization("acme")
                    .model(SumModel { scale: 1.0 })
                    .artifact(file.to_str().unwrap(), "data.bin")
                    .register(&client);
                let _ = std::fs::remove_file(&file);
                let registered = registered.map_err(|e| e.to_string())?;
                // Churn, not growth: the model registered CHURN registrations ago is
                // deleted, so the repository (and every listing of it) stays the same
                // size, as a soak's steady state must.
                let number = registered.id().number;
                if number > CHURN {
                    let old = runner_core::ModelId::new("acme", "soak", number - CHURN).map_err(|e| e.to_string())?;
                    match client.delete_model(&old) {
                        Ok(()) => {}
                        Err(e) if e.kind() == runner_core::ErrorKind::NotFound => {}
                        Err(e) => return Err(format!("deleting {old}: {e}")),
                    }
                }
                Ok(0)
            })
            .await
            .map_err(|e| e.to_string())?
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let need =
        |name: &str| option(name).unwrap_or_else(|| panic!("{name} is required; see the usage in bench/src/soak.rs"));
    let seconds: u64 = option("--seconds").map_or(600, |s| s.parse().unwrap());
    let warmup = Duration::from_secs(option("--warmup").map_or(60, |s| s.parse().unwrap()));
    let concurrency: usize = option("--concurrency").map_or(64, |s| s.parse().unwrap());
    let pids = [need("--serve-pid").parse::<u32>().unwrap(), need("--registry-pid").parse::<u32>().unwrap()];
    let work = tempfile::tempdir().unwrap();

    // One blob for the downloads and dedupe hits.
    let http = reqwest::Client::new();
    let registry = need("--registry");
    let token = need("--token");
    let blob: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&blob))
    };
    let put = http
        .put(format!("{registry}/v1/orgs/acme/blobs/{sha}"))
        .bearer_auth(&token)
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "uploading the soak's blob: {}", put.status());
    let setup = Arc::new(Setup {
        serve: need("--serve"),
        registry,
        token,
        blob: (sha, blob.len() as u64),
        work: work.path().to_path_buf(),
    });

    // One model first, so that listing the repository finds it from the start.
    one(Kind::Register, &http, &setup, 0).await.expect("a first registration");

    let total: u32 = MIX.iter().map(|(_, weight, _)| weight).sum();
    let tallies: Arc<Mutex<BTreeMap<Kind, Tally>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let (http, setup, tallies, stop) = (http.clone(), setup.clone(), tallies.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = task as u64 * 1_000_003;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut pick = (n.wrapping_mul(2654435761) % u64::from(total)) as u32;
                let &(kind, _, expected) = MIX
                    .iter()
                    .find(|(_, weight, _)| {
                        let hit = pick < *weight;
                        pick = pick.saturating_sub(*weight);
                        hit
                    })
                    .unwrap();
                let outcome = one(kind, &http, &setup, n).await;
                let mut tallies = tallies.lock().unwrap();
                let tally = tallies.entry(kind).or_default();
                tally.sent += 1;
                if outcome.as_ref() != Ok(&expected) {
                    tally.unexpected += 1;
                    if tally.examples.len() < 3 {
                        tally.examples.push(format!("{:?}", outcome));
                    }
                }
            }
        }));
    }
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let open = pids.map(fds);
        samples.push(Sample {
            at: started.elapsed(),
            rss_kib: pids.map(rss_kib),
            fds: open.map(|(files, _)| files),
            sockets: open.map(|(_, sockets)| sockets),
        });
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();

    let tallies = tallies.lock().unwrap();
    let (mut sent, mut unexpected) = (0, 0);
    println!("{:<16} {:>10} {:>8} {:>10}", "request", "sent", "per s", "unexpected");
    for (kind, tally) in tallies.iter() {
        println!(
            "{:<16} {:>10} {:>8.0} {:>10}",
            format!("{kind:?}"),
            tally.sent,
            tally.sent as f64 / elapsed,
            tally.unexpected
        );
        for example in &tally.examples {
            println!("    got {example}");
        }
        sent += tally.sent;
        unexpected += tally.unexpected;
    }
    println!("{:<16} {:>10} {:>8.0} {:>10}", "all", sent, sent as f64 / elapsed, unexpected);
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup).collect();
    if after.len() >= 4 {
        let quarter = |q: usize| after[(after.len() - 1) * q / 4];
        for (i, name) in ["serve", "runner-registry"].iter().enumerate() {
            let change = |pick: &dyn Fn(&Sample) -> u64| {
                let (from, to) = (pick(quarter(0)) as f64, pick(quarter(4)) as f64);
                (to - from) / from.max(1.0) * 100.0
            };
            let series = |pick: &dyn Fn(&Sample) -> u64, unit: u64| {
                (0..=4).map(|q| (pick(quarter(q)) / unit).to_string()).collect::<Vec<_>>().join(" / ")
            };
            println!(
                "{name}: RSS MiB at the end of warm-up and each quarter after: {} ({:+.1}%); other descriptors: {} ({:+.1}%); sockets: {} (the load's connections)",
                series(&|s| s.rss_kib[i], 1024),
                change(&|s| s.rss_kib[i]),
                series(&|s| s.fds[i], 1),
                change(&|s| s.fds[i]),
                series(&|s| s.sockets[i], 1),
            );
        }
    }
    if unexpected > 0 {
        std::process::exit(1);
    }
}
