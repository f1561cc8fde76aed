//! The execution engine: loaded models behind admission limits, placement (inline or
//! the blocking pool), batching and metrics. It knows nothing of HTTP: front ends (the
//! HTTP server in [`serve`](crate::serve), a test client, a future gRPC server) hand it
//! request bodies or V2 tensors and get answers or [`Error`](crate::Error)s with an
//! [`ErrorKind`](crate::ErrorKind) to map to their own statuses.

mod endpoint;
mod limits;
mod metrics;
mod options;
mod placement;
mod runtime;

pub use endpoint::{Answer, Endpoint};
pub use metrics::ModelMetrics;
pub use options::EngineOptions;
pub use runtime::Engine;

pub(crate) use placement::Instant;
