use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

/// A runner with every hook but the one that runs the model.
pub struct NoPredict;

#[runner]
impl NoPredict {
    fn preprocess_data(data: String) -> String {
        data
    }
}
fn main() {}
