use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct NotSerialize;

pub struct Scores(Vec<f64>);

#[runner]
impl NotSerialize {
    fn predict(_model: &Model, data: Vec<f64>) -> Scores {
        Scores(data)
    }
}
fn main() {}
