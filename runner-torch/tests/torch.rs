//! runner-torch end to end: tensors as JSON, a traced module registered with
//! `register_torch_model`, loaded back, served (JSON, V2, batching).

use std::sync::Arc;

use runner_core::serve::{ServeOptions, TestClient};
use runner_core::{load_any, Backend, LocalRegistry, Registry};
use runner_torch::tch::{CModule, Device, Kind, Tensor};
use runner_torch::{register_torch_model, Concat, DType, PadZeros, TensorData, Torch, TorchModule};
use serde_json::json;

/// `y = x · W + b` with known weights (W[i][j] = i - j, b[j] = j), traced.
fn linear(inputs: i64, outputs: i64) -> CModule {
    let w =
        Tensor::from_slice(&(0..inputs).flat_map(|i| (0..outputs).map(move |j| (i - j) as f32)).collect::<Vec<_>>())
            .reshape([inputs, outputs]);
    let b = Tensor::arange(outputs, (Kind::Float, Device::Cpu));
    let example = Tensor::zeros([1, inputs], (Kind::Float, Device::Cpu));
    let mut forward = |xs: &[Tensor]| vec![xs[0].matmul(&w) + &b];
    CModule::create_by_tracing("Linear", "forward", &[example], &mut forward).unwrap()
}

fn expected(x: &[f32], outputs: i64) -> Vec<f32> {
    (0..outputs).map(|j| x.iter().enumerate().map(|(i, v)| v * (i as i64 - j) as f32).sum::<f32>() + j as f32).collect()
}

fn registry() -> (tempfile::TempDir, Arc<LocalRegistry>) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(LocalRegistry::open(dir.path()).unwrap());
    (dir, registry)
}

fn client(registry: &dyn Registry, model: &str, options: ServeOptions) -> TestClient {
    let loaded = load_any(registry, &model.parse().unwrap()).unwrap();
    TestClient::with_models(vec![loaded], options).unwrap()
}

#[test]
fn tensor_json_forms_and_errors() {
    let nested: TensorData = serde_json::from_str("[[1, 2.5], [3, 4]]").unwrap();
    assert_eq!((nested.shape(), nested.dtype()), (&[2i64, 2][..], DType::F32));
    assert_eq!(nested.to_f32(), vec![1.0, 2.5, 3.0, 4.0]);
    let ints: TensorData = serde_json::from_str("[[1, 2, 3]]").unwrap();
    assert_eq!(ints.dtype(), DType::I64);
    let object: TensorData =
        serde_json::from_str(r#"{"shape": [2, 2], "dtype": "FP64", "data": [[1, 2], [3, 4]]}"#).unwrap();
    assert_eq!((object.shape(), object.dtype()), (&[2i64, 2][..], DType::F64));
    let tensor = object.to_tensor().unwrap();
    assert_eq!(tensor.kind(), Kind::Double);
    let back = TensorData::from_tensor(&(tensor * 2.0)).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json!([[2.0, 4.0], [6.0, 8.0]]));
    // Out of every kind, row-major even when the tensor's memory is not.
    let grid = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
    let out = |t: &Tensor| serde_json::to_value(TensorData::from_tensor(t).unwrap()).unwrap();
    assert_eq!(out(&grid.tr()), json!([[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]));
    assert_eq!(out(&grid.to_kind(Kind::Int)), json!([[0, 1, 2], [3, 4, 5]]));
    assert_eq!(out(&grid.to_kind(Kind::BFloat16)), json!([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]));
    assert_eq!(out(&grid.gt(2.5)), json!([[false, false, false], [true, true, true]]));
    assert_eq!(TensorData::from_tensor(&grid.to_kind(Kind::Half)).unwrap().dtype(), DType::F16);
    let scalar: TensorData = serde_json::from_str("7").unwrap();
    assert_eq!(scalar.shape(), &[] as &[i64]);
    assert_eq!(serde_json::to_string(&scalar).unwrap(), "7");

    let error = |text: &str| serde_json::from_str::<TensorData>(text).unwrap_err().to_string();
    let ragged = error("[[1, 2], [3]]");
    assert!(ragged.contains("ragged") && ragged.contains("element 1"), "{ragged}");
    let deep = error("[[[1], [2]], [[3], [4, 5]]]");
    assert!(deep.contains("the array at [1]") && deep.contains("ragged"), "{deep}");
    assert!(error("[1, [2]]").contains("ragged"));
    assert!(error("[true, 1]").contains("mixes booleans and numbers"));
    let count = error(r#"{"shape": [2, 3], "data": [1, 2, 3]}"#);
    assert!(count.contains("holds 6 elements") && count.contains("has 3"), "{count}");
    let int_dtype = error(r#"{"shape": [2], "dtype": "int64", "data": [1.5, 2]}"#);
    assert!(int_dtype.contains("int64") && int_dtype.contains("1.5"), "{int_dtype}");
    assert!(error(r#"{"dtype": "float7", "data": [1]}"#).contains("unknown dtype `float7`"));
    assert!(error(r#"{"shape": [1], "data": [1], "extra": 1}"#).contains("unknown field `extra`"));
    assert!(error(r#"["a"]"#).contains("a number, a boolean or an array"));
}

#[test]
fn registered_module_is_served_as_json_and_v2_with_checks() {
    let (_dir, registry) = registry();
    let module =
        TorchModule::new(linear(4, 3), Device::Cpu).input("x", DType::F32, [-1, 4]).output("y", DType::F32, [-1, 3]);
    let registered =
        register_torch_model("linear", module).requirements(["numpy 2"]).register(registry.as_ref()).unwrap();
    let manifest = &registered.manifest;
    assert_eq!(manifest.runner.name, "torch");
    assert!(manifest.requirements.contains(&"torch==2.13.0".to_string()), "{:?}", manifest.requirements);
    assert!(manifest.files.iter().any(|f| f.path == "model.pt"));

    // The identity runner on a loaded model.
    let loaded = load_any(registry.as_ref(), &"linear:latest".parse().unwrap()).unwrap();
    let y = loaded.run_json(json!([[1, 0, 0, 2], [0.5, 0.5, 0.5, 0.5]])).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(y).unwrap();
    assert_eq!(rows[0], expected(&[1.0, 0.0, 0.0, 2.0], 3));
    assert_eq!(rows[1], expected(&[0.5; 4], 3));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client(registry.as_ref(), "linear:1", ServeOptions::default());
    rt.block_on(async {
        let ok = client.post_json("/predict", &json!({"shape": [1, 4], "dtype": "int32", "data": [1, 2, 3, 4]})).await;
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(serde_json::from_value::<Vec<Vec<f32>>>(ok.json()).unwrap()[0], expected(&[1.0, 2.0, 3.0, 4.0], 3));

        let shape = client.post_json("/predict", &json!([[1, 2, 3]])).await;
        assert_eq!(shape.status, 422, "{}", shape.text());
        assert!(shape.text().contains("input `x` has shape [1, 3]") && shape.text().contains("[-1, 4]"), "{}", shape.text());
        let dtype = client.post_json("/predict", &json!([[true, false, true, true]])).await;
        assert_eq!(dtype.status, 422);
        assert!(dtype.text().contains("input `x` is bool"), "{}", dtype.text());
        let ragged = client.post_json("/predict", &json!([[1, 2, 3, 4], [1]])).await;
        assert_eq!(ragged.status, 422);
        assert!(ragged.text().contains("ragged"), "{}", ragged.text());

        // KServe V2.
        assert_eq!(client.get("/v2/health/live").await.status, 200);
        assert_eq!(client.get("/v2/health/ready").await.json(), json!({"ready": true}));
        let metadata = client.get("/v2/models/linear").await.json();
        assert_eq!(metadata["platform"], "pytorch_torchscript");
        assert_eq!(metadata["versions"], json!(["1"]));
        assert_eq!(metadata["inputs"], json!([{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]));
        assert_eq!(client.get("/v2/models/linear/versions/1").await.status, 200);
        let wrong_version = client.get("/v2/models/linear/versions/7").await;
        assert_eq!(wrong_version.status, 404);
        assert!(wrong_version.json()["error"].as_str().unwrap().contains("version 1, not 7"));

        let request = json!({
            "id": "r1",
            "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 0, 0, 2, 0.5, 0.5, 0.5, 0.5]}],
            "outputs": [{"name": "y"}]
        });
        let infer = client.post_json("/v2/models/linear/infer", &request).await;
        assert_eq!(infer.status, 200, "{}", infer.text());
        let body = infer.json();
        assert_eq!((body["model_name"].clone(), body["model_version"].clone(), body["id"].clone()), (json!("linear"), json!("1"), json!("r1")));
        let output = &body["outputs"][0];
        assert_eq!((output["name"].clone(), output["shape"].clone(), output["datatype"].clone()), (json!("y"), json!([2, 3]), json!("FP32")));
        let mut want = expected(&[1.0, 0.0, 0.0, 2.0], 3);
        want.extend(expected(&[0.5; 4], 3));
        assert_eq!(serde_json::from_value::<Vec<f32>>(output["data"].clone()).unwrap(), want);

        let v2_error = |body: serde_json::Value| {
            let client = &client;
            async move {
                let r = client.post_json("/v2/models/linear/infer", &body).await;
                (r.status, r.json()["error"].as_str().unwrap_or_default().to_string())
            }
        };
        let (status, message) = v2_error(json!({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})).await;
        assert_eq!(status, 400);
        assert!(message.contains("unknown input `z`") && message.contains("`x`"), "{message}");
        let (status, message) = v2_error(json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]})).await;
        assert_eq!(status, 400);
        assert!(message.contains("holds 4 elements"), "{message}");
        let (status, message) = v2_error(json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "w"}]})).await;
        assert_eq!(status, 400);
        assert!(message.contains("no output `w`"), "{message}");
        let (status, message) = v2_error(json!({"input": []})).await;
        assert_eq!(status, 400);
        assert!(message.contains("not a V2 inference request"), "{message}");
        // The server still answers.
        assert_eq!(client.post_json("/v2/models/linear/infer", &request).await.status, 200);
    });
}

#[test]
fn the_page_shows_the_v2_signature_and_a_request_it_accepts() {
    let (_dir, registry) = registry();
    let module =
        TorchModule::new(linear(4, 3), Device::Cpu).input("x", DType::F32, [-1, 4]).output("y", DType::F32, [-1, 3]);
    register_torch_model("linear", module).register(registry.as_ref()).unwrap();
    let client = client(registry.as_ref(), "linear:1", ServeOptions::default());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let page = client.get("/").await;
        assert_eq!(page.status, 200);
        let html = page.text();
        // The signature, as a table: name, datatype, shape of each tensor.
        for row in [
            "<td><code>x</code></td><td>FP32</td><td><code>[-1, 4]</code></td>",
            "<td><code>y</code></td><td>FP32</td><td><code>[-1, 3]</code></td>",
        ] {
            assert!(html.contains(row), "{row} in {html}");
        }
        assert!(html.contains(r#"data-url="/v2/models/linear/infer""#), "{html}");
        // The form's V2 request is one the model accepts: zeros in its shapes.
        let start = html.find("<textarea").unwrap();
        let text = &html[html[start..].find('>').unwrap() + start + 1..html.find("</textarea>").unwrap()];
        let text = text.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        let request: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(request["inputs"][0]["shape"], json!([1, 4]), "{request}");
        let infer = client.post_json("/v2/models/linear/infer", &request).await;
        assert_eq!(infer.status, 200, "{}", infer.text());
        let data: Vec<f32> = serde_json::from_value(infer.json()["outputs"][0]["data"].clone()).unwrap();
        assert_eq!(data, expected(&[0.0; 4], 3));
    });
}

#[test]
fn batched_forward_passes_match_one_at_a_time() {
    let module = TorchModule::new(linear(4, 3), Device::Cpu);
    let inputs: Vec<Tensor> = vec![
        Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([1, 4]),
        Tensor::from_slice(&[0f32, 1., 0., 1., 2., 2., 2., 2.]).reshape([2, 4]),
        Tensor::from_slice(&[5f32, 6., 7.]).reshape([1, 3]), // another shape: its own pass
        Tensor::from_slice(&[-1f32, 0., 1., 0.]).reshape([1, 4]),
    ];
    let alone: Vec<Result<Vec<f32>, String>> = inputs
        .iter()
        .map(|x| {
            <Torch as Backend>::predict(&module, x.shallow_clone())
                .map(|y| Vec::<f32>::try_from(&y.reshape([-1])).unwrap())
                .map_err(|e| e.to_string())
        })
        .collect();
    assert!(alone[2].is_err(), "a [1, 3] input does not fit a 4-input linear");
    let compatible: Vec<Tensor> = [0, 1, 3].iter().map(|&i| inputs[i].shallow_clone()).collect();
    let batched = <Torch<Tensor, Tensor, Concat> as Backend>::predict_batch(&module, compatible).unwrap();
    assert_eq!(batched.len(), 3);
    assert_eq!(batched[1].size(), vec![2, 3], "outputs split back by each input's rows");
    for (output, i) in batched.iter().zip([0, 1, 3]) {
        assert_eq!(Vec::<f32>::try_from(&output.reshape([-1])).unwrap(), *alone[i].as_ref().unwrap());
    }
}

#[test]
fn padded_batches_match_unpadded_runs_of_a_masked_model() {
    // A masked mean over a sequence: padding with zeros (mask 0) must not change it.
    let example = (Tensor::ones([1, 3], (Kind::Float, Device::Cpu)), Tensor::ones([1, 3], (Kind::Int64, Device::Cpu)));
    let mut forward = |xs: &[Tensor]| {
        let mask = xs[1].to_kind(Kind::Float);
        let mean = (&xs[0] * &mask).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            / mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        vec![mean]
    };
    let traced = CModule::create_by_tracing("Masked", "forward", &[example.0, example.1], &mut forward).unwrap();
    let module = TorchModule::new(traced, Device::Cpu);
    let seq = |values: &[f32]| {
        (
            Tensor::from_slice(values).reshape([1, -1]),
            Tensor::ones([1, values.len() as i64], (Kind::Int64, Device::Cpu)),
        )
    };
    let inputs = vec![seq(&[1.0, 2.0, 3.0]), seq(&[10.0]), seq(&[4.0, 4.0, 4.0, 4.0, 9.0])];
    type Padded = Torch<(Tensor, Tensor), Tensor, PadZeros>;
    let outputs = <Padded as Backend>::predict_batch(&module, inputs).unwrap();
    let means: Vec<f32> = outputs.iter().map(|t| t.double_value(&[0]) as f32).collect();
    assert_eq!(means, vec![2.0, 10.0, 5.0]);
}

#[test]
fn concurrent_requests_are_batched_and_answered_in_order() {
    let (_dir, registry) = registry();
    let module = TorchModule::new(linear(4, 3), Device::Cpu).input("x", DType::F32, [-1, 4]);
    register_torch_model("linear", module).register(registry.as_ref()).unwrap();
    let options = ServeOptions {
        max_batch_size: Some(16),
        max_delay: Some(std::time::Duration::from_millis(20)),
        ..ServeOptions::default()
    };
    let client = Arc::new(client(registry.as_ref(), "linear:latest", options));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let info = client.get("/models/linear").await.json();
        assert_eq!(info["batching"]["max_batch_size"], 16, "{info}");
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let x = [i as f32, 1.0, -(i as f32), 0.5];
                    let body = if i == 5 { json!([[1, 2]]) } else { json!([x]) };
                    let r = client.post_json("/predict", &body).await;
                    (i, x, r)
                })
            })
            .collect();
        for task in tasks {
            let (i, x, r) = task.await.unwrap();
            if i == 5 {
                assert_eq!(r.status, 422, "a bad request fails alone: {}", r.text());
                continue;
            }
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(serde_json::from_value::<Vec<Vec<f32>>>(r.json()).unwrap()[0], expected(&x, 3));
        }
        let metrics = client.get("/metrics").await.text();
        let batches =
            metrics.lines().find(|l| l.starts_with("runner_batch_size_count")).unwrap_or_default().to_string();
        let count: f64 = batches.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0.0);
        assert!(count > 0.0 && count < 23.0, "23 requests went through fewer batches: {batches}");
    });
}

#[test]
fn device_names_are_checked() {
    assert_eq!(runner_torch::parse_device("cpu").unwrap(), Device::Cpu);
    assert!(runner_torch::parse_device("tpu").unwrap_err().to_string().contains("use `cpu`, `cuda` or `cuda:N`"));
    if !runner_torch::tch::Cuda::is_available() {
        assert!(runner_torch::parse_device("cuda").unwrap_err().to_string().contains("no CUDA device"));
        assert!(runner_torch::parse_device("cuda:3").unwrap_err().to_string().contains("0 CUDA device(s)"));
    }
}

/// What [`Echo`] takes.
#[derive(serde::Deserialize)]
pub struct Say {
    text: String,
    times: usize,
}

/// What [`Echo`] answers.
#[derive(serde::Serialize)]
pub struct Said {
    text: String,
}

/// A runner that takes and gives JSON: V2 reaches it through one BYTES element.
pub struct Echo;

#[runner_core::runner(name = "echo")]
impl Echo {
    fn predict(_model: &(), data: Say) -> Said {
        Said { text: data.text.repeat(data.times) }
    }
}

/// The Python of the project's virtual environment (scripts/torch-env.sh), where
/// `tritonclient` is installed with the MiniLM packages.
fn python() -> std::path::PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    venv.join("bin/python")
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A server on free ports (HTTP, and gRPC at the returned address) serving `models` of
/// `registry`; stopped by the returned sender.
async fn start(
    registry: Arc<LocalRegistry>,
    models: &[&str],
    options: ServeOptions,
) -> (std::net::SocketAddr, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let grpc_addr = free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runner_core::serve::serve_on(
        listener,
        registry,
        models.iter().map(|m| m.parse().unwrap()).collect(),
        ServeOptions { grpc_addr: Some(grpc_addr), ..options },
        async move {
            let _ = stopped.await;
        },
        || {},
    ));
    (addr, grpc_addr, stop, server)
}

type Server = tokio::task::JoinHandle<runner_core::Result<()>>;

/// A registry holding the linear module (4 -> 3) as `linear:1`, input `x`, output `y`.
fn linear_registry() -> (tempfile::TempDir, Arc<LocalRegistry>) {
    let (dir, registry) = registry();
    let module =
        TorchModule::new(linear(4, 3), Device::Cpu).input("x", DType::F32, [-1, 4]).output("y", DType::F32, [-1, 3]);
    register_torch_model("linear", module).register(registry.as_ref()).unwrap();
    (dir, registry)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn tritonclient_speaks_json_and_binary_tensors_and_grpc_to_serve() {
    let (_dir, registry) = linear_registry();
    runner_core::register_model::<Echo>("echo").model(()).register(registry.as_ref()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tritonclient_v2.py");
    let output = runtime().block_on(async move {
        let (addr, grpc_addr, stop, server) = start(registry, &["linear:1", "echo:1"], ServeOptions::default()).await;
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python())
                .arg(script)
                .args([addr.to_string(), grpc_addr.to_string()])
                .args(["4", "3"])
                .output()
        })
        .await
        .unwrap()
        .expect("running the project's Python (set up by scripts/torch-env.sh with RUNNER_TORCH_MODELS=1)");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        output
    });
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "tritonclient failed against serve:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
}

/// 16 requests over HTTP (V2, binary tensors) and 16 over gRPC (raw contents) at once:
/// each is answered with its own rows, and at least one forward pass (in up to 5 such
/// bursts) held more than 16 of them, so the two protocols shared a batch.
#[test]
fn grpc_and_http_requests_share_batches() {
    use runner_core::serve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use runner_core::serve::grpc::proto::model_infer_request::InferInputTensor;
    use runner_core::serve::grpc::proto::ModelInferRequest;

    let (_dir, registry) = linear_registry();
    runtime().block_on(async move {
        let options = ServeOptions {
            max_batch_size: Some(64),
            max_delay: Some(std::time::Duration::from_millis(500)),
            ..ServeOptions::default()
        };
        let (addr, grpc_addr, stop, server) = start(registry, &["linear:1"], options).await;
        let url = format!("http://{addr}");
        let http = reqwest::Client::new();
        let started = std::time::Instant::now();
        while http.get(format!("{url}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "never ready");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await.unwrap();
        let row = |i: usize| [i as f32, 1.0, -(i as f32) / 2.0, 0.25];
        let floats = |x: [f32; 4]| x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        // A batch of more than 16 holds requests of both protocols. Whether one forms
        // depends on how close together the requests arrive (a lone request goes at
        // once): the burst is sent up to 5 times, its first time also opening the HTTP
        // connections, and one such batch is enough.
        let mut shared = (0.0, 0.0);
        for round in 0..5u32 {
            let tasks: Vec<_> = (0..32)
                .map(|i| {
                    let (http, url, channel) = (http.clone(), url.clone(), channel.clone());
                    tokio::spawn(async move {
                        let x = row(i);
                        let y: Vec<f32> = if i % 2 == 0 {
                            let header = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                "parameters": {"binary_data_size": 16}}],
                                "outputs": [{"name": "y", "parameters": {"binary_data": true}}]});
                            let mut body = serde_json::to_vec(&header).unwrap();
                            let length = body.len();
                            body.extend(floats(x));
                            let response = http
                                .post(format!("{url}/v2/models/linear/infer"))
                                .header(runner_core::v2::HEADER_LENGTH, length)
                                .body(body)
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(response.status(), 200);
                            let json_length: usize =
                                response.headers()[runner_core::v2::HEADER_LENGTH].to_str().unwrap().parse().unwrap();
                            let bytes = response.bytes().await.unwrap();
                            bytes[json_length..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
                        } else {
                            let request = ModelInferRequest {
                                model_name: "linear".into(),
                                inputs: vec![InferInputTensor {
                                    name: "x".into(),
                                    datatype: "FP32".into(),
                                    shape: vec![1, 4],
                                    ..Default::default()
                                }],
                                raw_input_contents: vec![floats(x).into()],
                                ..Default::default()
                            };
                            let response = GrpcInferenceServiceClient::new(channel).model_infer(request).await.unwrap();
                            let raw = &response.get_ref().raw_output_contents[0];
                            raw.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
                        };
                        (x, y)
                    })
                })
                .collect();
            for task in tasks {
                let (x, y) = task.await.unwrap();
                assert_eq!(y, expected(&x, 3), "the answer to {x:?}");
            }
            let metrics = http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
            let value = |prefix: &str, with: &str| -> f64 {
                let line = metrics
                    .lines()
                    .find(|l| l.starts_with(prefix) && l.contains(with))
                    .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"));
                line.rsplit(' ').next().unwrap().parse().unwrap()
            };
            let (batches, at_most_16) =
                (value("runner_batch_size_count", ""), value("runner_batch_size_bucket", "le=\"16.0\""));
            assert_eq!(value("runner_batch_size_sum", ""), 32.0 * f64::from(round + 1));
            shared = (batches, at_most_16);
            if at_most_16 < batches {
                break;
            }
        }
        let (batches, at_most_16) = shared;
        assert!(at_most_16 < batches, "no batch held more than 16 requests: {batches} batches, {at_most_16} of <= 16");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    });
}
