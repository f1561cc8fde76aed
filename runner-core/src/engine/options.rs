//! How the engine runs models.

use std::time::Duration;

/// How the engine runs models. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Pipelines running at once (default: the number of CPUs).
    pub concurrency: usize,
    /// Requests that may wait for a free slot; past that they are refused at once with
    /// [`ErrorKind::Overloaded`](crate::ErrorKind::Overloaded) (default 1024).
    pub queue: usize,
    /// Overrides the runners' `max_batch_size`, and turns batching on for runners that
    /// can batch ([`Runner::CAN_BATCH`](crate::Runner::CAN_BATCH)) but do not by default.
    pub max_batch_size: Option<usize>,
    /// Overrides the runners' `max_delay_ms`.
    pub max_delay: Option<Duration>,
    /// Pipelines whose average CPU time, and average time off the CPU (waiting), both
    /// stay under this run on the async worker instead of the blocking pool (default
    /// 100 µs; zero: always the pool).
    pub inline_threshold: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue: 1024,
            max_batch_size: None,
            max_delay: None,
            inline_threshold: Duration::from_micros(100),
        }
    }
}
