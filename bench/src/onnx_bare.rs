//! The limits for the ONNX benchmark: the least a person would write to serve the three
//! example graphs (examples/models/onnx) with `ort`, and a loop with no server at all.
//!
//! - `onnx-bare serve iris|minilm|cnn ADDR DIR`: one bare axum handler, `POST /predict`,
//!   calling one `ort` session (behind a `Mutex`: `ort` runs a session through `&mut`)
//!   inline on the async worker, and nothing else:
//!   - `iris`: `{"features": [[4 floats], ...]}` answers `{"label": [..], "probabilities": [[3 floats], ..]}`,
//!     the JSON of the runner's `/predict`;
//!   - `minilm`: `{"sentences": ["...", ...]}` answers `{"embeddings": [[384 floats], ...]}`:
//!     tokenized with the `tokenizers` crate as the runner does (`[CLS] .. [SEP]`, cut at
//!     256 tokens, padded with 0 to the longest), the token embeddings mean-pooled over
//!     the attention mask and normalised to unit length;
//!   - `cnn`: the raw little-endian f32 bytes of one `[1, 3, 224, 224]` image
//!     (`application/octet-stream`) answer the raw f32 bytes of its `[1, 10]` logits.
//! - `onnx-bare loop iris|minilm|cnn SECONDS DIR`: the same work (tensor in, session run,
//!   outputs read; for MiniLM tokenizing and pooling too) for one request, in a loop on
//!   one thread, no server; prints `{"rps": runs per second}` after a one-second warm-up.
//!
//! DIR holds `iris.onnx`, `cnn.onnx`, `minilm.onnx` and `tokenizer.json` (made by
//! scripts/export_onnx.py). Sessions are built as runner-onnx builds them: all graph
//! optimisations, `RUNNER_ONNX_THREADS` intra-op threads (default 1), one inter-op thread,
//! on the CPU; ONNX Runtime is the library runner-onnx loads (`ORT_DYLIB_PATH`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use runner_examples::sentences::{load_tokenizer, pool_rows, token_rows, EmbedRequest, EmbedResponse, DIMENSIONS};
use runner_onnx::ort::session::builder::GraphOptimizationLevel;
use runner_onnx::ort::session::Session;
use runner_onnx::ort::value::TensorRef;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;
/// Floats in one CNN image.
const IMAGE: usize = 3 * 224 * 224;

type Failure = (StatusCode, String);

fn bad(e: impl std::fmt::Display) -> Failure {
    (StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
}

fn session(file: &Path) -> Session {
    let threads = std::env::var("RUNNER_ONNX_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let environment = runner_onnx::environment().expect("ONNX Runtime (run `. scripts/torch-env.sh`)");
    Session::builder(environment)
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::All).map_err(Into::into))
        .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(1).map_err(Into::into))
        .and_then(|mut b| b.commit_from_file(file))
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

// --- Iris -----------------------------------------------------------------------------

#[derive(Deserialize)]
struct IrisRequest {
    features: Vec<Vec<f32>>,
}

#[derive(Serialize)]
struct IrisResponse {
    label: Vec<i64>,
    probabilities: Vec<Vec<f32>>,
}

fn iris(session: &mut Session, rows: &[Vec<f32>]) -> Result<IrisResponse, Failure> {
    let data = rows.concat();
    let input = TensorRef::from_array_view(([rows.len(), data.len() / rows.len().max(1)], &*data)).map_err(bad)?;
    let outputs = session.run(runner_onnx::ort::inputs!["features" => input]).map_err(bad)?;
    let (_, label) = outputs["label"].try_extract_tensor::<i64>().map_err(bad)?;
    let (_, probabilities) = outputs["probabilities"].try_extract_tensor::<f32>().map_err(bad)?;
    Ok(IrisResponse { label: label.to_vec(), probabilities: probabilities.chunks(3).map(<[f32]>::to_vec).collect() })
}

async fn predict_iris(
    State(session): State<Arc<Mutex<Session>>>,
    Json(request): Json<IrisRequest>,
) -> Result<Json<IrisResponse>, Failure> {
    Ok(Json(iris(&mut session.lock().expect("not poisoned"), &request.features)?))
}

// --- MiniLM ---------------------------------------------------------------------------

struct MiniLm {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
}

impl MiniLm {
    fn load(dir: &Path) -> MiniLm {
        let tokenizer = load_tokenizer(dir.join("tokenizer.json")).expect("tokenizer.json");
        MiniLm { session: Mutex::new(session(&dir.join("minilm.onnx"))), tokenizer }
    }

    fn embed(&self, sentences: &[String]) -> Result<EmbedResponse, Failure> {
        // The tokenizing and pooling of the runner (runner_examples::sentences), so that the
        // limit does the same work as serve.
        let rows = token_rows(&self.tokenizer, sentences).map_err(bad)?;
        let shape = rows.shape.map(|d| d as usize);
        let types = vec![0i64; rows.ids.len()];
        let mut session = self.session.lock().expect("not poisoned");
        let outputs = session
            .run(runner_onnx::ort::inputs![
                "input_ids" => TensorRef::from_array_view((shape, &*rows.ids)).map_err(bad)?,
                "attention_mask" => TensorRef::from_array_view((shape, &*rows.mask)).map_err(bad)?,
                "token_type_ids" => TensorRef::from_array_view((shape, &*types)).map_err(bad)?,
            ])
            .map_err(bad)?;
        let (_, tokens) = outputs["token_embeddings"].try_extract_tensor::<f32>().map_err(bad)?;
        Ok(EmbedResponse { embeddings: pool_rows(tokens, &rows.mask, shape[0], DIMENSIONS as usize) })
    }
}

async fn predict_minilm(
    State(model): State<Arc<MiniLm>>,
    Json(request): Json<EmbedRequest>,
) -> Result<Json<EmbedResponse>, Failure> {
    Ok(Json(model.embed(&request.sentences)?))
}

// --- CNN ------------------------------------------------------------------------------

/// The logits of one image given as raw little-endian f32 bytes, as raw bytes.
fn cnn(session: &mut Session, body: &[u8]) -> Result<Vec<u8>, Failure> {
    if body.len() != IMAGE * 4 {
        return Err(bad(format!("send the {} bytes of one [1, 3, 224, 224] f32 image, not {}", IMAGE * 4, body.len())));
    }
    let image: Vec<f32> = body.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    let input = TensorRef::from_array_view(([1usize, 3, 224, 224], &*image)).map_err(bad)?;
    let outputs = session.run(runner_onnx::ort::inputs!["image" => input]).map_err(bad)?;
    let (_, logits) = outputs["logits"].try_extract_tensor::<f32>().map_err(bad)?;
    Ok(logits.iter().flat_map(|x| x.to_le_bytes()).collect())
}

async fn predict_cnn(State(session): State<Arc<Mutex<Session>>>, body: Bytes) -> Result<impl IntoResponse, Failure> {
    let logits = cnn(&mut session.lock().expect("not poisoned"), &body)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], logits))
}

// --- main -----------------------------------------------------------------------------

fn serve(model: &str, addr: &str, dir: &Path) {
    let app = match model {
        "iris" => Router::new()
            .route("/predict", post(predict_iris))
            .with_state(Arc::new(Mutex::new(session(&dir.join("iris.onnx"))))),
        "minilm" => Router::new().route("/predict", post(predict_minilm)).with_state(Arc::new(MiniLm::load(dir))),
        "cnn" => Router::new()
            .route("/predict", post(predict_cnn))
            .with_state(Arc::new(Mutex::new(session(&dir.join("cnn.onnx"))))),
        other => panic!("no model `{other}`: iris, minilm or cnn"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("listening on http://{}", listener.local_addr().expect("address"));
        axum::serve(listener, app).await.expect("serve");
    });
}

/// Calls of `call` per second over `seconds`, on this thread.
fn rate(seconds: f64, call: &mut dyn FnMut()) -> f64 {
    let started = std::time::Instant::now();
    let mut count = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        call();
        count += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn bench_loop(model: &str, seconds: f64, dir: &Path) {
    let mut call: Box<dyn FnMut()> = match model {
        "iris" => {
            let mut session = session(&dir.join("iris.onnx"));
            let rows = vec![vec![5.1f32, 3.5, 1.4, 0.2]];
            Box::new(move || assert_eq!(iris(&mut session, &rows).expect("iris").label.len(), 1))
        }
        "minilm" => {
            let model = MiniLm::load(dir);
            let sentences = vec!["A man is playing a guitar on the stage tonight.".to_string()];
            Box::new(move || assert_eq!(model.embed(&sentences).expect("minilm").embeddings[0].len(), 384))
        }
        "cnn" => {
            let mut session = session(&dir.join("cnn.onnx"));
            let body: Vec<u8> = (0..IMAGE).flat_map(|i| ((i % 255) as f32 / 255.0).to_le_bytes()).collect();
            Box::new(move || assert_eq!(cnn(&mut session, &body).expect("cnn").len(), 40))
        }
        other => panic!("no model `{other}`: iris, minilm or cnn"),
    };
    rate(1.0, &mut call); // warm-up
    println!("{}", serde_json::json!({ "rps": rate(seconds, &mut call) }));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "serve", model, addr, dir] => serve(model, addr, Path::new(dir)),
        [_, "loop", model, seconds, dir] => bench_loop(model, seconds.parse().expect("SECONDS"), Path::new(dir)),
        _ => {
            eprintln!("usage: onnx-bare serve iris|minilm|cnn ADDR DIR | loop iris|minilm|cnn SECONDS DIR");
            std::process::exit(2);
        }
    }
}
