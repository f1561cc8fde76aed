//! The registry transfer benchmark's client: registers a model with one large artifact
//! into a registry (a directory or a server URL), or loads it back, and reports time,
//! file bytes sent or received, and this process's peak RSS.
//!
//! `transfer register REGISTRY FILE` / `transfer load REGISTRY MODEL CACHE`
//!
//! For the shared registry's benchmark (`bench/shared.sh`) also:
//! - `transfer s3-put FILE`: the limit, a bare object_store multipart upload of FILE to
//!   the bucket in `BENCH_BUCKET` (credentials and endpoint from the AWS_* variables), in
//!   8 MiB parts with 3 in flight like the registry;
//! - `transfer small COUNT THREADS URL...`: COUNT small registrations from THREADS
//!   threads spread over the URLs, with the latency of each;
//! - `transfer download COUNT THREADS PATH URL...`: COUNT `GET`s of PATH spread over the
//!   URLs.

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
        [_, "register", url, file] if !url.starts_with("http") => {
            // The embedded directory registry: the bytes it copies are the file's.
            register(&runner_core::LocalRegistry::open(url).expect("registry"), file);
            std::fs::metadata(file).expect("file").len()
        }
        [_, "register", url, file] => {
            let registry = HttpRegistry::new(url, None).expect("registry");
            register(&registry, file);
            registry.bytes_sent()
        }
        [_, "load", url, model, cache] => {
            let registry = HttpRegistry::with_cache(url, None, std::path::Path::new(cache)).expect("registry");
            let id = registry.resolve(&model.parse().expect("model")).expect("resolve");
            let manifest = registry.manifest(&id).expect("manifest");
            registry.fetch(&manifest).expect("fetch");
            registry.bytes_received()
        }
        [_, "s3-put", file] => s3_put(file),
        [_, "small", count, threads, urls @ ..] => {
            let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
            let (count, threads) = (count.parse().expect("count"), threads.parse().expect("threads"));
            return load(count, threads, &urls, |url, i| {
                let registry = HttpRegistry::new(url, None).expect("registry");
                register_model::<SumRunner>("small")
                    .model(SumModel { scale: i as f64 })
                    .register(&registry)
                    .expect("register");
            });
        }
        [_, "download", count, threads, path, urls @ ..] => {
            let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
            let (count, threads) = (count.parse().expect("count"), threads.parse().expect("threads"));
            let client = reqwest::blocking::Client::new();
            // With RUNNER_REGISTRY_TOKEN, sent as a bearer token; BENCH_EXPECT_STATUS: the
            // status every answer must have (401 for a revoked token), else a success.
            let token = std::env::var(runner_core::TOKEN_ENV).ok();
            let expect: Option<u16> = std::env::var("BENCH_EXPECT_STATUS").ok().map(|s| s.parse().expect("a status"));
            return load(count, threads, &urls, |url, _| {
                let mut request = client.get(format!("{url}{path}"));
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().expect("GET");
                match expect {
                    Some(status) => assert_eq!(response.status().as_u16(), status),
                    None => assert!(response.status().is_success(), "{}", response.status()),
                }
                response.bytes().expect("body");
            });
        }
        _ => {
            eprintln!("usage: transfer register URL FILE | transfer load URL MODEL CACHE | transfer s3-put FILE | transfer small COUNT THREADS URL... | transfer download COUNT THREADS PATH URL...");
            std::process::exit(2);
        }
    };
    println!(
        "{{\"seconds\": {:.3}, \"bytes\": {bytes}, \"peak_rss_mib\": {:.1}}}",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}

/// Registers a `sum` model with `file` as its artifact.
fn register(registry: &dyn Registry, file: &str) {
    let registered = register_model::<SumRunner>("transfer")
        .model(SumModel { scale: 1.0 })
        .artifact(file, "checkpoint.bin")
        .register(registry)
        .expect("register");
    eprintln!("registered {}", registered.id());
}

/// Uploads `file` to `BENCH_BUCKET` as object_store's own multipart writer does; returns
/// the bytes sent.
fn s3_put(file: &str) -> u64 {
    use object_store::{ObjectStore, WriteMultipart};
    use tokio::io::AsyncReadExt;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let bucket = std::env::var("BENCH_BUCKET").expect("BENCH_BUCKET");
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(true)
            .build()
            .expect("bucket");
        let upload = store.put_multipart(&"bench/bare".into()).await.expect("start");
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut reader = tokio::fs::File::open(file).await.expect("open");
        let mut buffer = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        loop {
            let n = reader.read(&mut buffer).await.expect("read");
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(3).await.expect("part");
            writer.write(&buffer[..n]);
            sent += n as u64;
        }
        writer.finish().await.expect("complete");
        store.delete(&"bench/bare".into()).await.expect("delete");
        sent
    })
}

/// Runs `one(url, i)` COUNT times from THREADS threads, the i-th on `urls[i % len]`, and
/// prints the rate and latency percentiles.
fn load(count: usize, threads: usize, urls: &[String], one: impl Fn(&str, usize) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return mine;
                        }
                        let t = Instant::now();
                        one(&urls[i % urls.len()], i);
                        mine.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"seconds\": {seconds:.3}, \"per_second\": {:.1}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        count as f64 / seconds,
        at(0.5),
        at(0.99)
    );
}
