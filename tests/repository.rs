//! The model repository API (Triton's repository extension) on `serve`: the index, loading
//! and unloading at run time in `--repository-mode explicit` and `all`, refused in the
//! default `startup`; requests in flight finish on a model being unloaded, and a model
//! under load never fails a request while others come and go. NVIDIA's tritonclient drives
//! it over HTTP and gRPC. Real HTTP on a real socket.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner_core::registry::AliasOptions;
use runner_core::serve::{RepositoryMode, ServeOptions, MODEL_HEADER};
use runner_core::{register_model, runner, LocalRegistry, Registry};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod serving;
use serving::Serving;

#[derive(Deserialize, JsonSchema)]
pub struct Ask {
    /// How long to take, in milliseconds.
    #[serde(default)]
    sleep_ms: u64,
}

#[derive(Serialize, JsonSchema)]
pub struct Reply {
    number: u64,
}

/// A model that answers with the number it was registered as, after `sleep_ms`.
pub struct Numbered;

#[runner(name = "numbered")]
impl Numbered {
    fn predict(model: &u64, data: Ask) -> Reply {
        std::thread::sleep(Duration::from_millis(data.sleep_ms));
        Reply { number: *model }
    }
}

fn register(registry: &LocalRegistry, repository: &str, number: u64) {
    register_model::<Numbered>(repository).model(number).register(registry).unwrap();
}

/// alpha:1, alpha:2 (alias `prod` on 2), beta:1 and gamma:1.
fn registry() -> (tempfile::TempDir, LocalRegistry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    for (repository, number) in [("alpha", 1), ("alpha", 2), ("beta", 1), ("gamma", 1)] {
        register(&registry, repository, number);
    }
    registry.set_alias("default", "alpha", "prod", 2, &AliasOptions::default()).unwrap();
    (dir, registry)
}

fn mode(mode: RepositoryMode) -> ServeOptions {
    ServeOptions { repository_mode: mode, follow_interval: Duration::from_millis(50), ..ServeOptions::default() }
}

async fn start(registry: LocalRegistry, models: &[&str], options: ServeOptions) -> Serving {
    Serving::start(Arc::new(registry), models, options).await
}

/// The index as (name, state, version, reason).
async fn index(http: &reqwest::Client, url: &str) -> Vec<(String, String, String, String)> {
    let answer = http.post(format!("{url}/v2/repository/index")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let entries: Vec<Value> = answer.json().await.unwrap();
    entries
        .iter()
        .map(|e| {
            let field = |f: &str| e[f].as_str().unwrap_or_default().to_string();
            (field("name"), field("state"), field("version"), field("reason"))
        })
        .collect()
}

fn row(name: &str, state: &str, version: &str, reason: &str) -> (String, String, String, String) {
    (name.into(), state.into(), version.into(), reason.into())
}

/// One prediction of `name`: (status, the number answered, the `x-runner-model` header).
async fn ask(http: &reqwest::Client, url: &str, name: &str, sleep_ms: u64) -> (u16, Option<u64>, String) {
    let Ok(response) =
        http.post(format!("{url}/models/{name}/predict")).json(&json!({ "sleep_ms": sleep_ms })).send().await
    else {
        return (0, None, String::new());
    };
    let status = response.status().as_u16();
    let header = response.headers().get(MODEL_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let text = response.text().await.unwrap_or_default();
    let number = serde_json::from_str::<Value>(&text).ok().and_then(|b| b["number"].as_u64());
    (status, number, if status == 200 { header } else { text })
}

async fn post(http: &reqwest::Client, url: &str, path: &str, body: Value) -> (u16, String) {
    let response = http.post(format!("{url}{path}")).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mode_loads_and_unloads_at_run_time() {
    let (_dir, registry) = registry();
    let server = start(registry, &["alpha:1"], mode(RepositoryMode::Explicit)).await;
    let (http, url) = (reqwest::Client::new(), server.url.clone());

    assert_eq!(
        index(&http, &url).await,
        [
            row("alpha", "READY", "1", ""),
            row("beta", "UNAVAILABLE", "", "not loaded"),
            row("gamma", "UNAVAILABLE", "", "not loaded")
        ]
    );
    let ready: Vec<Value> = http
        .post(format!("{url}/v2/repository/index"))
        .json(&json!({"ready": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready, [json!({"name": "alpha", "version": "1", "state": "READY"})]);

    let (status, _, text) = ask(&http, &url, "beta", 0).await;
    assert_eq!(status, 404);
    assert!(text.contains("POST /v2/repository/models/beta/load"), "{text}");

    assert_eq!(post(&http, &url, "/v2/repository/models/beta/load", json!({})).await.0, 200);
    assert_eq!(ask(&http, &url, "beta", 0).await, (200, Some(1), "beta:1".into()));
    // A version, then an alias: the served model is replaced, as an alias move does.
    let (status, text) =
        post(&http, &url, "/v2/repository/models/alpha/load", json!({"parameters": {"version": 2}})).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(ask(&http, &url, "alpha", 0).await.1, Some(2));
    post(&http, &url, "/v2/repository/models/alpha/load", json!({"parameters": {"version": "1"}})).await;
    assert_eq!(ask(&http, &url, "alpha", 0).await.1, Some(1));
    post(&http, &url, "/v2/repository/models/alpha/load", json!({"parameters": {"version": "prod"}})).await;
    assert_eq!(ask(&http, &url, "alpha", 0).await.1, Some(2));
    let models: Value = http.get(format!("{url}/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["models"].as_array().unwrap().len(), 2, "{models}");

    assert_eq!(post(&http, &url, "/v2/repository/models/beta/unload", json!({})).await.0, 200);
    let (status, _, text) = ask(&http, &url, "beta", 0).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("load it with POST /v2/repository/models/beta/load"), "{text}");
    // Unloading what is not served is not an error.
    assert_eq!(post(&http, &url, "/v2/repository/models/beta/unload", json!({})).await.0, 200);

    // What cannot be loaded: refused with why, and the index says it.
    let (status, text) = post(&http, &url, "/v2/repository/models/nope/load", json!({})).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("failed to load nope:latest"), "{text}");
    let (status, text) =
        post(&http, &url, "/v2/repository/models/gamma/load", json!({"parameters": {"version": "7"}})).await;
    assert_eq!(status, 400, "{text}");
    let (status, text) =
        post(&http, &url, "/v2/repository/models/gamma/load", json!({"parameters": {"config": "{}"}})).await;
    assert_eq!(status, 400);
    assert!(text.contains("parameter `config` is not supported"), "{text}");
    let rows = index(&http, &url).await;
    assert_eq!(rows[0], row("alpha", "READY", "2", ""));
    assert_eq!(rows[1], row("beta", "UNAVAILABLE", "", "unloaded"));
    assert_eq!((rows[2].0.as_str(), rows[2].1.as_str()), ("gamma", "UNAVAILABLE"));
    assert!(rows[2].3.starts_with("failed to load: ") && rows[2].3.contains('7'), "{:?}", rows[2]);
    assert_eq!(rows.len(), 3, "a name not in the registry is not listed: {rows:?}");
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("runner_model_swaps_total{model=\"beta\",outcome=\"unloaded\"} 1"), "{metrics}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_mode_lists_but_never_loads_or_unloads() {
    let (_dir, registry) = registry();
    let server = start(registry, &["alpha:1"], ServeOptions::default()).await;
    let (http, url) = (reqwest::Client::new(), server.url.clone());
    assert_eq!(index(&http, &url).await[0], row("alpha", "READY", "1", ""));
    for action in ["load", "unload"] {
        let (status, text) = post(&http, &url, &format!("/v2/repository/models/alpha/{action}"), json!({})).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("--repository-mode explicit"), "{text}");
    }
    assert_eq!(ask(&http, &url, "alpha", 0).await.0, 200);
    server.stop().await.unwrap();
}

/// A request in flight when its model is unloaded finishes on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_on_a_model_being_unloaded() {
    let (_dir, registry) = registry();
    let server = start(registry, &["beta:1"], mode(RepositoryMode::Explicit)).await;
    let (http, url) = (reqwest::Client::new(), server.url.clone());
    let slow = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { ask(&http, &url, "beta", 600).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(post(&http, &url, "/v2/repository/models/beta/unload", json!({})).await.0, 200);
    assert_eq!(ask(&http, &url, "beta", 0).await.0, 404);
    assert_eq!(slow.await.unwrap(), (200, Some(1), "beta:1".into()));
    server.stop().await.unwrap();
}

/// 16 connections ask alpha without pause while beta and gamma are loaded and unloaded
/// again and again and alpha itself is replaced: not one of alpha's requests fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loading_and_unloading_others_costs_no_failed_request() {
    let (_dir, registry) = registry();
    let server = start(registry, &["alpha:1"], mode(RepositoryMode::Explicit)).await;
    let url = server.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (url, stop, answered, failed) = (url.clone(), stop.clone(), answered.clone(), failed.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, number, said) = ask(&http, &url, "alpha", 0).await;
                    if status == 200 && number.is_some() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.push((status, said));
                    }
                }
                failures
            })
        })
        .collect();
    let http = reqwest::Client::new();
    let started = Instant::now();
    for round in 0..10 {
        for name in ["beta", "gamma"] {
            assert_eq!(post(&http, &url, &format!("/v2/repository/models/{name}/load"), json!({})).await.0, 200);
        }
        let version = if round % 2 == 0 { "2" } else { "1" };
        let (status, text) =
            post(&http, &url, "/v2/repository/models/alpha/load", json!({"parameters": {"version": version}})).await;
        assert_eq!(status, 200, "{text}");
        for name in ["beta", "gamma"] {
            assert_eq!(post(&http, &url, &format!("/v2/repository/models/{name}/unload"), json!({})).await.0, 200);
        }
    }
    let churn = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    let answered = answered.load(Ordering::Relaxed);
    assert!(failures.is_empty(), "{} of {answered} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(answered > 100, "only {answered} answers in {churn:?}");
    server.stop().await.unwrap();
}

/// `all`: every repository at start, a new one picked up, and one unloaded on request
/// left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_mode_serves_every_repository_and_picks_up_new_ones() {
    let (dir, registry) = registry();
    let server = start(registry, &[], mode(RepositoryMode::All)).await;
    let (http, url) = (reqwest::Client::new(), server.url.clone());
    let states: Vec<(String, String, String)> =
        index(&http, &url).await.into_iter().map(|(n, s, v, _)| (n, s, v)).collect();
    let ready = |name: &str, version: &str| (name.to_string(), "READY".to_string(), version.to_string());
    assert_eq!(states, [ready("alpha", "2"), ready("beta", "1"), ready("gamma", "1")]);

    assert_eq!(post(&http, &url, "/v2/repository/models/gamma/unload", json!({})).await.0, 200);
    let same = LocalRegistry::open(dir.path().join("registry")).unwrap();
    register(&same, "delta", 1);
    let started = Instant::now();
    while ask(&http, &url, "delta", 0).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "delta was never picked up: {:?}",
            index(&http, &url).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Many discovery rounds later, gamma is still unloaded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ask(&http, &url, "gamma", 0).await.0, 404);
    assert!(index(&http, &url).await.contains(&row("gamma", "UNAVAILABLE", "", "unloaded")));
    server.stop().await.unwrap();
}

/// A model of `mib` MiB of touched memory that answers with its number: `size.txt` holds
/// `mib number`.
pub struct Heavy;

#[runner(name = "heavy")]
impl Heavy {
    fn load_model(
        _props: Option<runner_core::Props>,
        artifacts: &runner_core::Artifacts,
    ) -> runner_core::Result<(Vec<u8>, u64)> {
        let text = artifacts.read_to_string("size.txt")?;
        let mut words = text.split_whitespace().map(|w| w.parse::<u64>().unwrap());
        let (mib, number) = (words.next().unwrap(), words.next().unwrap());
        Ok((vec![number as u8 | 1; (mib as usize) << 20], number))
    }

    fn predict(model: &(Vec<u8>, u64), data: Ask) -> Reply {
        std::thread::sleep(Duration::from_millis(data.sleep_ms));
        // The memory is the model's: the number is answered only when it holds it.
        let intact = model.0[model.0.len() / 2] == model.1 as u8 | 1;
        Reply { number: if intact { model.1 } else { 0 } }
    }
}

/// A tiny pseudo-random sequence (the test's mix must not depend on a crate or the clock).
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

/// 50 small models, at most 10 loaded, every request of a random mix from 16 connections
/// answered by the right model: the least recently used idle model makes room, and a
/// request for an unloaded one loads it and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_models_with_ten_loaded_answer_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    for i in 0..50 {
        register(&registry, &format!("m{i:02}"), 1);
    }
    let options = ServeOptions { max_loaded_models: Some(10), load_on_demand: true, ..mode(RepositoryMode::Explicit) };
    let server = start(registry, &[], options).await;
    let url = server.url.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let watcher = tokio::spawn({
        let (url, stop, most) = (url.clone(), stop.clone(), most.clone());
        async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let models: Value = http.get(format!("{url}/models")).send().await.unwrap().json().await.unwrap();
                most.fetch_max(models["models"].as_array().unwrap().len(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let clients: Vec<_> = (0..16u64)
        .map(|client| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut seed = client + 1;
                let mut wrong = Vec::new();
                for _ in 0..40 {
                    // Mostly a hot set of 8, sometimes any of the 50.
                    let pick = lcg(&mut seed);
                    let i = if pick.is_multiple_of(4) { lcg(&mut seed) % 50 } else { lcg(&mut seed) % 8 };
                    let (status, number, said) = ask(&http, &url, &format!("m{i:02}"), 0).await;
                    if (status, number) != (200, Some(1)) {
                        wrong.push((i, status, said));
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for client in clients {
        wrong.extend(client.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    assert!(wrong.is_empty(), "{} of 640 failed: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    let most = most.load(Ordering::Relaxed);
    assert!((1..=10).contains(&most), "{most} models were loaded at once");
    let http = reqwest::Client::new();
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("runner_load_on_demand_seconds_count{model=\"m"), "{metrics}");
    assert!(metrics.contains("outcome=\"evicted\""), "{metrics}");
    server.stop().await.unwrap();
}

/// `--memory-budget`: models of 8 MiB under a 40 MiB budget; after every load the
/// resident sizes the server measured stay within it (an idle model is unloaded first),
/// and each size measured is the model's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_unloads_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    for i in 0..12u64 {
        let file = dir.path().join(format!("size-{i}.txt"));
        std::fs::write(&file, format!("8 {}", i + 1)).unwrap();
        register_model::<Heavy>(&format!("h{i:02}"))
            .model((Vec::new(), 0))
            .artifact(file.to_str().unwrap(), "size.txt")
            .register(&registry)
            .unwrap();
    }
    let budget = 40u64 << 20;
    let options = ServeOptions { memory_budget: Some(budget), load_on_demand: true, ..mode(RepositoryMode::Explicit) };
    let server = start(registry, &[], options).await;
    let (http, url) = (reqwest::Client::new(), server.url.clone());
    for round in 0..2 {
        for i in 0..12u64 {
            assert_eq!(ask(&http, &url, &format!("h{i:02}"), 0).await.1, Some(i + 1), "round {round}");
            let models: Value = http.get(format!("{url}/models")).send().await.unwrap().json().await.unwrap();
            let sizes: Vec<u64> =
                models["models"].as_array().unwrap().iter().map(|m| m["resident_bytes"].as_u64().unwrap()).collect();
            let used: u64 = sizes.iter().sum();
            assert!(used <= budget, "{used} bytes resident over the {budget} budget: {sizes:?}");
        }
    }
    // The last one asked for is loaded, and the first (least recently used) is not.
    let models: Value = http.get(format!("{url}/models")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = models["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"h11") && !names.contains(&"h00"), "{names:?}");
    assert!(names.len() >= 3, "8 MiB models under 40 MiB: {names:?}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_need_a_mode_that_loads_at_run_time() {
    let (_dir, registry) = registry();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = runner_core::serve::serve_on(
        listener,
        Arc::new(registry),
        vec!["alpha:1".parse().unwrap()],
        ServeOptions { max_loaded_models: Some(2), ..ServeOptions::default() },
        std::future::pending(),
        || {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("--repository-mode explicit"), "{refused}");
}

fn python() -> std::path::PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    venv.join("bin/python")
}

/// NVIDIA's tritonclient: `get_model_repository_index`, `load_model`, `unload_model` and
/// `is_model_ready` over HTTP and gRPC against `--repository-mode explicit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_loads_and_unloads_over_http_and_grpc() {
    let (_dir, registry) = registry();
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let options = ServeOptions { grpc_addr: Some(grpc), ..mode(RepositoryMode::Explicit) };
    let server = start(registry, &["alpha:1"], options).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tritonclient_repository.py");
    let http = server.url.trim_start_matches("http://").to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python()).arg(script).args([http, grpc.to_string()]).output()
    })
    .await
    .unwrap()
    .expect("running the project's Python (scripts/torch-env.sh sets it up)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && text.contains("all checks passed"), "tritonclient:\n{text}");
    server.stop().await.unwrap();
}
