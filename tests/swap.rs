//! Serving through an alias: `serve versioned:prod` follows the alias, and a move swaps
//! the new model in under load without a failed request (and back: a rollback), frees the
//! old one, never swaps in a model that fails to load, and names the answering model in
//! every response. Real HTTP on a real socket.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runner_core::registry::AliasOptions;
use runner_core::serve::ServeOptions;
use runner_core::{register_model, runner, Artifacts, Error, LocalRegistry, Props, Registry};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The models dropped so far, by their artifact's text (`tag number`).
static DROPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A model that answers with its own number, and says when it is dropped.
pub struct Answer {
    text: String,
    number: u64,
}

impl Drop for Answer {
    fn drop(&mut self) {
        DROPPED.lock().unwrap().push(self.text.clone());
    }
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

/// Loads `answer.txt` (`tag number`, or `broken`, which fails to load).
pub struct Versioned;

#[runner(name = "versioned")]
impl Versioned {
    fn load_model(_props: Option<Props>, artifacts: &Artifacts) -> runner_core::Result<Answer> {
        let text = artifacts.read_to_string("answer.txt")?.trim().to_string();
        if text == "broken" {
            return Err(Error::msg("this version is broken on purpose"));
        }
        let number = text.rsplit(' ').next().and_then(|n| n.parse().ok()).ok_or_else(|| Error::msg("no number"))?;
        Ok(Answer { text, number })
    }

    fn predict(model: &Answer, _data: Ask) -> Reply {
        Reply { number: model.number }
    }
}

#[derive(Deserialize, JsonSchema)]
pub struct AskTwice {
    #[allow(dead_code)]
    question: String,
    #[allow(dead_code)]
    times: u32,
}

/// [`Versioned`] with another input type: its API differs.
pub struct Reworded;

#[runner(name = "reworded")]
impl Reworded {
    fn load_model(_props: Option<Props>, _artifacts: &Artifacts) -> runner_core::Result<u64> {
        Ok(0)
    }

    fn predict(model: &u64, _data: AskTwice) -> Reply {
        Reply { number: *model }
    }
}

/// Registers a [`Versioned`] model into `repository` whose artifact says `text`.
fn register(registry: &LocalRegistry, dir: &std::path::Path, repository: &str, text: &str) -> u64 {
    let file = dir.join(format!("answer-{}.txt", text.replace(' ', "-")));
    std::fs::write(&file, text).unwrap();
    // The instance is required for a new number, and unused: only load_model builds models.
    let registered = register_model::<Versioned>(repository)
        .model(Answer { text: "registration".into(), number: 0 })
        .artifact(file.to_str().unwrap(), "answer.txt")
        .register(registry)
        .unwrap();
    registered.id().number
}

fn point(registry: &LocalRegistry, repository: &str, number: u64) {
    registry.set_alias("default", repository, "prod", number, &AliasOptions::default()).unwrap();
}

mod serving;
use serving::{ask, wait_for, Load, Serving};

/// A server on a free port serving `model`, following aliases every 20 ms.
struct Server(Serving);

impl Server {
    async fn start(registry: LocalRegistry, model: &str) -> Server {
        Server::start_with(registry, &[model], ServeOptions::default()).await
    }

    /// With `options`, following every 20 ms.
    async fn start_with(registry: LocalRegistry, models: &[&str], options: ServeOptions) -> Server {
        let options = ServeOptions { follow_interval: Duration::from_millis(20), ..options };
        Server(Serving::start(Arc::new(registry), models, options).await)
    }

    fn url(&self) -> &str {
        &self.0.url
    }

    async fn info(&self, name: &str) -> serde_json::Value {
        reqwest::get(format!("{}/models/{name}", self.url())).await.unwrap().json().await.unwrap()
    }

    async fn stop(self) {
        self.0.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_the_alias_swaps_under_load_without_a_failed_request_and_frees_the_old_model() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    let one = register(&registry, dir.path(), "versioned", "swap 1");
    let two = register(&registry, dir.path(), "versioned", "swap 2");
    point(&registry, "versioned", one);
    let server = Server::start(registry.clone(), "versioned:prod").await;

    // Continuous load: four clients, each sending the next request when one answers.
    let load = Load::start(server.url(), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Forward, then back: each time every request sent a bounded delay after the move is
    // answered by the new model.
    let mut moves = Vec::new();
    for (to, from) in [(two, one), (one, two)] {
        let moved = Instant::now();
        point(&registry, "versioned", to);
        moves.push((moved, to));
        wait_for(&format!("model {to} to answer"), async || {
            load.samples().iter().rev().take(8).all(|(sent, (_, number, _))| *sent > moved && *number == Some(to))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = format!("swap {from}");
        wait_for(&format!("model {from} to be dropped"), async || DROPPED.lock().unwrap().contains(&text)).await;
        DROPPED.lock().unwrap().retain(|t| *t != text);
    }
    let samples = load.stop().await;
    assert!(samples.len() > 100, "only {} requests under load", samples.len());
    let failed: Vec<_> = samples.iter().filter(|(_, (status, _, _))| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
    for (_, (_, body, header)) in &samples {
        assert!(body.is_some() && body == header, "the body says model {body:?}, the header {header:?}");
    }
    // Bounded: a request sent 2 s after a move (the follow interval is 20 ms) is answered
    // by the new model, until the next move.
    for (i, (moved, to)) in moves.iter().enumerate() {
        let until = moves.get(i + 1).map(|(next, _)| *next);
        let late = samples
            .iter()
            .filter(|(sent, _)| *sent > *moved + Duration::from_secs(2) && until.is_none_or(|until| *sent < until));
        for (_, (_, number, _)) in late {
            assert_eq!(*number, Some(*to), "a request sent 2 s after the move to {to} was answered by {number:?}");
        }
    }

    let info = server.info("versioned").await;
    assert_eq!(info["number"], one, "{info}");
    assert_eq!(info["follows"]["alias"], "versioned:prod", "{info}");
    let swaps: Vec<(u64, u64)> = info["follows"]["swaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["from"].as_u64().unwrap(), s["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(swaps, [(one, two), (two, one)], "{info}");
    let metrics = reqwest::get(format!("{}/metrics", server.url())).await.unwrap().text().await.unwrap();
    for line in [
        "runner_model_swaps_total{model=\"versioned\",outcome=\"swapped\"} 2".to_string(),
        format!("runner_model_number{{model=\"versioned\"}} {one}"),
    ] {
        assert!(metrics.contains(&line), "no `{line}` in\n{metrics}");
    }
    assert!(metrics.contains(&format!("runner_requests_total{{model=\"versioned\",version=\"{two}\",status=\"200\"}}")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_to_load_is_never_swapped_in() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    let good = register(&registry, dir.path(), "fragile", "fragile 1");
    let broken = register(&registry, dir.path(), "fragile", "broken");
    let fixed = register(&registry, dir.path(), "fragile", "fragile 3");
    point(&registry, "fragile", good);
    let server = Server::start(registry.clone(), "fragile:prod").await;
    let http = reqwest::Client::new();

    point(&registry, "fragile", broken);
    wait_for("the failed load to be reported", async || !server.info("fragile").await["follows"]["failed"].is_null())
        .await;
    let info = server.info("fragile").await;
    assert_eq!(info["number"], good, "{info}");
    assert_eq!(info["follows"]["failed"]["number"], broken, "{info}");
    let error = info["follows"]["failed"]["error"].as_str().unwrap();
    assert!(error.contains("broken on purpose"), "{error}");
    for _ in 0..20 {
        assert_eq!(ask(&http, server.url(), None).await, (200, Some(good), Some(good)));
    }
    let metrics = reqwest::get(format!("{}/metrics", server.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("runner_model_swaps_total{model=\"fragile\",outcome=\"failed\"} 1"), "{metrics}");

    // The fix goes in, and the failure is cleared.
    point(&registry, "fragile", fixed);
    wait_for("the fixed model to answer", async || ask(&http, server.url(), None).await.1 == Some(fixed)).await;
    let info = server.info("fragile").await;
    assert!(info["follows"]["failed"].is_null(), "{info}");
    server.stop().await;
}

#[test]
fn an_alias_does_not_move_across_an_api_change_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    let one = register(&registry, dir.path(), "api", "api 1");
    let same = register(&registry, dir.path(), "api", "api 2");
    let other = register_model::<Reworded>("api").model(0).register(&registry).unwrap().id().number;
    point(&registry, "api", one);
    point(&registry, "api", same);
    let err = registry.set_alias("default", "api", "prod", other, &AliasOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(message.contains("input.properties.times: added"), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert_eq!(registry.alias("default", "api", "prod").unwrap(), Some(same));
    let forced = registry
        .set_alias("default", "api", "prod", other, &AliasOptions { force: true, ..AliasOptions::default() })
        .unwrap();
    assert!(forced.forced);
    assert_eq!(registry.resolve(&"api:prod".parse().unwrap()).unwrap().number, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_the_aliased_number_again_swaps_the_new_files_in() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    let one = register(&registry, dir.path(), "retrained", "retrained 1");
    point(&registry, "retrained", one);
    let server = Server::start(registry.clone(), "retrained:prod").await;
    let http = reqwest::Client::new();
    assert_eq!(ask(&http, server.url(), None).await, (200, Some(1), Some(one)));

    // Same number, new files: the answer changes, the number does not.
    let file = dir.path().join("answer-retrained-11.txt");
    std::fs::write(&file, "retrained 11").unwrap();
    register_model::<Versioned>("retrained")
        .number(one)
        .artifact(file.to_str().unwrap(), "answer.txt")
        .register(&registry)
        .unwrap();
    wait_for("the new files to answer", async || ask(&http, server.url(), None).await.1 == Some(11)).await;
    let swaps = &server.info("retrained").await["follows"]["swaps"];
    assert_eq!((swaps[0]["from"].as_u64(), swaps[0]["to"].as_u64()), (Some(one), Some(one)), "{swaps}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_follow_latest_each_newer_number_is_swapped_in_unless_its_api_differs() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    let one = register(&registry, dir.path(), "newest", "newest 1");
    let pinned = register(&registry, dir.path(), "pinned", "pinned 1");
    let options = ServeOptions { follow_latest: true, ..ServeOptions::default() };
    let server = Server::start_with(registry.clone(), &["newest:latest", "pinned:1"], options).await;
    let http = reqwest::Client::new();
    let ask_model = |name: &'static str| {
        let (http, url) = (http.clone(), server.url().to_string());
        async move {
            let response = http.post(format!("{url}/models/{name}/predict")).json(&json!({ "question": "?" })).send();
            let body: serde_json::Value = response.await.unwrap().json().await.unwrap();
            body["number"].as_u64()
        }
    };
    assert_eq!(ask_model("newest").await, Some(1));

    // A newer number is loaded and swapped in; a model served by number stays.
    let two = register(&registry, dir.path(), "newest", "newest 2");
    register(&registry, dir.path(), "pinned", "pinned 2");
    wait_for("latest to be followed", async || ask_model("newest").await == Some(2)).await;
    let info = server.info("newest").await;
    assert_eq!(info["follows"]["alias"], "newest:latest", "{info}");
    let swaps = &info["follows"]["swaps"];
    assert_eq!((swaps[0]["from"].as_u64(), swaps[0]["to"].as_u64()), (Some(one), Some(two)), "{swaps}");
    assert_eq!(ask_model("pinned").await, Some(pinned));
    assert!(server.info("pinned").await["follows"].is_null());

    // A newer number with another API is not: callers of `latest` keep the API they use.
    let reworded = register_model::<Reworded>("newest").model(0).register(&registry).unwrap().id().number;
    wait_for("the refusal to be reported", async || !server.info("newest").await["follows"]["failed"].is_null()).await;
    let failed = &server.info("newest").await["follows"]["failed"];
    assert_eq!(failed["number"].as_u64(), Some(reworded), "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("different API"), "{failed}");
    assert_eq!(ask_model("newest").await, Some(2), "the model with the served API keeps serving");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_follow_latest_latest_is_resolved_once() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path().join("registry")).unwrap();
    register(&registry, dir.path(), "fixed", "fixed 1");
    let server = Server::start(registry.clone(), "fixed:latest").await;
    let http = reqwest::Client::new();
    assert_eq!(ask(&http, server.url(), None).await.1, Some(1));
    register(&registry, dir.path(), "fixed", "fixed 2");
    // Ten follow intervals and more: nothing moves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ask(&http, server.url(), None).await.1, Some(1));
    assert!(server.info("fixed").await["follows"].is_null());
    server.stop().await;
}
