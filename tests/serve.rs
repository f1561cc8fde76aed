//! The HTTP server: every status code it promises, panics, timeouts, the queue limit,
//! auth, readiness, batching, metrics, OpenAPI, binary bodies and graceful shutdown.
//! Most tests use the in-process client; the shutdown test uses a real socket.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use runner_core::serve::{http, App, Body, ServeOptions, TestClient, MODEL_HEADER};
use runner_core::{register_model, runner, DynModel, Error, ErrorKind, Loaded, LocalRegistry, RawBody, Runner};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Serialize, Deserialize)]
pub struct Unit;

#[derive(Deserialize, JsonSchema)]
pub struct Job {
    /// What to do: "ok", "invalid", "conflict", "fail", "panic".
    action: String,
    #[serde(default)]
    sleep_ms: u64,
}

#[derive(Serialize, JsonSchema)]
pub struct Done {
    done: String,
}

/// A runner that does what the request tells it to.
pub struct Obedient;

#[runner(name = "obedient")]
impl Obedient {
    fn preprocess_data(data: Job) -> runner_core::Result<Job> {
        if data.action == "invalid" {
            return Err(Error::invalid_input("`action` may not be \"invalid\""));
        }
        Ok(data)
    }

    fn predict(_model: &Unit, data: Job) -> Result<Done, String> {
        std::thread::sleep(Duration::from_millis(data.sleep_ms));
        match data.action.as_str() {
            "conflict" => Err(Error::new(ErrorKind::Conflict, "conflict requested").to_string()),
            "fail" => Err("asked to fail".to_string()),
            "panic" => panic!("asked to panic"),
            other => Ok(Done { done: other.to_string() }),
        }
    }

    fn postprocess_data(data: Done) -> runner_core::Result<Done> {
        if data.done == "status" {
            return Err(Error::new(ErrorKind::Conflict, "postprocess wants 409"));
        }
        Ok(data)
    }
}

/// A runner that takes raw bytes.
pub struct Bytecount;

#[derive(Serialize)]
pub struct Counted {
    bytes: usize,
    content_type: Option<String>,
    zeros: usize,
}

#[runner(name = "bytecount")]
impl Bytecount {
    fn predict(_model: &Unit, data: RawBody) -> Counted {
        Counted {
            bytes: data.bytes.len(),
            zeros: data.bytes.iter().filter(|b| **b == 0).count(),
            content_type: data.content_type,
        }
    }
}

/// Batch sizes seen by `Batched::predict_batch`, by the `test` field of their first item
/// (tests run in parallel and share this).
static BATCHES: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

fn batches(test: &str) -> Vec<usize> {
    BATCHES.lock().unwrap().iter().filter(|(t, _)| t == test).map(|(_, n)| *n).collect()
}

/// An input of [`Batched`].
#[derive(Deserialize, JsonSchema)]
pub struct Item {
    /// Doubled; a negative number makes its batch return one output too few.
    x: f64,
    /// The test that sent it.
    test: String,
    /// Time spent in preprocess.
    #[serde(default)]
    preprocess_ms: u64,
    /// Time its batch spends in `predict_batch`.
    #[serde(default)]
    predict_ms: u64,
}

fn item(test: &str, x: f64, preprocess_ms: u64, predict_ms: u64) -> serde_json::Value {
    json!({ "x": x, "test": test, "preprocess_ms": preprocess_ms, "predict_ms": predict_ms })
}

/// A batched runner: doubles numbers, taking the time each item asks for.
pub struct Batched;

#[runner(name = "batched", max_batch_size = 4, max_delay_ms = 100)]
impl Batched {
    fn preprocess_data(data: Item) -> Item {
        std::thread::sleep(Duration::from_millis(data.preprocess_ms));
        data
    }

    fn predict(_model: &Unit, data: Item) -> f64 {
        2.0 * data.x
    }

    fn predict_batch(_model: &Unit, data: Vec<Item>) -> Vec<f64> {
        BATCHES.lock().unwrap().push((data[0].test.clone(), data.len()));
        std::thread::sleep(Duration::from_millis(data.iter().map(|i| i.predict_ms).max().unwrap_or(0)));
        let short = data.iter().any(|i| i.x < 0.0);
        let mut out: Vec<f64> = data.iter().map(|i| 2.0 * i.x).collect();
        if short {
            out.pop();
        }
        out
    }
}

fn load<R: Runner<Model = Unit>>(name: &str) -> (tempfile::TempDir, Loaded<R>) {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    register_model::<R>(name).model(Unit).register(&registry).unwrap();
    let loaded = Loaded::<R>::load(&registry, &format!("{name}:latest").parse().unwrap()).unwrap();
    (dir, loaded)
}

fn client(options: ServeOptions) -> (tempfile::TempDir, TestClient) {
    let (dir, loaded) = load::<Obedient>("obedient");
    (dir, TestClient::with_models(vec![Box::new(loaded)], options).unwrap())
}

fn job(action: &str) -> serde_json::Value {
    json!({ "action": action })
}

fn error_code(response: &runner_core::serve::TestResponse) -> String {
    let body = response.json();
    assert_eq!(body["error"]["status"], response.status, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn predictions_and_their_error_statuses() {
    let (_dir, client) = client(ServeOptions::default());
    let ok = client.post_json("/predict", &job("hello")).await;
    assert_eq!((ok.status, ok.json()), (200, json!({ "done": "hello" })));
    assert_eq!(ok.headers["content-type"], "application/json");
    assert!(ok.headers.contains_key("x-request-id"));
    let named = client.post_json("/models/obedient/predict", &job("named")).await;
    assert_eq!(named.json(), json!({ "done": "named" }));

    let malformed = client.post("/predict", "{\"action\": ", "application/json").await;
    assert_eq!((malformed.status, error_code(&malformed).as_str()), (400, "bad_request"));
    assert!(malformed.json()["error"]["message"].as_str().unwrap().contains("not valid JSON"));

    let wrong_shape = client.post_json("/predict", &json!({ "action": 5 })).await;
    assert_eq!((wrong_shape.status, error_code(&wrong_shape).as_str()), (422, "invalid_input"));
    assert!(wrong_shape.json()["error"]["message"].as_str().unwrap().contains("at `action`"), "{}", wrong_shape.text());
    let missing = client.post_json("/predict", &json!({ "sleep_ms": 1 })).await;
    assert!(missing.json()["error"]["message"].as_str().unwrap().contains("missing field `action`"));

    let invalid = client.post_json("/predict", &job("invalid")).await;
    assert_eq!((invalid.status, error_code(&invalid).as_str()), (422, "invalid_input"));

    let failed = client.post_json("/predict", &job("fail")).await;
    assert_eq!((failed.status, error_code(&failed).as_str()), (500, "hook_error"));
    assert!(failed.json()["error"]["message"].as_str().unwrap().contains("`predict` failed: asked to fail"));

    let status = client.post_json("/predict", &job("status")).await;
    assert_eq!((status.status, error_code(&status).as_str()), (409, "hook_error"));

    let unknown = client.post_json("/models/nope/predict", &job("x")).await;
    assert_eq!((unknown.status, error_code(&unknown).as_str()), (404, "not_found"));
    assert!(unknown.json()["error"]["message"].as_str().unwrap().contains("served: obedient"));
    let no_route = client.get("/nowhere").await;
    assert_eq!(no_route.status, 404);

    // The V2 protocol for a runner that takes JSON: one BYTES element holding the body.
    assert_eq!(client.get("/v2/health/live").await.json(), json!({ "live": true }));
    assert_eq!(client.get("/v2/health/ready").await.json(), json!({ "ready": true }));
    let metadata = client.get("/v2/models/obedient").await.json();
    assert_eq!(metadata["platform"], "runner_json");
    assert_eq!(metadata["inputs"], json!([{"name": "body", "datatype": "BYTES", "shape": [1]}]));
    let body = |document: serde_json::Value| json!({"inputs": [{"name": "body", "shape": [1], "datatype": "BYTES", "data": [document.to_string()]}]});
    let answer = client.post_json("/v2/models/obedient/infer", &body(json!({"action": "ok"}))).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let output = &answer.json()["outputs"][0];
    assert_eq!((output["name"].clone(), output["datatype"].clone()), (json!("body"), json!("BYTES")));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(output["data"][0].as_str().unwrap()).unwrap(),
        json!({"done": "ok"})
    );
    // The runner's own errors come through with its message; refusing the input is V2's
    // 400 (422 on /predict), as Triton answers it.
    let refused = client.post_json("/v2/models/obedient/infer", &body(json!({"action": "invalid"}))).await;
    assert_eq!(refused.status, 400);
    assert!(refused.json()["error"].as_str().unwrap().contains("may not be"), "{}", refused.text());
    let not_one = client.post_json("/v2/models/obedient/infer", &json!({ "inputs": [] })).await;
    assert_eq!(not_one.status, 400);
    let message = not_one.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("takes one BYTES input (`body`, shape [1])") && message.contains("not 0 inputs"),
        "{message}"
    );
    assert_eq!(client.get("/v2/models/nope").await.status, 404);
}

#[tokio::test]
async fn a_panicking_hook_is_a_500_and_the_server_keeps_serving() {
    let (_dir, client) = client(ServeOptions { concurrency: 1, ..ServeOptions::default() });
    for _ in 0..3 {
        let panicked = client.post_json("/predict", &job("panic")).await;
        assert_eq!((panicked.status, error_code(&panicked).as_str()), (500, "panic"));
        assert!(panicked.json()["error"]["message"].as_str().unwrap().contains("asked to panic"));
        let ok = client.post_json("/predict", &job("after")).await;
        assert_eq!(ok.status, 200, "the slot held by the panicking request was given back");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let (_dir, client) = client(ServeOptions { body_limit: 64, ..ServeOptions::default() });
    let big = json!({ "action": "x".repeat(100) });
    let response = client.post_json("/predict", &big).await;
    assert_eq!((response.status, error_code(&response).as_str()), (413, "payload_too_large"));
    // Declared too large up front.
    let request =
        http::Request::post("/predict").header("content-length", "1000000").body(Body::from(vec![b' '; 10])).unwrap();
    assert_eq!(client.request(request).await.status, 413);
    assert_eq!(client.post_json("/predict", &job("small")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_504() {
    let (_dir, client) = client(ServeOptions { timeout: Duration::from_millis(100), ..ServeOptions::default() });
    let started = Instant::now();
    let response = client.post_json("/predict", &json!({ "action": "slow", "sleep_ms": 2000 })).await;
    assert_eq!((response.status, error_code(&response).as_str()), (504, "timeout"));
    assert!(started.elapsed() < Duration::from_millis(1500), "answered at the limit, not when the work ended");
}

/// A request given up by its client (its future dropped mid-way, as hyper drops it when
/// the connection closes) stops counting in `runner_in_flight_requests` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_given_up_is_no_longer_in_flight() {
    let (_dir, client) = client(ServeOptions::default());
    let in_flight = || async {
        let metrics = client.get("/metrics").await.text();
        let line = metrics.lines().find(|l| l.starts_with("runner_in_flight_requests{")).map(str::to_string);
        line.and_then(|l| l.rsplit(' ').next().map(str::to_string)).unwrap_or_default()
    };
    let slow = json!({ "action": "slow", "sleep_ms": 300 });
    let given_up = tokio::time::timeout(Duration::from_millis(100), client.post_json("/predict", &slow)).await;
    assert!(given_up.is_err(), "the request was still running when it was given up");
    assert_eq!(in_flight().await, "0");
    assert_eq!(client.post_json("/predict", &job("after")).await.status, 200);
    assert_eq!(in_flight().await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let (_dir, client) = client(ServeOptions { concurrency: 1, queue: 1, ..ServeOptions::default() });
    let slow = || {
        let client = client.clone();
        tokio::spawn(async move { client.post_json("/predict", &json!({ "action": "slow", "sleep_ms": 400 })).await })
    };
    let running = slow();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued = slow();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let refused = client.post_json("/predict", &job("one too many")).await;
    assert!(started.elapsed() < Duration::from_millis(200), "refused at once, not queued");
    assert_eq!((refused.status, error_code(&refused).as_str()), (503, "overloaded"));
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(running.await.unwrap().status, 200);
    assert_eq!(queued.await.unwrap().status, 200);
    assert_eq!(client.post_json("/predict", &job("later")).await.status, 200);
}

/// The prediction routes are answered before axum's router (`Predictions`); what it
/// leaves to the router is answered as before: an escaped name is decoded, other methods
/// get 405, other paths 404.
#[tokio::test]
async fn prediction_routes_answer_alike_before_and_through_the_router() {
    let (_dir, client) = client(ServeOptions::default());
    let plain = client.post_json("/models/obedient/predict", &job("same")).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let escaped = client.post_json("/models/obedi%65nt/predict", &job("same")).await;
    assert_eq!((escaped.status, escaped.json()), (200, plain.json()));
    assert_eq!(escaped.headers[MODEL_HEADER], plain.headers[MODEL_HEADER]);
    assert!(plain.headers.contains_key("x-request-id") && escaped.headers.contains_key("x-request-id"));
    let single = client.post_json("/predict", &job("same")).await;
    assert_eq!((single.status, single.json()), (200, plain.json()));
    let missing = client.post_json("/models/nothing/predict", &job("x")).await;
    assert_eq!((missing.status, error_code(&missing).as_str()), (404, "not_found"));
    assert!(missing.json()["error"]["message"].as_str().unwrap().contains("no model `nothing`"));
    assert_eq!(client.get("/models/obedient/predict").await.status, 405);
    assert_eq!(client.post_json("/models/obedient/predict/", &job("x")).await.status, 404);
    assert_eq!(client.post_json("/models/a/b/predict", &job("x")).await.status, 404);
}

#[tokio::test]
async fn api_key_auth() {
    let (_dir, client) = client(ServeOptions { api_key: Some("s3cret".into()), ..ServeOptions::default() });
    let send = |key: Option<(&'static str, &'static str)>| {
        let mut request = http::Request::post("/predict").header("content-type", "application/json");
        if let Some((name, value)) = key {
            request = request.header(name, value);
        }
        client.request(request.body(Body::from(r#"{"action": "x"}"#)).unwrap())
    };
    let missing = send(None).await;
    assert_eq!((missing.status, error_code(&missing).as_str()), (401, "unauthorized"));
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    assert_eq!(send(Some(("authorization", "Bearer wrong"))).await.status, 401);
    assert_eq!(send(Some(("authorization", "Bearer s3cre"))).await.status, 401);
    assert_eq!(send(Some(("authorization", "Bearer s3cret"))).await.status, 200);
    assert_eq!(send(Some(("x-api-key", "s3cret"))).await.status, 200);
    assert_eq!(client.get("/metrics").await.status, 401);
    assert_eq!(client.get("/openapi.json").await.status, 401);
    assert_eq!(client.get("/livez").await.status, 200, "probes need no key");
    assert_eq!(client.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn ready_only_once_every_model_is_loaded() {
    let app = App::new(ServeOptions::default());
    let client = TestClient::from_app(app.clone());
    assert_eq!(client.get("/livez").await.status, 200);
    let not_ready = client.get("/readyz").await;
    assert_eq!((not_ready.status, error_code(&not_ready).as_str()), (503, "not_ready"));
    let early = client.post_json("/predict", &job("x")).await;
    assert_eq!((early.status, error_code(&early).as_str()), (503, "not_ready"));
    let (_dir, loaded) = load::<Obedient>("obedient");
    app.set_models(vec![Box::new(loaded)]).unwrap();
    assert_eq!(client.get("/readyz").await.status, 200);
    assert_eq!(client.post_json("/predict", &job("x")).await.status, 200);
}

#[tokio::test]
async fn raw_bytes_in() {
    let (_dir, loaded) = load::<Bytecount>("bytecount");
    let client = TestClient::new(loaded).unwrap();
    let body = vec![0u8, 1, 2, 0, 255, 0];
    let response = client.post("/predict", body, "application/octet-stream").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({ "bytes": 6, "zeros": 3, "content_type": "application/octet-stream" }));
    let openapi = client.get("/openapi.json").await.json();
    let content = &openapi["paths"]["/predict"]["post"]["requestBody"]["content"];
    assert_eq!(content["application/octet-stream"]["schema"]["format"], "binary", "{content}");
}

async fn concurrently(client: &TestClient, bodies: &[serde_json::Value]) -> Vec<(u16, serde_json::Value)> {
    let tasks: Vec<_> = bodies
        .iter()
        .map(|body| {
            let client = client.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let r = client.post_json("/predict", &body).await;
                (r.status, r.json())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_groups_what_queued_while_the_previous_batch_ran() {
    let (_dir, loaded) = load::<Batched>("batched");
    let client = TestClient::with_models(vec![Box::new(loaded)], ServeOptions::default()).unwrap();
    let test = "groups";

    // A lone request does not wait for the delay (100 ms): nothing else is on its way.
    let started = Instant::now();
    assert_eq!(client.post_json("/predict", &item(test, 1.5, 0, 0)).await.json(), json!(3.0));
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(90), "lone request took {waited:?}");
    assert_eq!(batches(test), [1]);

    // Twelve requests queue while a slow batch runs, then go in batches of at most 4.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { client.post_json("/predict", &item(test, 0.5, 0, 300)).await.json() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bodies: Vec<_> = (1..=12).map(|x| item(test, f64::from(x), 0, 0)).collect();
    let results = concurrently(&client, &bodies).await;
    for (x, (status, y)) in (1..=12).zip(&results) {
        assert_eq!((*status, y.clone()), (200, json!(2.0 * f64::from(x))));
    }
    assert_eq!(slow.await.unwrap(), json!(1.0));
    let sizes = batches(test);
    assert_eq!(sizes[..2], [1, 1], "the lone request, then the slow one: {sizes:?}");
    assert_eq!(sizes[2..], [4, 4, 4], "max_batch_size respected, queued requests grouped: {sizes:?}");

    let metrics = client.get("/metrics").await.text();
    assert!(metrics.contains("runner_batch_size_count{model=\"batched\",version=\"1\"} 5"), "{metrics}");
    let info = client.get("/models/batched").await.json();
    assert_eq!(info["batching"], json!({ "max_batch_size": 4, "max_delay_ms": 100 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waits_for_requests_in_preprocessing_up_to_the_delay() {
    let (_dir, loaded) = load::<Batched>("batched");
    let options = ServeOptions { max_delay: Some(Duration::from_millis(400)), ..ServeOptions::default() };
    let client = TestClient::with_models(vec![Box::new(loaded)], options).unwrap();

    // The first request is queued after 10 ms; the second, still in preprocessing then,
    // joins its batch 90 ms later, well before the delay.
    let test = "waits";
    let started = Instant::now();
    let results = concurrently(&client, &[item(test, 1.0, 10, 0), item(test, 2.0, 100, 0)]).await;
    assert_eq!(results, [(200, json!(2.0)), (200, json!(4.0))]);
    assert_eq!(batches(test), [2]);
    assert!(started.elapsed() < Duration::from_millis(400), "took {:?}", started.elapsed());

    // A request still preprocessing past the delay is not waited for.
    let test = "delay";
    let started = Instant::now();
    let first = {
        let client = client.clone();
        tokio::spawn(async move {
            let answer = client.post_json("/predict", &item(test, 1.0, 10, 0)).await.json();
            (answer, started.elapsed())
        })
    };
    let second = client.post_json("/predict", &item(test, 2.0, 900, 0)).await.json();
    let (answer, first_took) = first.await.unwrap();
    assert_eq!((answer, second), (json!(2.0), json!(4.0)));
    assert_eq!(batches(test), [1, 1]);
    assert!(
        first_took >= Duration::from_millis(400) && first_took < Duration::from_millis(850),
        "the first request waited for the delay, not for the second: {first_took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_the_wrong_output_count_fails_alone() {
    let (_dir, loaded) = load::<Batched>("batched");
    let options = ServeOptions {
        max_batch_size: Some(2),
        max_delay: Some(Duration::from_millis(300)),
        ..ServeOptions::default()
    };
    let client = TestClient::with_models(vec![Box::new(loaded)], options).unwrap();
    let test = "mismatch";
    // The second request is still in preprocessing when the first is queued: one batch.
    let results = concurrently(&client, &[item(test, -1.0, 5, 0), item(test, 5.0, 30, 0)]).await;
    assert_eq!(batches(test), [2]);
    for (status, body) in &results {
        assert_eq!(*status, 500, "{body}");
        assert_eq!(body["error"]["code"], "batch_mismatch");
        assert!(body["error"]["message"].as_str().unwrap().contains("1 outputs for 2 inputs"), "{body}");
    }
    let again = client.post_json("/predict", &item(test, 4.0, 0, 0)).await.json();
    assert_eq!(again, json!(8.0), "the server keeps serving");
}

#[tokio::test]
async fn metrics_count_requests_hooks_and_in_flight() {
    let (_dir, client) = client(ServeOptions::default());
    for action in ["a", "b", "fail"] {
        client.post_json("/predict", &job(action)).await;
    }
    let metrics = client.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = metrics.text();
    for line in [
        "runner_requests_total{model=\"obedient\",version=\"1\",status=\"200\"} 2",
        "runner_requests_total{model=\"obedient\",version=\"1\",status=\"500\"} 1",
        "runner_request_duration_seconds_count{model=\"obedient\",version=\"1\"} 3",
        "runner_hook_duration_seconds_count{model=\"obedient\",version=\"1\",hook=\"predict\"} 3",
        "runner_hook_duration_seconds_count{model=\"obedient\",version=\"1\",hook=\"preprocess_data\"} 3",
        "runner_hook_duration_seconds_count{model=\"obedient\",version=\"1\",hook=\"postprocess_data\"} 2",
        "runner_in_flight_requests{model=\"obedient\",version=\"1\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn openapi_describes_the_runner_types() {
    let (_dir, client) = client(ServeOptions::default());
    let doc = client.get("/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let operation = &doc["paths"]["/models/obedient/predict"]["post"];
    let schema_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
    assert_eq!(schema_ref, "#/components/schemas/Job");
    let job = &doc["components"]["schemas"]["Job"];
    assert_eq!(job["required"], json!(["action"]), "{job}");
    assert!(job["properties"]["action"]["description"].as_str().unwrap().contains("What to do"));
    let ok = &operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(ok, "#/components/schemas/Done");
    for status in ["400", "408", "413", "422", "500", "503", "504"] {
        assert!(operation["responses"][status].is_object(), "no {status} response");
    }
    assert!(doc["paths"]["/predict"].is_object(), "single model: /predict documented");
    assert!(doc["components"]["schemas"]["Error"].is_object());
}

#[tokio::test]
async fn model_metadata() {
    let (_dir, client) = client(ServeOptions::default());
    let list = client.get("/models").await.json();
    assert_eq!(list["models"][0]["model"], "obedient:1");
    assert_eq!(list["models"][0]["runner"], "obedient");
    let one = client.get("/models/obedient").await.json();
    assert_eq!(one["manifest"]["runner"]["name"], "obedient");
    assert_eq!(one["manifest"]["save"]["type"], "default");
}

#[tokio::test]
async fn several_models_route_by_repository() {
    let (_a, obedient) = load::<Obedient>("obedient");
    let (_b, bytecount) = load::<Bytecount>("bytecount");
    let models: Vec<Box<dyn DynModel>> = vec![Box::new(obedient), Box::new(bytecount)];
    let client = TestClient::with_models(models, ServeOptions::default()).unwrap();
    let single = client.post_json("/predict", &job("x")).await;
    assert_eq!(single.status, 404);
    assert!(single.json()["error"]["message"].as_str().unwrap().contains("bytecount, obedient"));
    assert_eq!(client.post_json("/models/obedient/predict", &job("x")).await.status, 200);
    assert_eq!(
        client.post("/models/bytecount/predict", Bytes::from_static(b"abc"), "text/plain").await.json()["bytes"],
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    register_model::<Obedient>("obedient").model(Unit).register(&registry).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runner_core::serve::serve_on(
        listener,
        Arc::new(registry),
        vec!["obedient:latest".parse().unwrap()],
        ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
        || {},
    ));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}");
    let started = Instant::now();
    while http.get(format!("{url}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let slow = {
        let http = http.clone();
        let url = url.clone();
        tokio::spawn(async move {
            http.post(format!("{url}/predict")).json(&json!({ "action": "slow", "sleep_ms": 500 })).send().await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let response = slow.await.unwrap().expect("the in-flight request was answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), json!({ "done": "slow" }));
    server.await.unwrap().expect("the server stopped cleanly");
    assert!(http.get(format!("{url}/livez")).send().await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn fast_pipelines_move_inline_where_panics_are_still_caught() {
    let (_dir, client) = client(ServeOptions::default());
    assert_eq!(client.get("/models/obedient").await.json()["execution"]["mode"], "blocking_pool");
    for _ in 0..64 {
        assert_eq!(client.post_json("/predict", &job("fast")).await.status, 200);
    }
    let execution = client.get("/models/obedient").await.json()["execution"].clone();
    assert_eq!(execution["mode"], "inline", "{execution}");
    let panicked = client.post_json("/predict", &job("panic")).await;
    assert_eq!((panicked.status, error_code(&panicked).as_str()), (500, "panic"));
    assert_eq!(client.post_json("/predict", &job("after")).await.status, 200);

    // Always the pool when the threshold is zero.
    let (_dir, pooled) = client_with_threshold(Duration::ZERO);
    for _ in 0..64 {
        pooled.post_json("/predict", &job("fast")).await;
    }
    assert_eq!(pooled.get("/models/obedient").await.json()["execution"]["mode"], "blocking_pool");
}

fn client_with_threshold(threshold: Duration) -> (tempfile::TempDir, TestClient) {
    client(ServeOptions { inline_threshold: threshold, ..ServeOptions::default() })
}

#[tokio::test]
async fn every_rejection_answers_json_even_the_frameworks_own() {
    let (_dir, client) = client(ServeOptions::default());
    // A path that is not UTF-8 once decoded: axum's Path rejects it, in our shape.
    let bad = client.post("/models/%FF/predict", "{}", "application/json").await;
    assert_eq!((bad.status, error_code(&bad).as_str()), (400, "bad_request"), "{}", bad.text());
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("/models/%FF/predict"), "{}", bad.text());
    // The V2 routes answer in the V2 shape, {"error": "..."}.
    let v2 = client.post("/v2/models/%FF/infer", "{}", "application/json").await;
    assert_eq!(v2.status, 400, "{}", v2.text());
    assert!(v2.json()["error"].as_str().unwrap().contains("UTF-8"), "{}", v2.text());
    // A route that exists, with a method it does not answer.
    for (method, path) in [("GET", "/predict"), ("DELETE", "/models/obedient"), ("PUT", "/v2/models/obedient/infer")] {
        let request = http::Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        let response = client.request(request).await;
        assert_eq!((response.status, error_code(&response).as_str()), (405, "method_not_allowed"), "{method} {path}");
        let message = response.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(path) && message.contains(method), "{message}");
        assert!(response.headers.contains_key("allow"), "405 names the allowed methods: {:?}", response.headers);
    }
}
