//! Automatic rollouts: `runner-registry rollout iris prod --to 5 --steps 5,25,50,100
//! --every 60s --max-error-rate 1% --max-p99-ratio 1.5 --serve URL...` moves an alias's
//! traffic split to a new model step by step, judging each step by the metrics of the
//! `serve` processes that follow the alias, and rolls the canary back, with the reason
//! in the alias's history, when it breaks a limit.
//!
//! Why the rollout reads each serve's `/metrics`, rather than serves reporting to the
//! registry: serves then need no write access to the registry and the registry no new
//! write path, state or API (it stays what it is: where aliases are, with their
//! history); the judge is one process with one clock, whose every decision is an alias
//! move (compare-and-set, so a rollout never overrides a person who moved the alias
//! meanwhile); and the counters it reads are the ones operators already scrape. The price
//! is that the rollout must reach each serve: it is given their URLs, and a serve it
//! cannot read fails the step rather than being judged on the others alone.

mod run;
mod scrape;

pub use run::{rollout, Outcome, Plan};
pub use scrape::{Sample, VersionSample};
