//! runner-onnx end to end on real exported models (scripts/export_onnx.py writes them to
//! examples/models/onnx: a scikit-learn pipeline, a small CNN, all-MiniLM-L6-v2):
//! registered with `register_onnx_model`, loaded back, served as JSON, V2 and gRPC, with
//! NVIDIA's tritonclient as the client.

use std::path::PathBuf;
use std::sync::Arc;

use runner_core::serve::{ServeOptions, TestClient};
use runner_core::{load_any, Backend, LocalRegistry, Registry};
use runner_onnx::{register_onnx_model, Concat, DataType, Onnx, OnnxModel, PadZeros, Tensor, TensorSpec, Tensors};
use serde_json::json;

/// The exported example models (scripts/torch-env.sh with RUNNER_TORCH_MODELS=1 writes
/// them).
fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/models/onnx")
}

fn model(file: &str) -> OnnxModel {
    let path = models().join(file);
    OnnxModel::load(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (RUNNER_TORCH_MODELS=1 . scripts/torch-env.sh exports the example models)", path.display())
    })
}

fn registry() -> (tempfile::TempDir, Arc<LocalRegistry>) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(LocalRegistry::open(dir.path()).unwrap());
    (dir, registry)
}

fn client(registry: &dyn Registry, model: &str) -> TestClient {
    let loaded = load_any(registry, &model.parse().unwrap()).unwrap();
    TestClient::with_models(vec![loaded], ServeOptions::default()).unwrap()
}

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> (String, DataType, Vec<i64>) {
    (name.to_string(), datatype, shape.to_vec())
}

fn specs(specs: &[TensorSpec]) -> Vec<(String, DataType, Vec<i64>)> {
    specs.iter().map(|s| (s.name.clone(), s.datatype, s.shape.clone())).collect()
}

#[test]
fn signatures_come_from_the_graphs() {
    let iris = model("iris.onnx");
    assert_eq!(specs(&iris.signature().inputs), [spec("features", DataType::F32, &[-1, 4])]);
    assert_eq!(
        specs(&iris.signature().outputs),
        [spec("label", DataType::I64, &[-1]), spec("probabilities", DataType::F32, &[-1, 3])]
    );
    let minilm = model("minilm.onnx");
    let inputs = &minilm.signature().inputs;
    assert_eq!(
        inputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["input_ids", "attention_mask", "token_type_ids"]
    );
    assert!(inputs.iter().all(|s| s.datatype == DataType::I64 && s.shape == [-1, -1]));
    assert_eq!(inputs[0].describe_shape(), "[batch, sequence]");
    assert_eq!(
        specs(&minilm.signature().outputs),
        [spec("token_embeddings", DataType::F32, &[-1, -1, 384]), spec("mask", DataType::I64, &[-1, -1])]
    );
    let v2 = model("cnn.onnx").signature().v2();
    assert_eq!(v2.platform, "onnxruntime_onnx");
    assert_eq!((v2.inputs[0].datatype.as_str(), v2.inputs[0].shape.as_slice()), ("FP32", &[-1, 3, 224, 224][..]));
}

#[test]
fn a_file_that_is_not_onnx_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, b"this is not a protobuf").unwrap();
    let error = OnnxModel::load(&path).unwrap_err().to_string();
    assert!(error.contains("cannot load the ONNX model") && error.contains("broken.onnx"), "{error}");
    let missing = OnnxModel::load(dir.path().join("nowhere.onnx")).unwrap_err().to_string();
    assert!(missing.contains("nowhere.onnx is not a file"), "{missing}");
}

#[test]
fn iris_is_registered_served_and_checked() {
    let (_dir, registry) = registry();
    let registered = register_onnx_model("onnx-iris", model("iris.onnx")).register(registry.as_ref()).unwrap();
    let manifest = &registered.manifest;
    assert_eq!(manifest.runner.name, "onnx");
    assert!(manifest.requirements.iter().any(|r| r.starts_with("onnxruntime==1.31")), "{:?}", manifest.requirements);
    let file = manifest.files.iter().find(|f| f.path == "model.onnx").expect("the graph is in the volume");
    let bytes = std::fs::read(models().join("iris.onnx")).unwrap();
    use sha2::Digest;
    assert_eq!(file.sha256, hex::encode(sha2::Sha256::digest(&bytes)), "stored as it is");
    let props = manifest.save.props.as_ref().unwrap();
    assert_eq!(props["format"], "onnx");
    assert!(props["signature"].contains("probabilities"));

    let rows = json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]);
    let loaded = load_any(registry.as_ref(), &"onnx-iris:latest".parse().unwrap()).unwrap();
    let answer = loaded.run_json(rows.clone()).unwrap();
    assert_eq!(answer["label"], json!([0, 2, 1]), "{answer}");
    for row in answer["probabilities"].as_array().unwrap() {
        let p: Vec<f64> = serde_json::from_value(row.clone()).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{p:?}");
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client(registry.as_ref(), "onnx-iris:1");
    rt.block_on(async {
        // By name, bare, and explicit with integers for the float input: one answer.
        for body in [json!({"features": rows}), rows.clone(), json!({"shape": [3, 4], "data": rows})] {
            let ok = client.post_json("/predict", &body).await;
            assert_eq!(ok.status, 200, "{}", ok.text());
            assert_eq!(ok.json(), answer);
        }
        let ints = client.post_json("/predict", &json!({"features": [[5, 3, 1, 0]]})).await;
        assert_eq!((ints.status, ints.json()["label"].clone()), (200, json!([0])), "{}", ints.text());

        let refused = |body: serde_json::Value| {
            let client = &client;
            async move {
                let r = client.post_json("/predict", &body).await;
                (r.status, r.text())
            }
        };
        let (status, text) = refused(json!({"features": [[1, 2, 3]]})).await;
        assert_eq!(status, 422);
        assert!(text.contains("input `features` takes FP32 of shape [-1, 4], but has shape [1, 3]"), "{text}");
        let (status, text) = refused(json!({"features": [[true, false, true, true]]})).await;
        assert_eq!(status, 422);
        assert!(text.contains("`features`") && text.contains("holds `true`"), "{text}");
        let (status, text) = refused(json!({"features": [[1, 2, 3, 4]], "petals": [1]})).await;
        assert_eq!(status, 422);
        assert!(text.contains("unknown input `petals`; the model takes `features`"), "{text}");
        let (status, text) = refused(json!({"features": [[1, 2, 3, 4], [1]]})).await;
        assert_eq!(status, 422);
        assert!(text.contains("ragged"), "{text}");

        let metadata = client.get("/v2/models/onnx-iris").await.json();
        assert_eq!(metadata["platform"], "onnxruntime_onnx");
        assert_eq!(metadata["inputs"], json!([{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]));
        assert_eq!(
            metadata["outputs"],
            json!([{"name": "label", "datatype": "INT64", "shape": [-1]}, {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}])
        );
        let request = json!({"inputs": [{"name": "features", "shape": [3, 4], "datatype": "FP32", "data": rows}]});
        let infer = client.post_json("/v2/models/onnx-iris/infer", &request).await;
        assert_eq!(infer.status, 200, "{}", infer.text());
        let outputs = infer.json()["outputs"].clone();
        assert_eq!(outputs[0]["name"], "label");
        assert_eq!(outputs[0]["data"], json!([0, 2, 1]));
        assert_eq!(outputs[1]["shape"], json!([3, 3]));
        let wrong = json!({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "BOOL", "data": [true, false, true, true]}]});
        let (status, text) = {
            let r = client.post_json("/v2/models/onnx-iris/infer", &wrong).await;
            (r.status, r.text())
        };
        assert_eq!(status, 400, "V2 answers 400 as Triton does: {text}");
        assert!(text.contains("input `features` takes FP32"), "{text}");
    });
}

/// A graph of text: strings are V2 `BYTES`, in and out, as JSON and as binary data.
#[test]
fn strings_are_bytes_in_json_and_binary() {
    let (_dir, registry) = registry();
    let strings = model("strings.onnx");
    assert_eq!(specs(&strings.signature().inputs), [spec("text", DataType::Bytes, &[-1])]);
    register_onnx_model("strings", strings).register(registry.as_ref()).unwrap();
    let client = client(registry.as_ref(), "strings:1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ok = client.post_json("/predict", &json!({"text": ["abc", "Déjà vu 🚀", ""]})).await;
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(ok.json(), json!({"echo": ["abc (seen)", "Déjà vu 🚀 (seen)", " (seen)"]}));
        let numbers = client.post_json("/predict", &json!({"text": [1, 2]})).await;
        assert_eq!(numbers.status, 422, "{}", numbers.text());
        assert!(numbers.text().contains("`text`"), "{}", numbers.text());

        // V2 with the binary extension both ways: each element a 4-byte length and its bytes.
        let mut data = Vec::new();
        for text in ["xy", "é"] {
            data.extend_from_slice(&(text.len() as u32).to_le_bytes());
            data.extend_from_slice(text.as_bytes());
        }
        let header = json!({
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": data.len()}}],
            "outputs": [{"name": "echo", "parameters": {"binary_data": true}}]
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&data);
        let request = axum::http::Request::post("/v2/models/strings/infer")
            .header("content-type", "application/octet-stream")
            .header("inference-header-content-length", header.len())
            .body(axum::body::Body::from(body))
            .unwrap();
        let answer = client.request(request).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let length: usize = answer.headers["inference-header-content-length"].to_str().unwrap().parse().unwrap();
        let (json_part, raw) = answer.body.split_at(length);
        let json_part: serde_json::Value = serde_json::from_slice(json_part).unwrap();
        assert_eq!(json_part["outputs"][0]["datatype"], "BYTES");
        let mut want = Vec::new();
        for text in ["xy (seen)", "é (seen)"] {
            want.extend_from_slice(&(text.len() as u32).to_le_bytes());
            want.extend_from_slice(text.as_bytes());
        }
        assert_eq!(raw, &want[..]);
    });
}

/// Iris rows, one request each, and the same rows batched: the same answers.
#[test]
fn batched_runs_match_one_at_a_time() {
    let iris = model("iris.onnx");
    let requests: Vec<Tensors> = (0..5)
        .map(|i| {
            let rows = 1 + i % 3;
            let values: Vec<f32> = (0..rows * 4).map(|k| 4.0 + ((k * 7 + i) % 11) as f32 * 0.3).collect();
            Tensors::new().with("features", Tensor::from_vec([rows as i64, 4], values).unwrap())
        })
        .collect();
    let one_by_one: Vec<Tensors> = requests.iter().map(|r| iris.run(r).unwrap()).collect();
    let batched = <Onnx<Concat> as Backend>::predict_batch(&iris, requests).unwrap();
    assert_eq!(batched.len(), one_by_one.len());
    for (b, o) in batched.iter().zip(&one_by_one) {
        assert_eq!(b.get("label"), o.get("label"));
        let (pb, po) = (b.get("probabilities").unwrap(), o.get("probabilities").unwrap());
        assert_eq!(pb.shape(), po.shape());
        let worst = pb
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .zip(po.to_vec::<f32>().unwrap())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-6, "{worst}");
    }
}

/// MiniLM on sentences of different lengths: a padded batch gives each sentence the
/// token embeddings it gets alone, at its own positions.
#[test]
fn padded_batches_match_unpadded_runs_of_a_sequence_model() {
    let minilm = model("minilm.onnx");
    let sentence = |ids: &[i64]| {
        let n = ids.len() as i64;
        Tensors::new()
            .with("input_ids", Tensor::from_vec([1, n], ids.to_vec()).unwrap())
            .with("attention_mask", Tensor::from_vec([1, n], vec![1i64; ids.len()]).unwrap())
            .with("token_type_ids", Tensor::from_vec([1, n], vec![0i64; ids.len()]).unwrap())
    };
    // [CLS] ... [SEP] in BERT's vocabulary.
    let requests = vec![
        sentence(&[101, 7592, 102]),
        sentence(&[101, 1037, 2158, 2003, 5983, 2833, 1012, 102]),
        sentence(&[101, 102]),
    ];
    let alone: Vec<Tensors> = requests.iter().map(|r| minilm.run(r).unwrap()).collect();
    let batched = <Onnx<PadZeros> as Backend>::predict_batch(&minilm, requests.clone()).unwrap();
    for ((b, a), request) in batched.iter().zip(&alone).zip(&requests) {
        let n = request.get("input_ids").unwrap().shape()[1] as usize;
        let (b, a) = (b.get("token_embeddings").unwrap(), a.get("token_embeddings").unwrap());
        assert_eq!(b.shape(), [1, 8, 384], "padded to the longest");
        let (bv, av) = (b.to_vec::<f32>().unwrap(), a.to_vec::<f32>().unwrap());
        let worst = bv[..n * 384].iter().zip(&av).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-4, "{worst}");
    }
    // Concat runs sentences of different lengths apart: unpadded answers.
    let apart = <Onnx<Concat> as Backend>::predict_batch(&minilm, requests).unwrap();
    assert_eq!(apart[2].get("token_embeddings").unwrap().shape(), [1, 2, 384]);
}

fn python() -> PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    venv.join("bin/python")
}

/// NVIDIA's tritonclient against `serve` with the three models, over HTTP (JSON and
/// binary tensors) and gRPC: requests built from the V2 metadata alone, answers equal to
/// Python onnxruntime's on the same inputs (and scikit-learn's for iris), bad tensors
/// refused naming the input.
#[test]
fn tritonclient_against_the_three_models() {
    let (_dir, registry) = registry();
    for (name, file) in [("onnx-iris", "iris.onnx"), ("onnx-cnn", "cnn.onnx"), ("onnx-minilm", "minilm.onnx")] {
        register_onnx_model(name, model(file)).register(registry.as_ref()).unwrap();
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tritonclient_onnx.py");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let output = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let grpc_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = ["onnx-iris:1", "onnx-cnn:1", "onnx-minilm:1"].iter().map(|m| m.parse().unwrap()).collect();
        let server = tokio::spawn(runner_core::serve::serve_on(
            listener,
            registry,
            served,
            ServeOptions { grpc_addr: Some(grpc_addr), ..ServeOptions::default() },
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python())
                .arg(script)
                .args([addr.to_string(), grpc_addr.to_string(), models().display().to_string()])
                .output()
        })
        .await
        .unwrap()
        .expect("running the project's Python (scripts/torch-env.sh)");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        output
    });
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && text.contains("all checks passed"), "tritonclient against serve:\n{text}");
}
