//! A closed-loop gRPC load generator for KServe V2 `ModelInfer`, the gRPC counterpart of
//! `wrk -t1` in the benchmarks: one thread, CONNECTIONS connections each with one request
//! in flight, for SECONDS.
//!
//! `grpc-load ADDR REQUEST.json SECONDS CONNECTIONS [raw|typed]`
//!
//! REQUEST.json is a V2 JSON request plus `"model_name"`; its tensors are sent as
//! `raw_input_contents` (the default, what tritonclient sends) or as typed `contents`
//! (FP32 and INT64). Prints one JSON line: `rps`, `p50` and `p99` (ms), `errors` (calls
//! that failed) and `socket_errors` (connections that could not be made).

use std::time::{Duration, Instant};

use runner_core::serve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use runner_core::serve::grpc::proto::model_infer_request::InferInputTensor;
use runner_core::serve::grpc::proto::{InferTensorContents, ModelInferRequest};
use runner_core::v2;

/// The request of `file`, its tensors raw or typed.
fn request(file: &str, typed: bool) -> ModelInferRequest {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("a JSON request");
    let model = json["model_name"].as_str().expect("`model_name` in the request").to_string();
    let parsed: v2::InferRequest = serde_json::from_value(json).expect("a V2 request");
    let mut request = ModelInferRequest { model_name: model, ..Default::default() };
    for tensor in parsed.inputs {
        let raw = tensor.to_raw().expect("tensor data that fits its shape");
        let mut input = InferInputTensor {
            name: tensor.name.clone(),
            datatype: tensor.datatype.clone(),
            shape: tensor.shape.clone(),
            ..Default::default()
        };
        if typed {
            let mut contents = InferTensorContents::default();
            match tensor.datatype.as_str() {
                "FP32" => {
                    contents.fp32_contents = raw.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
                }
                "INT64" => {
                    contents.int64_contents = raw.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
                }
                other => panic!("typed contents of {other} are not written here; use raw"),
            }
            input.contents = Some(contents);
        } else {
            request.raw_input_contents.push(raw);
        }
        request.inputs.push(input);
    }
    request
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, file, seconds, connections, rest @ ..] = args.as_slice() else {
        eprintln!("usage: grpc-load ADDR REQUEST.json SECONDS CONNECTIONS [raw|typed]");
        std::process::exit(2);
    };
    let typed = rest.first().is_some_and(|mode| mode == "typed");
    let request = request(file, typed);
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let connections: usize = connections.parse().expect("CONNECTIONS");
    let url = format!("http://{addr}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let (latencies, errors, socket_errors, elapsed) = runtime.block_on(async move {
        let mut clients = Vec::new();
        let mut socket_errors = 0usize;
        for _ in 0..connections {
            let endpoint = tonic::transport::Endpoint::from_shared(url.clone()).expect("an address").tcp_nodelay(true);
            match endpoint.connect().await {
                Ok(channel) => clients.push(GrpcInferenceServiceClient::new(channel)),
                Err(_) => socket_errors += 1,
            }
        }
        let started = Instant::now();
        let until = started + Duration::from_secs_f64(seconds);
        let workers: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let request = request.clone();
                tokio::spawn(async move {
                    let (mut latencies, mut errors) = (Vec::new(), 0usize);
                    while Instant::now() < until {
                        let sent = Instant::now();
                        match client.model_infer(request.clone()).await {
                            Ok(_) => latencies.push(sent.elapsed()),
                            Err(_) => errors += 1,
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        let (mut latencies, mut errors) = (Vec::new(), 0);
        for worker in workers {
            let (own, failed) = worker.await.expect("a load worker");
            latencies.extend(own);
            errors += failed;
        }
        (latencies, errors, socket_errors, started.elapsed())
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let at = |q: f64| {
        sorted
            .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let line = serde_json::json!({
        "rps": sorted.len() as f64 / elapsed.as_secs_f64(),
        "p50": at(0.50),
        "p99": at(0.99),
        "errors": errors,
        "socket_errors": socket_errors,
    });
    println!("{line}");
}
