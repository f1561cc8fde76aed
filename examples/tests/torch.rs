//! The torch examples: the digits MLP's accuracy, and all-MiniLM-L6-v2's embeddings
//! against the reference computed by the Python sentence-transformers package.
#![cfg(feature = "torch")]

use std::sync::Arc;

use runner_core::serve::{ServeOptions, TestClient};
use runner_core::{find_runner, Loaded, LocalRegistry, RegisterOptions};
use runner_examples::digits::{self, Digits, DigitsRequest};
use runner_examples::minilm::{self, EmbedRequest, MiniLm};
use runner_torch::register_torch_model;
use serde_json::json;

mod reference;
use reference::{dot, max_difference, reference};

#[test]
fn digits_mlp_trained_in_rust_is_accurate_through_register_torch_model() {
    let module = Digits::train().unwrap();
    let (_, test) = digits::split();
    assert_eq!(test.len(), 359);
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    let registered = register_torch_model("digits", module).runner::<Digits>().register(&registry).unwrap();
    assert_eq!(registered.manifest.runner.name, "digits");
    let loaded = Loaded::<Digits>::load(&registry, &"digits:latest".parse().unwrap()).unwrap();
    let images: Vec<Vec<f32>> = test.iter().map(|(p, _)| p.iter().map(|&v| v as f32).collect()).collect();
    let response = loaded.run(DigitsRequest { images }).unwrap();
    let correct = response.digits.iter().zip(&test).filter(|(got, (_, want))| *got == want).count();
    let accuracy = correct as f64 / test.len() as f64;
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy:.3}");
    for p in &response.probabilities {
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}

fn exported_or_fail() {
    assert!(
        minilm::model_dir().join("minilm.pt").exists(),
        "the MiniLM TorchScript file is missing: run `scripts/with-torch-models python scripts/export_minilm.py` (scripts/test.sh does)"
    );
}

#[test]
fn minilm_tokenizes_like_the_python_tokenizer() {
    exported_or_fail();
    let reference = reference();
    let tokenizer = minilm::exported_tokenizer().unwrap();
    for (sentence, want) in reference.sentences.iter().zip(&reference.input_ids) {
        let (ids, mask, _) = minilm::tokenize(&tokenizer, std::slice::from_ref(sentence)).unwrap();
        assert_eq!(Vec::<i64>::try_from(&ids.reshape([-1])).unwrap(), *want, "{sentence}");
        assert_eq!(mask.sum(runner_torch::tch::Kind::Int64).int64_value(&[]), want.len() as i64);
    }
    assert!(reference.input_ids.iter().any(|ids| ids.len() == minilm::MAX_TOKENS), "the long sentence is cut at 256");
}

#[test]
fn minilm_embeddings_match_sentence_transformers_alone_and_batched() {
    exported_or_fail();
    let reference = reference();
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    let registered = find_runner("minilm").unwrap().register(&registry, &RegisterOptions::default()).unwrap();
    assert!(registered.manifest.files.iter().any(|f| f.path == "tokenizer.json"));
    let loaded = Loaded::<MiniLm>::load(&registry, &"minilm:latest".parse().unwrap()).unwrap();

    // One request with every sentence (padded to the longest inside the request).
    let all = loaded.run(EmbedRequest { sentences: reference.sentences.clone() }).unwrap();
    let difference = max_difference(&all.embeddings, &reference.embeddings);
    assert!(difference < 1e-4, "max difference from sentence-transformers: {difference}");
    for &(a, b) in &reference.similar {
        for &(c, d) in &reference.unrelated {
            let (near, far) =
                (dot(&all.embeddings[a], &all.embeddings[b]), dot(&all.embeddings[c], &all.embeddings[d]));
            assert!(near > far + 0.3, "similar {a},{b}: {near} vs unrelated {c},{d}: {far}");
        }
    }

    // One request per sentence, batched by the server across requests of different lengths.
    let options = ServeOptions {
        max_batch_size: Some(8),
        max_delay: Some(std::time::Duration::from_millis(50)),
        ..ServeOptions::default()
    };
    let client = Arc::new(TestClient::with_models(vec![Box::new(loaded)], options).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let embeddings: Vec<Vec<f32>> = rt.block_on(async {
        let tasks: Vec<_> = reference
            .sentences
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
    let difference = max_difference(&embeddings, &reference.embeddings);
    assert!(difference < 1e-4, "batched across requests: max difference {difference}");
}
