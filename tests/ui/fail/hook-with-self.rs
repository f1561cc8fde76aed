use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct WithSelf;

#[runner]
impl WithSelf {
    fn predict(&self, _model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
