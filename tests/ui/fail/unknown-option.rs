use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Unknown;

#[runner(name = "unknown", repositry = "x")]
impl Unknown {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
