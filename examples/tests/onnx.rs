//! The ONNX examples: registered by their declared defaults (as `register` does), MiniLM's
//! embeddings against sentence-transformers' (and runner-torch's MiniLM, with both
//! features), and a user's own .onnx file registered and served by the two commands the
//! README gives.
#![cfg(feature = "onnx")]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use runner_core::serve::{ServeOptions, TestClient};
use runner_core::{find_runner, Loaded, LocalRegistry, RegisterOptions};
use runner_examples::onnx::{self, MiniLmOnnx};
use runner_examples::sentences::EmbedRequest;
use serde_json::{json, Value};

mod reference;
use reference::{max_difference, reference};

#[test]
fn minilm_on_onnx_runtime_matches_sentence_transformers_alone_and_batched() {
    let reference = reference();
    let (sentences, want) = (reference.sentences, reference.embeddings);
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    let registered = find_runner("onnx-minilm").unwrap().register(&registry, &RegisterOptions::default()).unwrap();
    assert!(registered.manifest.files.iter().any(|f| f.path == "tokenizer.json"));
    assert!(registered.manifest.files.iter().any(|f| f.path == "model.onnx"));
    let loaded = Loaded::<MiniLmOnnx>::load(&registry, &"onnx-minilm:latest".parse().unwrap()).unwrap();

    // Every sentence in one request (padded to the longest inside it).
    let all = loaded.run(EmbedRequest { sentences: sentences.clone() }).unwrap();
    let difference = max_difference(&all.embeddings, &want);
    assert!(difference < 1e-4, "max difference from sentence-transformers: {difference}");

    // One request per sentence, batched by the server across requests of different lengths
    // (PadZeros): the same embeddings.
    let options =
        ServeOptions { max_batch_size: Some(8), max_delay: Some(Duration::from_millis(50)), ..ServeOptions::default() };
    let client = Arc::new(TestClient::with_models(vec![Box::new(loaded)], options).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let batched: Vec<Vec<f32>> = rt.block_on(async {
        let tasks: Vec<_> = sentences
            .iter()
            .map(|s| {
                let client = client.clone();
                let body = json!({"sentences": [s]});
                tokio::spawn(async move { client.post_json("/predict", &body).await })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            let response = task.await.unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            out.push(serde_json::from_value::<Vec<Vec<f32>>>(response.json()["embeddings"].clone()).unwrap().remove(0));
        }
        let empty = client.post_json("/predict", &json!({"sentences": []})).await;
        assert_eq!(empty.status, 422);
        out
    });
    let difference = max_difference(&batched, &want);
    assert!(difference < 1e-4, "batched across requests: max difference {difference}");

    // The same as runner-torch's MiniLM on the same sentences.
    #[cfg(feature = "torch")]
    {
        use runner_examples::minilm::MiniLm;
        let registered = find_runner("minilm").unwrap().register(&registry, &RegisterOptions::default()).unwrap();
        let torch = Loaded::<MiniLm>::load(&registry, &registered.manifest.model.to_string().parse().unwrap()).unwrap();
        let torch = torch.run(EmbedRequest { sentences }).unwrap();
        let difference = max_difference(&torch.embeddings, &all.embeddings);
        assert!(difference < 1e-4, "ONNX Runtime and libtorch differ by {difference}");
    }
}

#[test]
fn iris_and_the_cnn_answer_generic_json_from_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    for name in ["onnx-iris", "onnx-cnn"] {
        find_runner(name).unwrap().register(&registry, &RegisterOptions::default()).unwrap();
    }
    let iris = runner_core::load_any(&registry, &"onnx-iris:1".parse().unwrap()).unwrap();
    let answer = iris.run_json(json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])).unwrap();
    assert_eq!(answer["label"], json!([0, 2]), "{answer}");
    let cnn = runner_core::load_any(&registry, &"onnx-cnn:1".parse().unwrap()).unwrap();
    let image = json!({"shape": [2, 3, 224, 224], "data": vec![0.5; 2 * 3 * 224 * 224]});
    let logits = cnn.run_json(json!({ "image": image })).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(logits["logits"].clone()).unwrap();
    assert_eq!((rows.len(), rows[0].len()), (2, 10));
    assert_eq!(rows[0], rows[1], "the same image, the same logits");
}

/// The README's two commands for a user with only an .onnx file: `register-onnx` then
/// `serve`, as processes on a real socket.
#[test]
fn an_onnx_file_is_registered_and_served_in_two_commands() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    let file = onnx::model_dir().join("iris.onnx");
    let registered = Command::new(env!("CARGO_BIN_EXE_register-onnx"))
        .args([file.to_str().unwrap(), "my-model", "--registry", registry.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&registered.stdout);
    assert!(registered.status.success(), "{text}{}", String::from_utf8_lossy(&registered.stderr));
    assert!(text.contains("registered my-model:1"), "{text}");
    assert!(
        text.contains("input features FP32 [-1, 4]") && text.contains("output probabilities FP32 [-1, 3]"),
        "{text}"
    );

    let broken = dir.path().join("broken.onnx");
    std::fs::write(&broken, b"not a graph").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_register-onnx"))
        .args([broken.to_str().unwrap(), "broken", "--registry", registry.to_str().unwrap()])
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && error.contains("cannot load the ONNX model"), "{error}");

    let (mut serve, url) = serve(&["my-model:latest", "--registry", registry.to_str().unwrap()]);
    let client = reqwest::blocking::Client::new();
    let answer: Value =
        client.post(format!("{url}/predict")).json(&json!([[5.1, 3.5, 1.4, 0.2]])).send().unwrap().json().unwrap();
    let metadata: Value = client.get(format!("{url}/v2/models/my-model")).send().unwrap().json().unwrap();
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert_eq!(answer["label"], json!([0]), "{answer}");
    assert_eq!(metadata["platform"], "onnxruntime_onnx");
}

/// A model whose graph is corrupt in the volume is a clear load error naming the file, and
/// the server keeps answering with what it serves: the other model, and the version the
/// alias pointed at before.
#[test]
fn a_corrupt_graph_in_the_volume_is_a_clear_load_error_and_serving_goes_on() {
    use runner_core::registry::AliasOptions;
    use runner_core::Registry;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let register = |file: &str, repository: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_register-onnx"))
            .args([onnx::model_dir().join(file).to_str().unwrap(), repository, "--registry", root.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    register("iris.onnx", "flowers");
    register("cnn.onnx", "images");
    let registry = LocalRegistry::open(&root).unwrap();
    registry.set_alias("default", "images", "prod", 1, &AliasOptions::default()).unwrap();

    let (mut serve, url) =
        serve(&["flowers:1", "images:prod", "--follow-interval-ms", "50", "--registry", root.to_str().unwrap()]);
    let client = reqwest::blocking::Client::new();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // images:2 is registered, its graph corrupted in the volume, and only then pointed at.
    register("minilm.onnx", "images");
    let manifest = registry.manifest(&runner_core::ModelId::new("default", "images", 2).unwrap()).unwrap();
    let sha = &manifest.files.iter().find(|f| f.path == "model.onnx").unwrap().sha256;
    let blob = root.join("blobs/sha256").join(&sha[..2]).join(sha);
    let mut permissions = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&blob, permissions).unwrap();
    std::fs::write(&blob, b"not a graph any more").unwrap();
    registry.set_alias("default", "images", "prod", 2, &AliasOptions::default()).unwrap();

    let info = || client.get(format!("{url}/models/images")).send().unwrap().json::<Value>().unwrap();
    wait("the failed load to be reported", &|| !info()["follows"]["failed"].is_null());
    let info = info();
    let error = info["follows"]["failed"]["error"].as_str().unwrap().to_string();
    let image = json!({"image": {"shape": [1, 3, 224, 224], "data": vec![0.1; 3 * 224 * 224]}});
    let still = client.post(format!("{url}/models/images/predict")).json(&image).send().unwrap();
    let (still_status, still_version) =
        (still.status(), still.headers()["x-runner-model"].to_str().unwrap().to_string());
    let flowers =
        client.post(format!("{url}/models/flowers/predict")).json(&json!([[5.1, 3.5, 1.4, 0.2]])).send().unwrap();
    let flowers_status = flowers.status();
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert_eq!(info["number"], 1, "{info}");
    assert!(error.contains("model.onnx") && error.contains("corrupt"), "{error}");
    assert_eq!((still_status.as_u16(), still_version.as_str()), (200, "images:1"));
    assert_eq!(flowers_status, 200);
}

/// ONNX Runtime's library missing, or a file that is not it: an error naming the file and
/// the fix, never a crash.
#[test]
fn a_missing_or_wrong_onnx_runtime_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_ort = dir.path().join("libonnxruntime.so");
    std::fs::write(&not_ort, b"\x7fELF but not really").unwrap();
    for (library, says) in [
        (dir.path().join("missing.so"), "missing.so, which is not a file"),
        (not_ort.clone(), "cannot load ONNX Runtime from"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_register-onnx"))
            .args([onnx::model_dir().join("iris.onnx").to_str().unwrap(), "iris", "--registry"])
            .arg(dir.path().join("registry"))
            .env("ORT_DYLIB_PATH", &library)
            .output()
            .unwrap();
        let error = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{error}");
        assert!(error.contains(says) && error.contains("ORT_DYLIB_PATH"), "{error}");
        assert!(!error.contains("panicked"), "{error}");
    }
}

/// This crate's `serve` with `args` on a free port, once ready: the process and its URL.
fn serve(args: &[&str]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let process = Command::new(env!("CARGO_BIN_EXE_serve"))
        .args(args)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (client, url) = (reqwest::blocking::Client::new(), format!("http://127.0.0.1:{port}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client.get(format!("{url}/readyz")).send().map(|r| r.status() != 200).unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "serve did not get ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, url)
}
