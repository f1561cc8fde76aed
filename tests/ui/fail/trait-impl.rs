use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

pub struct TraitImpl;

#[runner]
impl Clone for TraitImpl {
    fn clone(&self) -> Self {
        TraitImpl
    }
}
fn main() {}
