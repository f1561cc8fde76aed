use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct Twice;

#[runner(name = "a", name = "b")]
impl Twice {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
