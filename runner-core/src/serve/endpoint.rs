//! A loaded model behind the server: admission control, the pipeline off the async
//! Not public API: used by the server and the type-erased model.
//! runtime, panics caught, and the batching worker.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::metrics::{Metrics, ModelMetrics};
use super::ServeOptions;
use crate::api::{ApiInput, ApiOutput, BatchConfig, Schemas};
use crate::load::Loaded;
use crate::manifest::Manifest;
use crate::runner::Runner;
use crate::v2;

/// A response body and its media type.
pub type Answer = (Bytes, &'static str);
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A served model, type-erased.
pub trait Endpoint: Send + Sync {
    fn manifest(&self) -> &Manifest;
    fn runner(&self) -> &'static str;
    fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Schemas;
    fn media_types(&self) -> (&'static str, &'static str);
    fn batch(&self) -> Option<BatchConfig>;
    fn metrics(&self) -> &ModelMetrics;
    /// Where the pipeline runs now, and its average time.
    fn placement(&self) -> serde_json::Value;
    /// Runs the pipeline here and now when it is placed inline; otherwise gives the body
    /// back for [`Endpoint::call`].
    fn try_inline(&self, body: Bytes, content_type: Option<&str>) -> Result<Result<Answer, ApiError>, Bytes>;
    fn call(self: Arc<Self>, body: Bytes, content_type: Option<String>) -> BoxFuture<Result<Answer, ApiError>>;
    /// The tensor signature, when the runner speaks the V2 protocol.
    fn v2_signature(&self) -> Option<v2::Signature>;
    /// V2 inference: tensors through `prepare`, `predict` (batched when configured) and
    /// back to tensors, under the same limits as `/predict`.
    fn v2_infer(self: Arc<Self>, inputs: Vec<v2::Tensor>) -> BoxFuture<Result<Vec<v2::Tensor>, ApiError>>;
}

/// Bounds the work one server accepts: `concurrency` pipelines run at once, at most
/// `queue` more wait; past that requests are refused with 503 at once.
pub struct Limits {
    semaphore: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

impl Limits {
    pub(crate) fn new(options: &ServeOptions) -> Arc<Limits> {
        let concurrency = options.concurrency.max(1);
        Arc::new(Limits {
            semaphore: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency + options.queue,
        })
    }
}

/// One unit of a shared count, given back when dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    /// Counts one more; also returns the count before.
    fn new(counter: &Arc<AtomicUsize>) -> (Counted, usize) {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        (Counted(counter.clone()), before)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request counted against [`Limits`] until dropped.
pub(crate) struct Admission {
    _counted: Counted,
}

impl Admission {
    fn new(limits: &Arc<Limits>) -> Result<Admission, ApiError> {
        let (admission, before) = Counted::new(&limits.admitted);
        if before >= limits.capacity {
            return Err(ApiError::overloaded(format!(
                "the server is at capacity ({} requests running or queued); retry later",
                limits.capacity
            )));
        }
        Ok(Admission { _counted: admission })
    }
}

/// Runs `job` on the blocking pool once a worker slot is free, catching panics. The slot
/// and the admission are held until the job ends, even if the caller stops waiting.
async fn offload<T: Send + 'static>(
    limits: &Arc<Limits>,
    admission: Arc<Admission>,
    what: &'static str,
    job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit: OwnedSemaphorePermit =
        limits.semaphore.clone().acquire_owned().await.expect("the semaphore is never closed");
    let handle = tokio::task::spawn_blocking(move || {
        let _held = (permit, admission);
        catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|panic| Err(ApiError::panic(what, panic.as_ref())))
    });
    handle.await.unwrap_or_else(|e| Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())))
}

/// Runs `job` here, a panic answered as a 500.
fn run_caught<T>(what: &'static str, job: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|panic| Err(ApiError::panic(what, panic.as_ref())))
}

/// Times consecutive steps: each `lap` records the time since the previous one.
struct Lap(Instant);

impl Lap {
    fn start() -> Lap {
        Lap(Instant::now())
    }

    fn lap(&mut self, histogram: &prometheus_client::metrics::histogram::Histogram) {
        let now = Instant::now();
        histogram.observe(now.duration_since(self.0).as_secs_f64());
        self.0 = now;
    }
}

/// Wall and CPU time of work done on one thread.
#[derive(Debug, Clone, Copy)]
struct Cost {
    wall: Duration,
    /// The thread's CPU time when it was sampled (the wall time where the platform does
    /// not tell).
    cpu: Option<Duration>,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost { wall: self.wall + other.wall, cpu: self.cpu.zip(other.cpu).map(|(a, b)| a + b) }
    }
}

/// Runs `work` here and measures it, its CPU time too when `cpu` (a system call).
fn measured<T>(cpu: bool, work: impl FnOnce() -> T) -> (T, Cost) {
    let (wall, cpu_start) = (Instant::now(), if cpu { thread_cpu() } else { None });
    let out = work();
    let wall = wall.elapsed();
    let cpu = cpu.then(|| match (cpu_start, thread_cpu()) {
        (Some(start), Some(end)) => end.saturating_sub(start).min(wall),
        _ => wall,
    });
    (out, Cost { wall, cpu })
}

/// CPU time of the calling thread.
#[cfg(unix)]
fn thread_cpu() -> Option<Duration> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(Duration::new(u64::try_from(t.tv_sec).ok()?, u32::try_from(t.tv_nsec).ok()?))
}

#[cfg(not(unix))]
fn thread_cpu() -> Option<Duration> {
    None
}

/// Where a model's pipeline runs. Pipelines start on the blocking pool; one whose
/// average CPU time and average time off the CPU (waiting: sleeps, I/O, locks,
/// preemption) both stay under the inline threshold moves onto the async worker, where a
/// thread hop would cost more than the work. CPU time, not wall time, is what it costs: on
/// a busy machine a pool thread's wall time grows with everything else running. CPU time
/// is sampled (one call in [`CPU_SAMPLE`]). An inline pipeline goes back to the pool when
/// its averages pass twice the threshold (hysteresis: averages near the threshold do not
/// flap), and for good when an inline call takes over [`BLOCKING`], or when calls over
/// [`SLOW`] become more than [`SLOW_SHARE_LIMIT`] of recent inline calls. A single slow
/// call is not enough: the thread can be preempted in the middle of a fast pipeline.
struct Placement {
    threshold_ns: u64,
    /// Exponentially weighted moving average of the pipeline's CPU time, in ns.
    cpu_ns: AtomicU64,
    /// The same for its time off the CPU (wall minus CPU), in ns.
    waiting_ns: AtomicU64,
    /// Share of recent inline calls over [`SLOW`], in millionths (moving average).
    slow_share: AtomicU64,
    /// Calls counted in the averages.
    measured: AtomicU64,
    /// Calls seen, for sampling.
    calls: AtomicU64,
    inline: AtomicBool,
    never_inline: AtomicBool,
}

/// Calls measured on the pool before a pipeline may move inline.
const WARM_UP_CALLS: u64 = 32;
/// After the warm-up, one call in this many has its CPU time measured.
const CPU_SAMPLE: u64 = 32;
/// A call this slow (wall time) does not count towards the averages.
const SLOW: Duration = Duration::from_millis(1);
/// One inline call this slow blocked the async worker: back to the pool for good.
const BLOCKING: Duration = Duration::from_millis(50);
/// Share of slow inline calls (millionths) past which the pipeline goes back to the pool.
const SLOW_SHARE_LIMIT: u64 = 50_000;

/// One step of an exponentially weighted moving average (weight 1/8), 0 meaning empty.
fn ewma(average: &AtomicU64, sample: u64) -> u64 {
    let old = average.load(Ordering::Relaxed);
    let new = if old == 0 { sample.max(1) } else { (old - old / 8 + sample / 8).max(1) };
    average.store(new, Ordering::Relaxed);
    new
}

impl Placement {
    fn new(threshold: Duration) -> Placement {
        Placement {
            threshold_ns: threshold.as_nanos() as u64,
            cpu_ns: AtomicU64::new(0),
            waiting_ns: AtomicU64::new(0),
            slow_share: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            inline: AtomicBool::new(false),
            never_inline: AtomicBool::new(threshold.is_zero()),
        }
    }

    fn inline(&self) -> bool {
        self.inline.load(Ordering::Relaxed)
    }

    /// Whether to measure the CPU time of the next call.
    fn sample_cpu(&self) -> bool {
        if self.never_inline.load(Ordering::Relaxed) {
            return false;
        }
        self.measured.load(Ordering::Relaxed) < WARM_UP_CALLS
            || self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(CPU_SAMPLE)
    }

    fn pin_to_pool(&self) {
        self.never_inline.store(true, Ordering::Relaxed);
        self.inline.store(false, Ordering::Relaxed);
    }

    /// Runs `work` here, measures it and records it.
    fn timed<T>(&self, ran_inline: bool, work: impl FnOnce() -> T) -> T {
        let (out, cost) = measured(self.sample_cpu(), work);
        self.record(cost, ran_inline);
        out
    }

    /// Records one call. Races between threads only blur the averages.
    fn record(&self, cost: Cost, ran_inline: bool) {
        if self.never_inline.load(Ordering::Relaxed) {
            return;
        }
        let slow = cost.wall > SLOW;
        if ran_inline {
            if cost.wall > BLOCKING {
                return self.pin_to_pool();
            }
            let old = self.slow_share.load(Ordering::Relaxed);
            let share = old - old / 64 + if slow { 1_000_000 / 64 } else { 0 };
            self.slow_share.store(share, Ordering::Relaxed);
            if share > SLOW_SHARE_LIMIT {
                return self.pin_to_pool();
            }
        }
        let Some(cpu) = cost.cpu.filter(|_| !slow) else {
            return;
        };
        let waiting = ewma(&self.waiting_ns, cost.wall.saturating_sub(cpu).as_nanos() as u64);
        let cpu = ewma(&self.cpu_ns, cpu.as_nanos() as u64);
        let measured = self.measured.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let limit = if self.inline() { 2 * self.threshold_ns } else { self.threshold_ns };
        self.inline.store(measured >= WARM_UP_CALLS && cpu < limit && waiting < limit, Ordering::Relaxed);
    }
}

/// How long a request waits for its batch when the server turns batching on and the
/// runner sets no delay.
const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(5);

pub(crate) struct Served<R: Runner> {
    placement: Placement,
    loaded: Arc<Loaded<R>>,
    limits: Arc<Limits>,
    metrics: ModelMetrics,
    batcher: Option<mpsc::SyncSender<Job<R>>>,
    batch: Option<BatchConfig>,
    /// Requests admitted for batching and still in `front`: the batch worker waits for
    /// them (up to the delay) and for nothing else.
    incoming: Arc<AtomicUsize>,
}

struct Job<R: Runner> {
    input: R::ModelInput,
    enqueued: Instant,
    reply: oneshot::Sender<Result<R::ModelOutput, ApiError>>,
}

impl<R: Runner> Served<R> {
    pub(crate) fn new(
        loaded: Loaded<R>,
        name: &str,
        options: &ServeOptions,
        limits: Arc<Limits>,
        metrics: &Arc<Metrics>,
    ) -> Arc<Self> {
        let loaded = Arc::new(loaded);
        let metrics = metrics.model(name);
        let batch = match (R::BATCH, options.max_batch_size) {
            (Some(config), _) => Some(BatchConfig {
                max_batch_size: options.max_batch_size.unwrap_or(config.max_batch_size).max(1),
                max_delay: options.max_delay.unwrap_or(config.max_delay),
            }),
            // Batching off by default, turned on by the server's options.
            (None, Some(size)) if R::CAN_BATCH => Some(BatchConfig {
                max_batch_size: size.max(1),
                max_delay: options.max_delay.unwrap_or(DEFAULT_MAX_DELAY),
            }),
            (None, _) => None,
        };
        let incoming = Arc::new(AtomicUsize::new(0));
        let batcher = batch.map(|config| {
            let (sender, receiver) = mpsc::sync_channel::<Job<R>>(options.queue.max(1));
            let worker = BatchWorker {
                loaded: loaded.clone(),
                receiver,
                config,
                incoming: incoming.clone(),
                batch_size: metrics.batch_size.clone(),
                predict: metrics.predict.clone(),
            };
            std::thread::Builder::new()
                .name(format!("batch-{name}"))
                .spawn(move || worker.run())
                .expect("spawning the batch worker thread");
            sender
        });
        let placement = Placement::new(options.inline_threshold);
        Arc::new(Served { placement, loaded, limits, metrics, batcher, batch, incoming })
    }

    /// parse -> preprocess -> predict -> postprocess -> serialize, timing each step.
    fn pipeline(&self, body: Bytes, content_type: Option<&str>) -> Result<Answer, ApiError> {
        let x = self.front(body, content_type)?;
        let mut clock = Lap::start();
        let y = R::predict(self.loaded.model(), x);
        clock.lap(&self.metrics.predict);
        self.back(y?)
    }

    /// parse -> preprocess -> prepare.
    fn front(&self, body: Bytes, content_type: Option<&str>) -> Result<R::ModelInput, ApiError> {
        let m = &self.metrics;
        let mut clock = Lap::start();
        let input = R::Input::from_body(body, content_type);
        clock.lap(&m.parse);
        let model = self.loaded.model();
        let x = R::preprocess(model, input?).and_then(|x| R::prepare(model, x));
        clock.lap(&m.preprocess);
        Ok(x?)
    }

    /// postprocess -> serialize.
    fn back(&self, y: R::ModelOutput) -> Result<Answer, ApiError> {
        let m = &self.metrics;
        let mut clock = Lap::start();
        let output = R::postprocess(self.loaded.model(), y);
        clock.lap(&m.postprocess);
        let answer = output?.into_body();
        clock.lap(&m.serialize);
        Ok(answer?)
    }

    /// `front`, `predict` (through the batch worker when batching), then `back`, on the
    /// blocking pool under the server's limits.
    async fn staged<T: Send + 'static>(
        self: Arc<Self>,
        front: impl FnOnce(&Self) -> Result<R::ModelInput, ApiError> + Send + 'static,
        back: impl FnOnce(&Self, R::ModelOutput) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let admission = Arc::new(Admission::new(&self.limits)?);
        let this = self.clone();
        let Some(sender) = self.batcher.as_ref() else {
            return offload(&self.limits, admission, "the pipeline", move || {
                let x = front(&this)?;
                let mut clock = Lap::start();
                let y = R::predict(this.loaded.model(), x);
                clock.lap(&this.metrics.predict);
                back(&this, y?)
            })
            .await;
        };
        // Cheap pre/post-processing runs right here around the batch, like a cheap pipeline
        // (same placement rule); the rest hops to the blocking pool.
        let inline = self.placement.inline();
        let cpu = self.placement.sample_cpu();
        let (incoming, _) = Counted::new(&self.incoming);
        let front = move || measured(cpu, || front(&this));
        let (x, front_cost) = if inline {
            run_caught("preprocess_data", || Ok(front()))?
        } else {
            offload(&self.limits, admission.clone(), "preprocess_data", move || Ok(front())).await?
        };
        let x = x?;
        // Not on its way any more: the worker must not wait for this very request.
        drop(incoming);
        let (reply, receiver) = oneshot::channel();
        sender.try_send(Job { input: x, enqueued: Instant::now(), reply }).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => ApiError::overloaded("the batch queue is full; retry later"),
            mpsc::TrySendError::Disconnected(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the batch worker stopped")
            }
        })?;
        let y = receiver.await.map_err(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the batch worker dropped the request")
        })??;
        let this = self.clone();
        let back = move || measured(cpu, || back(&this, y));
        let (answer, back_cost) = if inline {
            run_caught("postprocess_data", || Ok(back()))?
        } else {
            offload(&self.limits, admission, "postprocess_data", move || Ok(back())).await?
        };
        self.placement.record(front_cost + back_cost, inline);
        answer
    }
}

/// The thread that groups queued inputs into `predict_batch` calls.
struct BatchWorker<R: Runner> {
    loaded: Arc<Loaded<R>>,
    receiver: mpsc::Receiver<Job<R>>,
    config: BatchConfig,
    incoming: Arc<AtomicUsize>,
    batch_size: prometheus_client::metrics::histogram::Histogram,
    predict: prometheus_client::metrics::histogram::Histogram,
}

impl<R: Runner> BatchWorker<R> {
    /// Runs batches until the sender is dropped.
    fn run(self) {
        while let Ok(first) = self.receiver.recv() {
            let jobs = self.collect(first);
            // Requests whose caller gave up (timeout) are not computed.
            let (inputs, replies): (Vec<_>, Vec<_>) =
                jobs.into_iter().filter(|job| !job.reply.is_closed()).map(|job| (job.input, job.reply)).unzip();
            if inputs.is_empty() {
                continue;
            }
            self.batch_size.observe(inputs.len() as f64);
            let started = Instant::now();
            let outputs = self.predict_all(inputs);
            self.predict.observe(started.elapsed().as_secs_f64());
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(output);
            }
        }
    }

    /// A batch starting with `first`: every input already queued, up to
    /// `max_batch_size`. It waits for more only while requests are on their way (admitted,
    /// still in preprocessing), and never past `max_delay` after `first` was queued. So a
    /// lone request goes at once, and under load the batch is what queued while the
    /// previous one ran.
    fn collect(&self, first: Job<R>) -> Vec<Job<R>> {
        let deadline = first.enqueued + self.config.max_delay;
        let mut jobs = vec![first];
        while jobs.len() < self.config.max_batch_size {
            if let Ok(job) = self.receiver.try_recv() {
                jobs.push(job);
                continue;
            }
            if self.incoming.load(Ordering::Acquire) == 0 {
                break;
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(wait) {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        jobs
    }

    /// One `predict_batch` call for all inputs. An error, a panic or the wrong number of
    /// outputs fails every request of this batch (and no other): inputs are checked one
    /// by one in `prepare` before they are batched, so this is the model failing.
    fn predict_all(&self, inputs: Vec<R::ModelInput>) -> Vec<Result<R::ModelOutput, ApiError>> {
        let expected = inputs.len();
        let error = match catch_unwind(AssertUnwindSafe(|| R::predict_batch(self.loaded.model(), inputs))) {
            Ok(Ok(outputs)) if outputs.len() == expected => return outputs.into_iter().map(Ok).collect(),
            Ok(Ok(outputs)) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "batch_mismatch",
                format!("predict_batch returned {} outputs for {expected} inputs", outputs.len()),
            ),
            Ok(Err(e)) => ApiError::from(e),
            Err(panic) => ApiError::panic("predict_batch", panic.as_ref()),
        };
        (0..expected).map(|_| Err(error.clone())).collect()
    }
}

impl<R: Runner> Endpoint for Served<R> {
    fn manifest(&self) -> &Manifest {
        self.loaded.manifest()
    }

    fn runner(&self) -> &'static str {
        R::NAME
    }

    fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Schemas {
        R::schemas(generator)
    }

    fn media_types(&self) -> (&'static str, &'static str) {
        (R::Input::media_type(), R::Output::media_type())
    }

    fn batch(&self) -> Option<BatchConfig> {
        self.batch
    }

    fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    fn placement(&self) -> serde_json::Value {
        let p = &self.placement;
        let mode = if self.batcher.is_some() {
            "batched"
        } else if p.inline() {
            "inline"
        } else {
            "blocking_pool"
        };
        serde_json::json!({
            "mode": mode,
            "cpu_us": p.cpu_ns.load(Ordering::Relaxed) as f64 / 1000.0,
            "waiting_us": p.waiting_ns.load(Ordering::Relaxed) as f64 / 1000.0,
            "measured_calls": p.measured.load(Ordering::Relaxed),
            "slow_share": p.slow_share.load(Ordering::Relaxed) as f64 / 1e6,
            "pinned_to_pool": p.never_inline.load(Ordering::Relaxed),
        })
    }

    fn try_inline(&self, body: Bytes, content_type: Option<&str>) -> Result<Result<Answer, ApiError>, Bytes> {
        if self.batcher.is_some() || !self.placement.inline() {
            return Err(body);
        }
        let admission = match Admission::new(&self.limits) {
            Ok(admission) => admission,
            Err(e) => return Ok(Err(e)),
        };
        let result = self.placement.timed(true, || run_caught("the pipeline", || self.pipeline(body, content_type)));
        drop(admission);
        Ok(result)
    }

    fn call(self: Arc<Self>, body: Bytes, content_type: Option<String>) -> BoxFuture<Result<Answer, ApiError>> {
        Box::pin(async move {
            if self.batcher.is_some() {
                return self
                    .staged(move |this| this.front(body, content_type.as_deref()), |this, y| this.back(y))
                    .await;
            }
            let admission = Admission::new(&self.limits)?;
            let this = self.clone();
            offload(&self.limits, Arc::new(admission), "the pipeline", move || {
                this.placement.timed(false, || this.pipeline(body, content_type.as_deref()))
            })
            .await
        })
    }

    fn v2_signature(&self) -> Option<v2::Signature> {
        R::v2_signature(self.loaded.model())
    }

    fn v2_infer(self: Arc<Self>, inputs: Vec<v2::Tensor>) -> BoxFuture<Result<Vec<v2::Tensor>, ApiError>> {
        Box::pin(self.staged(
            move |this| {
                let mut clock = Lap::start();
                let model = this.loaded.model();
                let x = R::v2_decode(model, inputs).and_then(|x| R::prepare(model, x));
                clock.lap(&this.metrics.parse);
                Ok(x?)
            },
            |this, y| {
                let mut clock = Lap::start();
                let outputs = R::v2_encode(this.loaded.model(), y);
                clock.lap(&this.metrics.serialize);
                Ok(outputs?)
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call that ran on the CPU all along.
    fn busy(wall: Duration) -> Cost {
        Cost { wall, cpu: Some(wall) }
    }

    fn warm(placement: &Placement, each: Cost) {
        for _ in 0..WARM_UP_CALLS {
            placement.record(each, false);
        }
    }

    #[test]
    fn fast_pipelines_move_inline_and_slow_ones_stay_on_the_pool() {
        let fast = Placement::new(Duration::from_micros(50));
        warm(&fast, busy(Duration::from_micros(3)));
        assert!(fast.inline());
        let slow = Placement::new(Duration::from_micros(50));
        warm(&slow, busy(Duration::from_micros(300)));
        assert!(!slow.inline());
        let very_slow = Placement::new(Duration::from_micros(50));
        warm(&very_slow, busy(Duration::from_millis(20)));
        assert!(!very_slow.inline(), "samples over 1 ms never count towards moving inline");
        let disabled = Placement::new(Duration::ZERO);
        warm(&disabled, busy(Duration::from_micros(1)));
        assert!(!disabled.inline());
    }

    #[test]
    fn cpu_time_decides_and_waiting_keeps_a_pipeline_on_the_pool() {
        // Preempted on a busy machine: 170 µs of wall time, 90 µs of work.
        let preempted = Placement::new(Duration::from_micros(100));
        warm(&preempted, Cost { wall: Duration::from_micros(170), cpu: Some(Duration::from_micros(90)) });
        assert!(preempted.inline(), "CPU time under the threshold, time off the CPU too");
        // Cheap on the CPU but sleeping or waiting on I/O: it would block the async worker.
        let waiting = Placement::new(Duration::from_micros(100));
        warm(&waiting, Cost { wall: Duration::from_micros(400), cpu: Some(Duration::from_micros(5)) });
        assert!(!waiting.inline());
    }

    #[test]
    fn an_inline_pipeline_near_the_threshold_does_not_flap() {
        let p = Placement::new(Duration::from_micros(100));
        warm(&p, busy(Duration::from_micros(90)));
        assert!(p.inline());
        warm(&p, busy(Duration::from_micros(150)));
        assert!(p.inline(), "under twice the threshold it stays inline");
        warm(&p, busy(Duration::from_micros(260)));
        assert!(!p.inline(), "over twice the threshold it goes back to the pool");
        warm(&p, busy(Duration::from_micros(150)));
        assert!(!p.inline(), "and comes back only under the threshold");
        warm(&p, busy(Duration::from_micros(60)));
        assert!(p.inline());
    }

    #[test]
    fn cpu_time_is_sampled_after_the_warm_up() {
        let p = Placement::new(Duration::from_micros(100));
        let warm_up = (0..WARM_UP_CALLS).filter(|_| p.sample_cpu()).count() as u64;
        assert_eq!(warm_up, WARM_UP_CALLS, "not counted yet: every call is measured");
        warm(&p, busy(Duration::from_micros(10)));
        let sampled = (0..8 * CPU_SAMPLE).filter(|_| p.sample_cpu()).count();
        assert_eq!(sampled, 8);
        // Unsampled calls still count for the wall-time guards.
        p.record(Cost { wall: Duration::from_millis(80), cpu: None }, true);
        assert!(!p.inline());
    }

    #[test]
    fn measured_counts_cpu_time_not_sleep() {
        let ((), sleeping) = measured(true, || std::thread::sleep(Duration::from_millis(20)));
        assert!(sleeping.wall >= Duration::from_millis(20));
        assert!(sleeping.cpu.unwrap() < Duration::from_millis(5), "{sleeping:?}");
        let ((), spinning) = measured(true, || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
        });
        let cpu = spinning.cpu.unwrap();
        assert!(cpu > Duration::ZERO && cpu <= spinning.wall, "{spinning:?}");
        assert_eq!(measured(false, || ()).1.cpu, None);
    }

    #[test]
    fn a_rare_preempted_call_does_not_pin_but_a_slow_habit_does() {
        let p = Placement::new(Duration::from_micros(50));
        let (fast, hiccup) = (busy(Duration::from_micros(3)), busy(Duration::from_millis(3)));
        warm(&p, fast);
        for i in 0..10_000 {
            p.record(if i % 2_000 == 0 { hiccup } else { fast }, true);
        }
        assert!(p.inline(), "one slow call in 2000 is preemption, not a slow pipeline");
        for i in 0..200 {
            p.record(if i % 8 == 0 { hiccup } else { fast }, true);
        }
        assert!(!p.inline(), "one slow call in 8 keeps the pipeline off the async worker");
        warm(&p, busy(Duration::from_micros(1)));
        assert!(!p.inline(), "for good");
    }

    #[test]
    fn one_blocking_call_pins_to_the_pool() {
        let p = Placement::new(Duration::from_micros(50));
        warm(&p, busy(Duration::from_micros(3)));
        p.record(busy(Duration::from_millis(80)), true);
        assert!(!p.inline());
    }
}
