use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct MutRef;

#[runner]
impl MutRef {
    fn predict(_model: &mut Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
