use runner_core::runner;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Model;

#[runner]
pub struct NotAnImpl;
fn main() {}
