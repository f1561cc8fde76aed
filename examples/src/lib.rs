//! Example runners, all registered by `cargo run --bin register`:
//!
//! | runner | shows |
//! |---|---|
//! | [`sum`] | the smallest runner: only `predict`, the default saver |
//! | [`iris`] | a logistic-regression classifier trained at registration on Fisher's Iris data, typed JSON with pre/postprocessing |
//! | [`diabetes`] | custom `save_model`/`load_model` writing its own file, and a glob artifact (a folder) |
//! | `digits` (feature `torch`) | a PyTorch MLP trained in Rust with tch, traced to TorchScript, served batched |
//! | `minilm` (feature `torch`) | a pretrained sentence-embedding network (all-MiniLM-L6-v2) with a tokenizer artifact |
//! | `onnx-iris`, `onnx-cnn`, `onnx-minilm` (feature `onnx`) | ONNX graphs on ONNX Runtime: a scikit-learn pipeline, an image CNN, MiniLM again |
//!
//! This crate also hosts the [`guide`] (`docs/`), so that its examples are tested.

pub mod diabetes;
#[cfg(feature = "torch")]
pub mod digits;
#[cfg(any(doc, doctest))]
pub mod guide;
pub mod iris;
#[cfg(feature = "torch")]
pub mod minilm;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(any(feature = "torch", feature = "onnx"))]
pub mod sentences;
pub mod sum;

/// One labelled example: `N` features and a target.
pub type Row<const N: usize, T> = ([f64; N], T);

/// Reads a numeric CSV with a header row (`N` feature columns, then the target) and
/// splits it in a fixed way: every `every`-th row is held out. Returns (train, test).
pub(crate) fn split_csv<const N: usize, T: std::str::FromStr>(
    csv: &str,
    every: usize,
) -> (Vec<Row<N, T>>, Vec<Row<N, T>>) {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        let record = record.expect("the embedded CSV is well-formed");
        let features = std::array::from_fn(|j| record[j].parse::<f64>().expect("the embedded CSV holds numbers"));
        let target = record[N].parse::<T>().ok().expect("the embedded CSV holds a target in its last column");
        if i % every == every - 1 { &mut test } else { &mut train }.push((features, target));
    }
    (train, test)
}

/// Call from a binary's `main` so the linker keeps this crate, and with it the runners
/// it submits to the inventory.
#[inline(never)]
pub fn link() {}
