use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct WrongBuilder;

fn build() -> String {
    String::from("not a model")
}

#[runner(model = build)]
impl WrongBuilder {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
