use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Generic<T>(T);

#[runner]
impl<T> Generic<T> {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
