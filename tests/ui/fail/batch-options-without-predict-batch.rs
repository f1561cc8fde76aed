use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct NoBatchHook;

#[runner(max_batch_size = 8, max_delay_ms = 2)]
impl NoBatchHook {
    fn predict(_model: &Model, data: f64) -> f64 {
        data
    }
}
fn main() {}
