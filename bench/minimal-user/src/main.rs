//! One runner, registered into a directory and loaded back: the smallest real user of
//! runner-core.

use runner_core::{register_model, runner, Loaded, LocalRegistry, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Threshold {
    cut: f64,
}

pub struct Classifier;

#[runner(name = "threshold")]
impl Classifier {
    fn predict(model: &Threshold, data: f64) -> bool {
        data > model.cut
    }
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("minimal-user-{}", std::process::id()));
    let registry = LocalRegistry::open(&dir)?;
    let registered = register_model::<Classifier>("threshold").model(Threshold { cut: 0.5 }).register(&registry)?;
    let model = Loaded::<Classifier>::load(&registry, &registered.id().to_string().parse()?)?;
    assert!(model.run(0.9)?);
    println!("registered and ran {}", registered.id());
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
