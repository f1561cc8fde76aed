use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct NotDeserialize;

/// Has no `Deserialize`, yet is the API input since there is no `preprocess_data`.
pub struct Features(Vec<f64>);

#[runner]
impl NotDeserialize {
    fn predict(_model: &Model, data: Features) -> f64 {
        data.0.iter().sum()
    }
}
fn main() {}
