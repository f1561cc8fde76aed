//! The limit for the serving benchmark: bare axum handlers doing the same work as the
//! runners, inline, with nothing else (no admission control, metrics, request ids or
//! blocking pool).
//!
//! `bare-axum ADDR REGISTRY`: `POST /w1` sums `{"values": [...]}`; `POST /w2` classifies
//! an Iris flower with the model registered as `iris:latest` in REGISTRY.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use ndarray::Array2;
use runner_core::{Loaded, LocalRegistry};
use runner_examples::iris::{Iris, IrisModel, IrisRequest, IrisResponse, SPECIES};
use runner_examples::sum::{Sum, Values};

async fn w1(Json(values): Json<Values>) -> Json<Sum> {
    Json(Sum { sum: values.values.iter().sum() })
}

async fn w2(State(model): State<Arc<Loaded<Iris>>>, Json(r): Json<IrisRequest>) -> Json<IrisResponse> {
    let x = Array2::from_shape_vec((1, 4), vec![r.sepal_length, r.sepal_width, r.petal_length, r.petal_width])
        .expect("1x4");
    let model: &IrisModel = model.model();
    let p = model.predict_probabilities(&x);
    let row = p.row(0);
    let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0);
    Json(IrisResponse {
        species: SPECIES[best].to_string(),
        probabilities: SPECIES.iter().zip(row.iter()).map(|(s, p)| (s.to_string(), *p)).collect(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, registry) = match args.as_slice() {
        [_, addr, registry] => (addr.clone(), registry.clone()),
        _ => {
            eprintln!("usage: bare-axum ADDR REGISTRY");
            std::process::exit(2);
        }
    };
    let registry = LocalRegistry::open(registry).expect("open the registry");
    let iris = Loaded::<Iris>::load(&registry, &"iris:latest".parse().expect("a model reference")).expect("load iris");
    let app = Router::new().route("/w1", post(w1)).route("/w2", post(w2)).with_state(Arc::new(iris));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        println!("listening on http://{}", listener.local_addr().expect("address"));
        axum::serve(listener, app).await.expect("serve");
    });
}
