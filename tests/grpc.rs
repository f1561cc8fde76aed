//! KServe V2 over gRPC, through `serve_on` with a gRPC address, on real sockets, with
//! tonic's client: health and metadata, a JSON runner called through one `BYTES` element
//! (typed and raw contents), the API key as metadata, the gRPC status of each error, the
//! client's deadline, metrics shared with HTTP, and one shutdown for both listeners.
//! (Tensor runners over gRPC, and `tritonclient.grpc`, are tested in runner-torch.)

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use runner_core::serve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use runner_core::serve::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use runner_core::serve::grpc::proto::{self, InferTensorContents, ModelInferRequest};
use runner_core::serve::{ServeOptions, MODEL_HEADER};
use runner_core::{register_model, runner, LocalRegistry};
use runner_examples::sum::{SumModel, SumRunner};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;
use tonic::Code;

const KEY: &str = "s3cret-key";

#[derive(Deserialize, JsonSchema)]
pub struct Nap {
    ms: u64,
}

#[derive(Serialize, JsonSchema)]
pub struct Woke {
    slept_ms: u64,
}

/// Sleeps as long as it is asked.
pub struct Sleepy;

#[runner(name = "sleepy")]
impl Sleepy {
    fn predict(_model: &(), data: Nap) -> Woke {
        std::thread::sleep(Duration::from_millis(data.ms));
        Woke { slept_ms: data.ms }
    }
}

struct Server {
    http: String,
    grpc: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<runner_core::Result<()>>,
    _dir: tempfile::TempDir,
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::open(dir.path()).unwrap();
        register_model::<SumRunner>("sum").model(SumModel { scale: 2.0 }).register(&registry).unwrap();
        register_model::<Sleepy>("sleepy").model(()).register(&registry).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = format!("http://{}", listener.local_addr().unwrap());
        let grpc_addr = free_port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions {
            grpc_addr: Some(grpc_addr),
            api_key: Some(KEY.into()),
            body_limit: 64 << 10,
            ..ServeOptions::default()
        };
        let task = tokio::spawn(runner_core::serve::serve_on(
            listener,
            Arc::new(registry),
            vec!["sum:latest".parse().unwrap(), "sleepy:latest".parse().unwrap()],
            options,
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let started = Instant::now();
        let channel = loop {
            match Channel::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await {
                Ok(channel) => break channel,
                Err(e) => assert!(started.elapsed() < Duration::from_secs(10), "no gRPC listener: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let server = Server { http, grpc: channel, stop: Some(stop), task, _dir: dir };
        while !server.client().server_ready(proto::ServerReadyRequest {}).await.unwrap().into_inner().ready {
            assert!(started.elapsed() < Duration::from_secs(10), "never ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server
    }

    fn client(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.grpc.clone())
    }
}

/// `message` with the API key as metadata.
fn keyed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    request
}

/// A request for `model` with one BYTES input holding `body`, as typed contents or raw.
fn body_request(model: &str, body: &str, raw: bool) -> ModelInferRequest {
    let mut input =
        InferInputTensor { name: "body".into(), datatype: "BYTES".into(), shape: vec![1], ..Default::default() };
    let mut request = ModelInferRequest { model_name: model.into(), id: "req-7".into(), ..Default::default() };
    if raw {
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(body.as_bytes());
        request.raw_input_contents = vec![Bytes::from(bytes)];
    } else {
        input.contents =
            Some(InferTensorContents { bytes_contents: vec![Bytes::from(body.to_string())], ..Default::default() });
    }
    request.inputs = vec![input];
    request
}

/// The JSON document in the one BYTES output of a response.
fn body_answer(response: &proto::ModelInferResponse) -> serde_json::Value {
    assert_eq!(response.outputs.len(), 1);
    assert_eq!((response.outputs[0].name.as_str(), response.outputs[0].datatype.as_str()), ("body", "BYTES"));
    let raw = &response.raw_output_contents[0];
    let length = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
    assert_eq!(raw.len(), 4 + length, "one element");
    serde_json::from_slice(&raw[4..]).unwrap()
}

async fn refused<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    code: Code,
    needle: &str,
) {
    let status = call.await.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(needle), "`{}` does not say `{needle}`", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_runner_answers_over_grpc_as_over_http_with_keys_errors_and_deadlines() {
    let server = Server::start().await;
    let mut client = server.client();

    // Health needs no key; the rest does.
    assert!(client.server_live(proto::ServerLiveRequest {}).await.unwrap().into_inner().live);
    refused(
        client.model_metadata(proto::ModelMetadataRequest { name: "sum".into(), version: String::new() }),
        Code::Unauthenticated,
        "API key",
    )
    .await;
    let metadata = client
        .model_metadata(keyed(proto::ModelMetadataRequest { name: "sum".into(), version: String::new() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((metadata.name.as_str(), metadata.platform.as_str()), ("sum", "runner_json"));
    assert_eq!(metadata.versions, vec!["1".to_string()]);
    assert_eq!((metadata.inputs[0].datatype.as_str(), metadata.inputs[0].shape.as_slice()), ("BYTES", &[1i64][..]));
    let server_metadata = client.server_metadata(keyed(proto::ServerMetadataRequest {})).await.unwrap().into_inner();
    assert_eq!(server_metadata.name, "runner-core");
    let ready = client.model_ready(keyed(proto::ModelReadyRequest { name: "sum".into(), version: "1".into() }));
    assert!(ready.await.unwrap().into_inner().ready);

    // The same answer as /predict, whether the body travels typed or raw.
    let body = r#"{"values": [1.5, 2.0, 4.0]}"#;
    let http: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/models/sum/predict", server.http))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http, serde_json::json!({"sum": 15.0}));
    for raw in [false, true] {
        let response = client.model_infer(keyed(body_request("sum", body, raw))).await.unwrap();
        assert_eq!(response.metadata().get(MODEL_HEADER).unwrap(), "sum:1");
        let response = response.into_inner();
        assert_eq!((response.model_name.as_str(), response.model_version.as_str()), ("sum", "1"));
        assert_eq!(response.id, "req-7");
        assert_eq!(body_answer(&response), http, "raw: {raw}");
    }
    // An output that exists may be asked for; one that does not is refused by name.
    let mut asked = body_request("sum", body, false);
    asked.outputs = vec![InferRequestedOutputTensor { name: "body".into(), ..Default::default() }];
    assert_eq!(body_answer(&client.model_infer(keyed(asked.clone())).await.unwrap().into_inner()), http);
    asked.outputs[0].name = "logits".into();
    refused(client.model_infer(keyed(asked)), Code::InvalidArgument, "no output `logits`").await;

    // Errors, each with its status and a message naming the problem.
    refused(client.model_infer(keyed(body_request("nope", body, false))), Code::NotFound, "no model `nope`").await;
    let mut versioned = body_request("sum", body, false);
    versioned.model_version = "9".into();
    refused(client.model_infer(keyed(versioned)), Code::NotFound, "served at version 1, not 9").await;
    refused(
        client.model_infer(keyed(body_request("sum", r#"{"values": "many"}"#, false))),
        Code::InvalidArgument,
        "values",
    )
    .await;
    let mut floats = body_request("sum", body, false);
    floats.inputs[0].datatype = "FP32".into();
    floats.inputs[0].contents = Some(InferTensorContents { fp32_contents: vec![1.0], ..Default::default() });
    refused(client.model_infer(keyed(floats)), Code::InvalidArgument, "takes one BYTES element").await;
    let mut short = body_request("sum", body, true);
    short.raw_input_contents[0] = short.raw_input_contents[0].slice(..10);
    refused(client.model_infer(keyed(short)), Code::InvalidArgument, "an element says it has").await;
    let huge = format!(r#"{{"values": [{}1]}}"#, "1, ".repeat(40_000));
    refused(client.model_infer(keyed(body_request("sum", &huge, false))), Code::OutOfRange, "65536").await;

    // The client's deadline, shorter than the server's limit: the server answers a tenth
    // early (900 ms), so the client hears why rather than cancelling on its own.
    let mut hurried = keyed(body_request("sleepy", r#"{"ms": 3000}"#, false));
    hurried.set_timeout(Duration::from_millis(1000));
    let started = Instant::now();
    refused(client.model_infer(hurried), Code::DeadlineExceeded, "900 ms").await;
    assert!(started.elapsed() < Duration::from_millis(2500), "answered after {:?}", started.elapsed());
    let rested = client.model_infer(keyed(body_request("sleepy", r#"{"ms": 5}"#, true))).await.unwrap();
    assert_eq!(body_answer(&rested.into_inner()), serde_json::json!({"slept_ms": 5}));

    // gRPC calls are counted with HTTP's: one /predict and three gRPC answers.
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.http))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ok = metrics
        .lines()
        .find(|l| {
            l.starts_with("runner_requests_total{") && l.contains("model=\"sum\"") && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no count of sum's answers in\n{metrics}"));
    assert!(ok.ends_with(" 4"), "{ok}");

    // One shutdown stops both listeners, and serve_on returns cleanly.
    let mut server = server;
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), &mut server.task).await.expect("stopped").unwrap().unwrap();
    assert!(client.server_live(proto::ServerLiveRequest {}).await.is_err(), "the gRPC listener is closed");
}
