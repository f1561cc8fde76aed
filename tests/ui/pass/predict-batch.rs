//! A batched runner: `predict_batch` next to `predict`, batching options, and the
//! default batch pipeline through `Runner::predict_batch`.

use runner_core::{register_model, runner, BatchConfig, Loaded, LocalRegistry, Runner};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Offset(f64);

pub struct Adder;

#[runner(name = "adder", max_batch_size = 16, max_delay_ms = 3)]
impl Adder {
    fn predict(model: &Offset, data: f64) -> f64 {
        data + model.0
    }

    fn predict_batch(model: &Offset, data: Vec<f64>) -> runner_core::Result<Vec<f64>> {
        Ok(data.into_iter().map(|x| x + model.0).collect())
    }
}

fn main() {
    assert_eq!(Adder::BATCH, Some(BatchConfig { max_batch_size: 16, max_delay: std::time::Duration::from_millis(3) }));
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    register_model::<Adder>("adder").model(Offset(1.0)).register(&registry).unwrap();
    let loaded = Loaded::<Adder>::load(&registry, &"adder:1".parse().unwrap()).unwrap();
    assert_eq!(<Adder as Runner>::predict_batch(loaded.model(), vec![1.0, 2.0]).unwrap(), vec![2.0, 3.0]);
    assert_eq!(loaded.run(5.0).unwrap(), 6.0);
}
