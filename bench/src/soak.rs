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

use runner_core::{register_model, HttpRegistry};
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
    fds: [u64; 2],
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
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
                registered.map(|_| 0).map_err(|e| e.to_string())
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
        samples.push(Sample { at: started.elapsed(), rss_kib: pids.map(rss_kib), fds: pids.map(fds) });
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
    if let (Some(first), Some(last)) = (after.first(), after.last()) {
        for (i, name) in ["serve", "runner-registry"].iter().enumerate() {
            let rss: Vec<u64> = after.iter().map(|s| s.rss_kib[i]).collect();
            let fd: Vec<u64> = after.iter().map(|s| s.fds[i]).collect();
            let change = |from: u64, to: u64| (to as f64 - from as f64) / from.max(1) as f64 * 100.0;
            println!(
                "{name}: RSS {} MiB after warm-up, {}..{} MiB since, {} MiB at the end ({:+.1}%); fds {} after warm-up, {}..{} since, {} at the end ({:+.1}%)",
                first.rss_kib[i] / 1024,
                rss.iter().min().unwrap() / 1024,
                rss.iter().max().unwrap() / 1024,
                last.rss_kib[i] / 1024,
                change(first.rss_kib[i], last.rss_kib[i]),
                first.fds[i],
                fd.iter().min().unwrap(),
                fd.iter().max().unwrap(),
                last.fds[i],
                change(first.fds[i], last.fds[i]),
            );
        }
    }
    if unexpected > 0 {
        std::process::exit(1);
    }
}
