// A runner on a backend: predict, batching, save and load come from it; the hooks may
// borrow the model.
use runner_core::{runner, Artifacts, Backend, Loaded, LocalRegistry, Props, Result, Runner, SaveDir};

pub struct Scale;
pub struct Factor(f64);

impl Backend for Scale {
    type Model = Factor;
    type Input = f64;
    type Output = f64;
    const REQUIREMENTS: &'static [&'static str] = &["scale 1"];

    fn predict(model: &Factor, input: f64) -> Result<f64> {
        Ok(model.0 * input)
    }
    fn save(model: &Factor, dir: &SaveDir) -> Result<Props> {
        dir.write("factor", model.0.to_string())?;
        Ok(Props::new())
    }
    fn load(_props: Option<Props>, artifacts: &Artifacts) -> Result<Factor> {
        Ok(Factor(artifacts.read_to_string("factor")?.parse().map_err(|_| runner_core::Error::msg("bad factor"))?))
    }
}

pub struct Scaled;

#[runner(name = "scaled", backend = Scale, model = Scaled::build, max_batch_size = 8)]
impl Scaled {
    fn build() -> Factor {
        Factor(3.0)
    }
    fn preprocess_data(model: &Factor, data: String) -> Result<f64> {
        let x: f64 = data.parse().map_err(|_| runner_core::Error::invalid_input("not a number"))?;
        Ok(x + model.0)
    }
    fn postprocess_data(data: f64) -> String {
        data.to_string()
    }
}

fn main() -> Result<()> {
    assert!(Scaled::CAN_BATCH);
    assert_eq!(Scaled::BATCH.map(|b| b.max_batch_size), Some(8));
    assert_eq!(Scaled::REQUIREMENTS, &["scale 1"]);
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path())?;
    let registered = runner_core::register_model::<Scaled>("scaled").model(Scaled::build()).register(&registry)?;
    assert!(registered.manifest.requirements.contains(&"scale 1".to_string()));
    let loaded = Loaded::<Scaled>::load(&registry, &"scaled:latest".parse()?)?;
    // (1 + 3) * 3
    assert_eq!(loaded.run("1".into())?, "12");
    Ok(())
}
