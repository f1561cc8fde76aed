use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct ByValue;

#[runner]
impl ByValue {
    fn predict(model: Model, data: f64) -> f64 {
        let _ = model;
        data
    }
}
fn main() {}
