//! The limit for the torch benchmark: a bare axum handler calling tch directly (JSON
//! nested array in, forward under no-grad inline on the async worker, JSON out), with
//! nothing else.
//!
//! - `torch-bare export FILE`: trains the digits MLP (64 -> 256 -> 256 -> 10) of the
//!   examples and saves its TorchScript to FILE.
//! - `torch-bare register REGISTRY FILE`: registers FILE as `mlp` with
//!   `register_torch_model` (served by the built-in `torch` runner).
//! - `torch-bare serve ADDR FILE`: `POST /predict` with `[[64 floats], ...]`.
//! - `torch-bare minilm SECONDS SENTENCE`: the MiniLM limit, with no server: one thread
//!   tokenizing SENTENCE, running all-MiniLM-L6-v2's module and pooling, in a loop, as
//!   the `minilm` runner does per request; prints `{"rps": sentences per second}`.
//! - `torch-bare threads FILE`: forward passes per second on 1 and 2 threads sharing one
//!   module (as `serve` does: `CModule` is `Sync`) against threads taking turns through a
//!   `Mutex` (what a non-`Sync` module would need).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use runner_core::LocalRegistry;
use runner_examples::digits::Digits;
use runner_torch::tch::{self, CModule, Device, Tensor};
use runner_torch::{register_torch_model, DType, TorchModule};

async fn predict(
    State(module): State<Arc<CModule>>,
    Json(rows): Json<Vec<Vec<f32>>>,
) -> Result<Json<Vec<Vec<f32>>>, (StatusCode, String)> {
    let bad = |e: tch::TchError| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    let n = rows.len() as i64;
    let x = Tensor::f_from_slice(&rows.concat()).and_then(|t| t.f_reshape([n, -1])).map_err(bad)?;
    let y = tch::no_grad(|| module.forward_ts(&[x])).map_err(bad)?;
    Ok(Json(Vec::<Vec<f32>>::try_from(&y).map_err(bad)?))
}

/// Forward passes per second of `threads` threads for `seconds`, each through `call`.
fn rate(threads: usize, seconds: f64, call: &(dyn Fn() + Sync)) -> f64 {
    let started = std::time::Instant::now();
    let count = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while started.elapsed().as_secs_f64() < seconds {
                    call();
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    count.into_inner() as f64 / started.elapsed().as_secs_f64()
}

fn threads(file: &str) {
    tch::set_num_threads(1);
    let module = CModule::load_on_device(file, Device::Cpu).expect("load the TorchScript file");
    let locked = std::sync::Mutex::new(CModule::load_on_device(file, Device::Cpu).expect("load the TorchScript file"));
    let x = || Tensor::ones([1, 64], (tch::Kind::Float, Device::Cpu));
    let shared = || {
        let _ = tch::no_grad(|| module.forward_ts(&[x()])).expect("forward");
    };
    let mutex = || {
        let module = locked.lock().expect("not poisoned");
        let _ = tch::no_grad(|| module.forward_ts(&[x()])).expect("forward");
    };
    rate(2, 1.0, &shared); // warm-up
    println!("| threads | shared module (forward/s) | behind a Mutex (forward/s) |");
    println!("|---|---|---|");
    for n in [1, 2] {
        println!("| {n} | {:.0} | {:.0} |", rate(n, 3.0, &shared), rate(n, 3.0, &mutex));
    }
}

/// The MiniLM limit: tokenize, forward, pool, read the embedding, in a loop on one thread.
fn minilm(seconds: f64, sentence: &str) {
    use runner_examples::minilm;
    let threads = std::env::var("RUNNER_TORCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    tch::set_num_threads(threads);
    let module = minilm::MiniLm::exported().expect("the MiniLM module (scripts/torch-env.sh exports it)");
    let tokenizer = minilm::exported_tokenizer().expect("the MiniLM tokenizer");
    let sentences = [sentence.to_string()];
    let embed = || {
        let (ids, mask, types) = minilm::tokenize(&tokenizer, &sentences).expect("tokenize");
        let outputs = module.forward(vec![ids, mask, types]).expect("forward");
        let pooled = minilm::pool(&outputs[0], &outputs[1]);
        let embedding = Vec::<Vec<f32>>::try_from(&pooled).expect("read the embedding");
        assert_eq!(embedding[0].len(), 384);
    };
    rate(1, 1.0, &embed); // warm-up
    println!("{}", serde_json::json!({ "rps": rate(1, seconds, &embed) }));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [_, "export", file] => {
            let module = Digits::train().expect("train the digits MLP");
            module.module().save(file).expect("save the TorchScript file");
        }
        [_, "register", registry, file] => {
            let registry = LocalRegistry::open(registry).expect("open the registry");
            let module = TorchModule::load(file, Device::Cpu)
                .expect("load the TorchScript file")
                .input("x", DType::F32, [-1, 64])
                .output("logits", DType::F32, [-1, 10]);
            let registered = register_torch_model("mlp", module).register(&registry).expect("register");
            println!("registered {}", registered.id());
        }
        [_, "serve", addr, file] => {
            let threads = std::env::var("RUNNER_TORCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
            tch::set_num_threads(threads);
            let mut module = CModule::load_on_device(file, Device::Cpu).expect("load the TorchScript file");
            module.set_eval();
            let app = Router::new().route("/predict", post(predict)).with_state(Arc::new(module));
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
                println!("listening on http://{}", listener.local_addr().expect("address"));
                axum::serve(listener, app).await.expect("serve");
            });
        }
        [_, "threads", file] => threads(file),
        [_, "minilm", seconds, sentence] => minilm(seconds.parse().expect("SECONDS"), sentence),
        _ => {
            eprintln!("usage: torch-bare export FILE | register REGISTRY FILE | serve ADDR FILE | threads FILE | minilm SECONDS SENTENCE");
            std::process::exit(2);
        }
    }
}
