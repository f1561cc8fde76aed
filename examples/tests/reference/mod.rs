//! all-MiniLM-L6-v2's reference embeddings, computed by the Python sentence-transformers
//! package (scripts/minilm_reference.py), for the TorchScript and ONNX examples' tests.

#![allow(dead_code)]

use serde_json::Value;

pub struct Reference {
    pub sentences: Vec<String>,
    pub embeddings: Vec<Vec<f32>>,
    pub input_ids: Vec<Vec<i64>>,
    pub similar: Vec<(usize, usize)>,
    pub unrelated: Vec<(usize, usize)>,
}

pub fn reference() -> Reference {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/minilm/reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let pairs = |key: &str| serde_json::from_value::<Vec<(usize, usize)>>(v[key].clone()).unwrap();
    Reference {
        sentences: serde_json::from_value(v["sentences"].clone()).unwrap(),
        embeddings: serde_json::from_value(v["embeddings"].clone()).unwrap(),
        input_ids: serde_json::from_value(v["input_ids"].clone()).unwrap(),
        similar: pairs("similar_pairs"),
        unrelated: pairs("unrelated_pairs"),
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn max_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}
