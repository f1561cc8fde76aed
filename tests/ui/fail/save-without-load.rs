use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct SaveOnly;

#[runner]
impl SaveOnly {
    fn save_model(_model: &Model) -> runner_core::Props {
        runner_core::Props::new()
    }

    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
