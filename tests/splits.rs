//! Traffic splits: `serve versioned:prod` with `prod` pointing at one model and a canary
//! sends the canary its share, by turns or by a sticky key that every replica maps to
//! the same version; moving the split (0 to 100 %, a promotion, a rollback) costs no
//! request; a shadowed canary answers nothing and is compared. Real HTTP on real sockets.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runner_core::registry::{AliasOptions, Canary};
use runner_core::serve::{http::HeaderName, ServeOptions};
use runner_core::{register_model, runner, Artifacts, Error, LocalRegistry, Props, Registry};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod serving;
use serving::{ask, wait_for, Load, Sample, Serving};

/// A model that answers with its own number; one whose artifact says `flaky` fails every
/// twentieth request (5 %).
pub struct Answer {
    number: u64,
    flaky: bool,
    calls: AtomicU64,
}

#[derive(Deserialize, JsonSchema)]
pub struct Ask {
    #[allow(dead_code)]
    question: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Reply {
    number: u64,
}

pub struct Split;

#[runner(name = "split")]
impl Split {
    fn load_model(_props: Option<Props>, artifacts: &Artifacts) -> runner_core::Result<Answer> {
        let text = artifacts.read_to_string("answer.txt")?;
        let (kind, number) = text.trim().split_once(' ').ok_or_else(|| Error::msg("`kind number`"))?;
        if kind == "broken" {
            return Err(Error::msg("this version is broken on purpose"));
        }
        let number = number.parse().map_err(|_| Error::msg("no number"))?;
        Ok(Answer { number, flaky: kind == "flaky", calls: AtomicU64::new(0) })
    }

    fn predict(model: &Answer, _data: Ask) -> runner_core::Result<Reply> {
        if model.flaky && model.calls.fetch_add(1, Ordering::Relaxed) % 20 == 19 {
            return Err(Error::msg("this version fails one request in twenty on purpose"));
        }
        Ok(Reply { number: model.number })
    }
}

/// Registers a [`Split`] model into `repository`; `kind` is `steady`, `flaky` or `broken`
/// (it fails to load).
fn register(registry: &LocalRegistry, dir: &std::path::Path, repository: &str, kind: &str) -> u64 {
    let next = registry.models("default", repository).map_or(0, |m| m.len()) + 1;
    let file = dir.join(format!("answer-{repository}-{next}.txt"));
    std::fs::write(&file, format!("{kind} {next}")).unwrap();
    let registered = register_model::<Split>(repository)
        .model(Answer { number: 0, flaky: false, calls: AtomicU64::new(0) })
        .artifact(file.to_str().unwrap(), "answer.txt")
        .register(registry)
        .unwrap();
    assert_eq!(registered.id().number, next as u64);
    registered.id().number
}

/// A registry (in the returned directory) with a model of `split` for each of `kinds`,
/// registered in order: their numbers.
fn models<const N: usize>(kinds: [&str; N]) -> (tempfile::TempDir, LocalRegistry, [u64; N]) {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    let numbers = kinds.map(|kind| register(&registry, dir.path(), "split", kind));
    (dir, registry, numbers)
}

/// Points `prod` at `number`, with `canary` (number, percent).
fn split(registry: &LocalRegistry, number: u64, canary: Option<(u64, u8)>) {
    let canary = canary.map(|(number, percent)| Canary { number, percent });
    registry.set_alias("default", "split", "prod", number, &AliasOptions { canary, ..Default::default() }).unwrap();
}

const STICKY: &str = "x-user-id";

async fn serve(registry: &LocalRegistry, shadow: bool) -> Serving {
    let options = ServeOptions {
        follow_interval: Duration::from_millis(20),
        sticky_header: Some(HeaderName::from_static(STICKY)),
        shadow,
        // Room for every shadow copy in flight (past it copies are skipped).
        concurrency: 32,
        ..ServeOptions::default()
    };
    Serving::start(Arc::new(registry.clone()), &["split:prod"], options).await
}

/// Waits until `server` serves `number` with canary `canary` (number, percent).
async fn wait_split(server: &Serving, number: u64, canary: Option<(u64, u8)>) {
    wait_for(&format!("{} to serve {number} with canary {canary:?}", server.url), async || {
        let info: serde_json::Value =
            reqwest::get(format!("{}/models/split", server.url)).await.unwrap().json().await.unwrap();
        let now =
            info["canary"].as_object().map(|c| (c["number"].as_u64().unwrap(), c["percent"].as_u64().unwrap() as u8));
        info["number"] == number && now == canary
    })
    .await;
}

/// `n` requests over `connections` connections, each with the user `user(i)` gives.
async fn burst(
    url: &str,
    n: usize,
    connections: usize,
    user: impl Fn(usize) -> Option<String> + Send + Sync + 'static,
) -> Vec<(Option<String>, (u16, Option<u64>, Option<u64>))> {
    let next = Arc::new(AtomicU64::new(0));
    let user = Arc::new(user);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (url, next, user) = (url.to_string(), next.clone(), user.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut answers = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= n {
                        return answers;
                    }
                    let who = user(i);
                    answers.push((who.clone(), ask(&http, &url, who.as_deref().map(|user| (STICKY, user))).await));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_canary_gets_its_share_and_a_sticky_key_one_version_on_every_replica() {
    let (_dir, registry, [one, two]) = models(["steady", "steady"]);
    split(&registry, one, Some((two, 10)));
    let replicas = [serve(&registry, false).await, serve(&registry, false).await];
    for replica in &replicas {
        wait_split(replica, one, Some((two, 10))).await;
    }

    // Without a sticky key: 10,000 requests over 16 connections, the canary's share
    // measured from the header that names who answered.
    let answers = burst(&replicas[0].url, 10_000, 16, |_| None).await;
    assert!(answers.iter().all(|(_, (status, body, header))| *status == 200 && body == header));
    let to_canary = answers.iter().filter(|(_, (_, _, header))| *header == Some(two)).count();
    let share = to_canary as f64 / answers.len() as f64 * 100.0;
    assert!((8.0..=12.0).contains(&share), "the canary answered {share:.2}% of 10,000 requests, not 10 ± 2");

    // With one: every user sees one version, the same on both replicas.
    let sides = async |percent: u8| -> BTreeMap<String, u64> {
        let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for replica in &replicas {
            for (user, (status, _, header)) in
                burst(&replica.url, 2_000, 8, |i| Some(format!("user-{}", i % 400))).await
            {
                assert_eq!(status, 200);
                seen.entry(user.unwrap()).or_default().push(header.unwrap());
            }
        }
        let mut side = BTreeMap::new();
        for (user, versions) in seen {
            assert!(versions.iter().all(|v| *v == versions[0]), "{user} saw {versions:?} at {percent}%");
            side.insert(user, versions[0]);
        }
        let on_canary = side.values().filter(|v| **v == two).count() as f64 / side.len() as f64 * 100.0;
        assert!(
            (f64::from(percent) - 6.0..=f64::from(percent) + 6.0).contains(&on_canary),
            "{on_canary:.1}% of 400 users on the canary at {percent}%"
        );
        side
    };
    let at_10 = sides(10).await;

    // The split moves: both replicas follow, and the canary's users stay on it.
    split(&registry, one, Some((two, 50)));
    for replica in &replicas {
        wait_split(replica, one, Some((two, 50))).await;
    }
    let at_50 = sides(50).await;
    for (user, version) in &at_10 {
        assert!(*version != two || at_50[user] == two, "{user} left the canary when its share grew");
    }

    let metrics = reqwest::get(format!("{}/metrics", replicas[0].url)).await.unwrap().text().await.unwrap();
    for line in [
        format!("runner_canary_percent{{model=\"split\",version=\"{two}\"}} 50"),
        format!("runner_model_number{{model=\"split\"}} {one}"),
    ] {
        assert!(metrics.contains(&line), "no `{line}` in\n{metrics}");
    }
    for version in [one, two] {
        let line = format!("runner_requests_total{{model=\"split\",version=\"{version}\",status=\"200\"}}");
        assert!(metrics.contains(&line), "no `{line}` in\n{metrics}");
    }
    for replica in replicas {
        replica.stop().await.unwrap();
    }
}

/// Checks that every failed request was answered by model `flaky` (a 500 naming it) and
/// every other names the model in its body and header alike; returns the failures.
fn only_failures_of(samples: &[Sample], flaky: u64) -> usize {
    let failed: Vec<_> = samples.iter().filter(|(_, (status, _, _))| *status != 200).collect();
    assert!(
        failed.iter().all(|(_, (status, _, header))| *status == 500 && *header == Some(flaky)),
        "requests failed that the flaky model {flaky} did not answer: {:?}",
        &failed[..failed.len().min(5)]
    );
    for (_, (status, body, header)) in samples {
        assert!(*status != 200 || (body.is_some() && body == header), "body {body:?}, header {header:?}");
    }
    failed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_a_split_from_0_to_100_and_back_costs_no_request() {
    let (_dir, registry, [one, two, flaky]) = models(["steady", "steady", "flaky"]);
    split(&registry, one, None);
    let server = serve(&registry, false).await;

    let load = Load::start(&server.url, 16);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 0 -> 25 -> 50 -> 100 %, a promotion, then a canary that fails 5 % and its rollback.
    let steps: [(u64, Option<(u64, u8)>); 7] = [
        (one, Some((two, 0))),
        (one, Some((two, 25))),
        (one, Some((two, 50))),
        (one, Some((two, 100))),
        (two, None),
        (two, Some((flaky, 50))),
        (two, None),
    ];
    for (number, canary) in steps {
        split(&registry, number, canary);
        wait_split(&server, number, canary).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let samples = load.stop().await;
    assert!(samples.len() > 500, "only {} requests under load", samples.len());
    let failed = only_failures_of(&samples, flaky);
    assert!(failed > 0, "the flaky canary never failed: the test did not reach it");
    // The promotion reused the loaded canary: the model dropped and none loaded again.
    let info: serde_json::Value =
        reqwest::get(format!("{}/models/split", server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(info["number"], two, "{info}");
    assert!(info["canary"].is_null(), "{info}");
    // Every endpoint that left was released, and none is waited for forever (a promoted
    // canary is still the model: releasing it would wait for the last of its requests).
    wait_for("the released models to be dropped", async || release_threads() == 0).await;
    server.stop().await.unwrap();
}

/// Threads of this process waiting to drop a model (`serve::state::release`).
fn release_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "release-model")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_that_fails_to_load_is_tried_once_and_the_model_answers() {
    let (_dir, registry, [one, broken]) = models(["steady", "broken"]);
    split(&registry, one, Some((broken, 50)));
    let server = serve(&registry, false).await;
    let info = async || -> serde_json::Value {
        reqwest::get(format!("{}/models/split", server.url)).await.unwrap().json().await.unwrap()
    };
    wait_for("the failed canary to be reported", async || info().await["follows"]["canary_failed"]["number"] == broken)
        .await;
    let answers = burst(&server.url, 100, 4, |_| None).await;
    assert!(answers.iter().all(|(_, answer)| *answer == (200, Some(one), Some(one))), "not all answered by {one}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    let line = "runner_model_swaps_total{model=\"split\",outcome=\"failed\"} 1";
    assert!(metrics.contains(line), "tried more than once (or never): no `{line}` in\n{metrics}");
    assert!(info().await["canary"].is_null());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadowed_canary_answers_nothing_and_is_compared() {
    let (_dir, registry, [one, two]) = models(["steady", "steady"]);
    split(&registry, one, Some((two, 100)));
    let server = serve(&registry, true).await;
    wait_split(&server, one, Some((two, 100))).await;
    let answers = burst(&server.url, 200, 4, |_| None).await;
    assert!(answers.iter().all(|(_, answer)| *answer == (200, Some(one), Some(one))), "the shadow answered");
    // Each copy was answered by the canary, whose number differs: 200 disagreements.
    let line = format!("runner_shadow_total{{model=\"split\",version=\"{two}\",outcome=\"disagree\"}} 200");
    wait_for("the copies to be compared", async || {
        let metrics = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
        metrics.contains(&line)
    })
    .await;
    let page = reqwest::get(format!("{}/", server.url)).await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("shadow {two} · 100%")), "the page does not show the shadow");
    server.stop().await.unwrap();
}

/// Runs `runner_registry::rollout` of `to` behind `split:prod` against the serve at `url`,
/// steps of 400 ms judged on at least 50 canary requests.
async fn roll_out(registry: &LocalRegistry, url: &str, to: u64) -> (runner_registry::rollout::Outcome, Vec<String>) {
    let (outcome, lines) = try_roll_out(registry, url, to).await;
    (outcome.unwrap(), lines)
}

/// [`roll_out`], which may fail.
async fn try_roll_out(
    registry: &LocalRegistry,
    url: &str,
    to: u64,
) -> (runner_core::Result<runner_registry::rollout::Outcome>, Vec<String>) {
    roll_out_with(registry, url, to, Duration::from_secs(60)).await
}

/// [`try_roll_out`], giving up on a step that cannot be judged after `step_timeout`.
async fn roll_out_with(
    registry: &LocalRegistry,
    url: &str,
    to: u64,
    step_timeout: Duration,
) -> (runner_core::Result<runner_registry::rollout::Outcome>, Vec<String>) {
    let plan = runner_registry::rollout::Plan {
        organization: "default".into(),
        repository: "split".into(),
        alias: "prod".into(),
        to,
        steps: vec![10, 50, 100],
        every: Duration::from_millis(400),
        max_error_rate: 0.01,
        // The ratio is reported, not limited: on a 2-core machine busy with the load itself,
        // one model's requests can run inline and the other's on the blocking pool (a slow
        // call pins a pipeline there), which puts 100x between two copies of the same code.
        // The limit itself is tested in `runner_registry::rollout`'s unit tests.
        max_p99_ratio: None,
        min_requests: 50,
        step_timeout,
        serves: vec![url.to_string()],
        api_key: None,
    };
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let outcome = runner_registry::rollout::rollout(&registry, &plan, &mut |line| lines.push(line.to_string()));
        (outcome, lines)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_promotes_a_healthy_canary_step_by_step() {
    use runner_registry::rollout::Outcome;
    let (_dir, registry, [one, two]) = models(["steady", "steady"]);
    split(&registry, one, None);
    let server = serve(&registry, false).await;
    let load = Load::start(&server.url, 16);
    let (outcome, lines) = roll_out(&registry, &server.url, two).await;
    assert_eq!(outcome, Outcome::Passed, "{lines:#?}");
    // Each step was judged on both figures, read from the serve's real /metrics.
    let judged: Vec<_> = lines.iter().filter(|l| l.contains("passed")).collect();
    assert!(judged.len() == 2 && judged.iter().all(|l| l.contains("error rate") && l.contains("p99")), "{lines:#?}");
    wait_split(&server, two, None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let samples = load.stop().await;
    assert_eq!(only_failures_of(&samples, 0), 0);
    let history = registry.alias_history("default", "split", Some("prod")).unwrap();
    let steps: Vec<_> = history[1..].iter().map(|m| (m.to, m.to_canary.map(|c| c.percent))).collect();
    assert_eq!(steps, [(Some(one), Some(10)), (Some(one), Some(50)), (Some(two), None)], "{history:#?}");
    let done = history.last().unwrap().reason.as_deref().unwrap();
    assert!(done.contains("complete") && done.contains("10%") && done.contains("error rate 0.00%"), "{done}");
    server.stop().await.unwrap();
}

/// A step that gets no traffic cannot be judged: past `--step-timeout` the canary is
/// rolled back, and the history says why, instead of the rollout waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_without_traffic_rolls_back_at_its_step_timeout() {
    use runner_registry::rollout::Outcome;
    let (_dir, registry, [one, two]) = models(["steady", "steady"]);
    split(&registry, one, None);
    let server = serve(&registry, false).await;
    let started = std::time::Instant::now();
    let (outcome, lines) = roll_out_with(&registry, &server.url, two, Duration::from_millis(1200)).await;
    let Outcome::RolledBack { step, reason } = outcome.unwrap() else { panic!("not rolled back: {lines:#?}") };
    assert!(started.elapsed() < Duration::from_secs(10), "it waited {:?}", started.elapsed());
    assert_eq!(step, 10);
    assert!(reason.contains("0 of the 50 requests") && reason.contains("--step-timeout"), "{reason}");
    let last = registry.alias_history("default", "split", Some("prod")).unwrap().pop().unwrap();
    assert_eq!((last.to, last.to_canary, last.reason.as_deref()), (Some(one), None, Some(&*reason)));
    wait_split(&server, one, None).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_failing_5_percent_is_rolled_back_within_one_step() {
    use runner_registry::rollout::Outcome;
    let (_dir, registry, [one, flaky]) = models(["steady", "flaky"]);
    split(&registry, one, None);
    let server = serve(&registry, false).await;
    let load = Load::start(&server.url, 16);
    let (outcome, lines) = roll_out(&registry, &server.url, flaky).await;
    let Outcome::RolledBack { step, reason } = outcome else { panic!("not rolled back: {lines:#?}") };
    assert_eq!(step, 10, "rolled back at {step}%, not within its first step");
    wait_split(&server, one, None).await;
    let samples = load.stop().await;
    assert!(only_failures_of(&samples, flaky) > 0);
    let last = registry.alias_history("default", "split", Some("prod")).unwrap().pop().unwrap();
    assert_eq!((last.to, last.to_canary, last.from_canary.map(|c| c.number)), (Some(one), None, Some(flaky)));
    assert_eq!(last.reason.as_deref(), Some(&*reason));
    assert!(reason.contains("rolled back at step 10%") && reason.contains("over the limit of 1.00%"), "{reason}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sticky_key_gets_the_same_version_over_grpc_as_over_http() {
    use runner_core::serve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use runner_core::serve::grpc::proto::model_infer_request::InferInputTensor;
    use runner_core::serve::grpc::proto::{InferTensorContents, ModelInferRequest};
    let (_dir, registry, [one, two]) = models(["steady", "steady"]);
    split(&registry, one, Some((two, 50)));
    let grpc_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let options = ServeOptions {
        follow_interval: Duration::from_millis(20),
        sticky_header: Some(HeaderName::from_static(STICKY)),
        grpc_addr: Some(grpc_addr),
        ..ServeOptions::default()
    };
    let server = Serving::start(Arc::new(registry.clone()), &["split:prod"], options).await;
    wait_split(&server, one, Some((two, 50))).await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await.unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let http = reqwest::Client::new();
    let mut sides = [0, 0];
    for user in (0..60).map(|u| format!("user-{u}")) {
        let (status, _, over_http) = ask(&http, &server.url, Some((STICKY, &user))).await;
        assert_eq!(status, 200);
        let body = bytes::Bytes::from_static(br#"{"question": "who?"}"#);
        let input = InferInputTensor {
            name: "body".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents { bytes_contents: vec![body], ..Default::default() }),
            ..Default::default()
        };
        let mut request = tonic::Request::new(ModelInferRequest {
            model_name: "split".into(),
            inputs: vec![input],
            ..Default::default()
        });
        request.metadata_mut().insert(STICKY, user.parse().unwrap());
        let response = client.model_infer(request).await.unwrap();
        let named = response.metadata().get(runner_core::serve::MODEL_HEADER).unwrap().to_str().unwrap().to_string();
        let over_grpc = named.rsplit(':').next().unwrap().parse::<u64>().ok();
        assert_eq!(over_grpc, over_http, "{user} got {over_grpc:?} over gRPC, {over_http:?} over HTTP");
        sides[usize::from(over_http == Some(two))] += 1;
    }
    assert!(sides[0] > 0 && sides[1] > 0, "a 50% split sent all 60 users one way: {sides:?}");
    // The HTTP/2 connection goes first: shutting down waits for the connections open.
    drop(client);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_stops_when_someone_changes_the_split_meanwhile() {
    let (_dir, registry, [one, two]) = models(["steady", "steady"]);
    split(&registry, one, None);
    let server = serve(&registry, false).await;
    let load = Load::start(&server.url, 8);
    let rollout = {
        let (registry, url) = (registry.clone(), server.url.clone());
        tokio::spawn(async move { try_roll_out(&registry, &url, two).await })
    };
    // While the first step (10%) runs, a person holds the canary at 30%.
    wait_split(&server, one, Some((two, 10))).await;
    split(&registry, one, Some((two, 30)));
    let (outcome, lines) = rollout.await.unwrap();
    match outcome {
        Err(runner_core::Error::Conflict { message }) => {
            assert!(message.contains("canary 2 at 30%") && message.contains("changes nothing"), "{message}")
        }
        other => panic!("the rollout went on over a person's change: {other:?}, {lines:#?}"),
    }
    let now = registry.alias_entry("default", "split", "prod").unwrap().unwrap();
    assert_eq!((now.number, now.canary.map(|c| c.percent)), (one, Some(30)), "the person's split was overridden");
    assert_eq!(only_failures_of(&load.stop().await, 0), 0);
    server.stop().await.unwrap();
}
