//! A loaded model behind the engine: admission, the pipeline off the async runtime (or
//! inline when it is cheap), panics caught, and the batching worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::limits::{Admission, Counted, Limits};
use super::metrics::{Metrics, ModelMetrics};
use super::options::EngineOptions;
use super::placement::{measured, Lap, Placement};
use crate::api::{BatchConfig, Schemas};
use crate::error::{Error, ErrorKind, Result};
use crate::load::{DynModel, Erased, Step};
use crate::manifest::Manifest;
use crate::v2;

/// A response body and its media type.
pub type Answer = (Bytes, &'static str);

/// An error for a panic, with its message.
fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> Error {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Error::serving(ErrorKind::Panic, format!("{what} panicked: {detail}"))
}

/// Runs `job` on the blocking pool once a worker slot is free, catching panics. The slot
/// and the admission are held until the job ends, even if the caller stops waiting.
async fn offload<T: Send + 'static>(
    limits: &Arc<Limits>,
    admission: Arc<Admission>,
    what: &'static str,
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let permit: OwnedSemaphorePermit =
        limits.semaphore.clone().acquire_owned().await.expect("the semaphore is never closed");
    let handle = tokio::task::spawn_blocking(move || {
        let _held = (permit, admission);
        catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|panic| Err(panicked(what, panic.as_ref())))
    });
    handle.await.unwrap_or_else(|e| Err(Error::serving(ErrorKind::Internal, e.to_string())))
}

/// Runs `job` here, a panic turned into an error.
fn run_caught<T>(what: &'static str, job: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|panic| Err(panicked(what, panic.as_ref())))
}

/// How long a request waits for its batch when the engine turns batching on and the
/// runner sets no delay.
const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(5);

/// A model served by an [`Engine`](super::Engine): every front end (HTTP, V2, a test
/// client) calls it, and it applies the engine's limits, placement, batching and metrics.
pub struct Endpoint {
    placement: Placement,
    model: Arc<dyn DynModel>,
    limits: Arc<Limits>,
    metrics: ModelMetrics,
    batcher: Option<mpsc::SyncSender<Job>>,
    batch: Option<BatchConfig>,
    /// Requests admitted for batching and still in `front`: the batch worker waits for
    /// them (up to the delay) and for nothing else.
    incoming: Arc<AtomicUsize>,
    /// Whether the runner speaks tensors (has a V2 signature), asked once.
    tensors: bool,
    /// The model as text (`iris:3`), made once: every answer names it.
    label: Bytes,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("model", &self.model.manifest().model).field("batch", &self.batch).finish()
    }
}

struct Job {
    input: Erased,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Erased>>,
}

impl Endpoint {
    pub(crate) fn new(
        model: Box<dyn DynModel>,
        name: &str,
        options: &EngineOptions,
        limits: Arc<Limits>,
        metrics: &Arc<Metrics>,
    ) -> Arc<Self> {
        let model: Arc<dyn DynModel> = Arc::from(model);
        let metrics = metrics.model(name, model.manifest().model.number);
        let (declared, can_batch) = model.batching();
        let batch = match (declared, options.max_batch_size) {
            (Some(config), _) => Some(BatchConfig {
                max_batch_size: options.max_batch_size.unwrap_or(config.max_batch_size).max(1),
                max_delay: options.max_delay.unwrap_or(config.max_delay),
            }),
            // Batching off by default, turned on by the engine's options.
            (None, Some(size)) if can_batch => Some(BatchConfig {
                max_batch_size: size.max(1),
                max_delay: options.max_delay.unwrap_or(DEFAULT_MAX_DELAY),
            }),
            (None, _) => None,
        };
        let incoming = Arc::new(AtomicUsize::new(0));
        let batcher = batch.map(|config| {
            let (sender, receiver) = mpsc::sync_channel::<Job>(options.queue.max(1));
            let worker = BatchWorker {
                model: model.clone(),
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
        let tensors = model.v2_signature().is_some();
        let label = Bytes::from(model.manifest().model.to_string());
        Arc::new(Endpoint { placement, model, limits, metrics, batcher, batch, incoming, tensors, label })
    }

    /// The model as text (`iris:3`), shared: what names it in a response costs no copy.
    pub fn label(&self) -> &Bytes {
        &self.label
    }

    /// Starts from where `previous` (the version this one replaces) runs, with its
    /// measurements, instead of warming up again.
    pub(crate) fn continue_from(&self, previous: &Endpoint) {
        self.placement.start_from(&previous.placement);
    }

    /// parse -> preprocess -> predict -> postprocess -> serialize, timing each step on
    /// one clock (each reading ends a step and starts the next).
    fn pipeline(&self, body: Bytes, content_type: Option<&str>, clock: &mut Lap) -> Result<Answer> {
        let m = &self.metrics;
        self.model.run_steps(body, content_type, &mut |step| {
            clock.lap(match step {
                Step::Parse => &m.parse,
                Step::Preprocess => &m.preprocess,
                Step::Predict => &m.predict,
                Step::Postprocess => &m.postprocess,
                Step::Encode => &m.serialize,
            })
        })
    }

    /// `front`'s model input through `predict` (timed), then `back`.
    fn through<T>(
        &self,
        x: Result<Erased>,
        clock: &mut Lap,
        back: impl FnOnce(Erased, &mut Lap) -> Result<T>,
    ) -> Result<T> {
        let y = self.model.predict(x?);
        clock.lap(&self.metrics.predict);
        back(y?, clock)
    }

    /// Runs `pipeline` on `input` here and now when the pipeline is placed inline (under
    /// an admission slot, timed, a panic caught); otherwise gives `input` back.
    fn run_here<I, T>(
        &self,
        input: I,
        pipeline: impl FnOnce(&Self, I, &mut Lap) -> Result<T>,
    ) -> std::result::Result<Result<T>, I> {
        if self.batcher.is_some() || !self.placement.inline() {
            return Err(input);
        }
        let admission = match self.limits.admit() {
            Ok(admission) => admission,
            Err(e) => return Ok(Err(e)),
        };
        let result = self.placement.timed(true, |clock| run_caught("the pipeline", || pipeline(self, input, clock)));
        drop(admission);
        Ok(result)
    }

    /// Runs `pipeline` on `input` on the blocking pool under the engine's limits, timed
    /// for placement.
    async fn run_pooled<I: Send + 'static, T: Send + 'static>(
        self: Arc<Self>,
        input: I,
        pipeline: impl FnOnce(&Self, I, &mut Lap) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let admission = Admission::new(&self.limits)?;
        let this = self.clone();
        offload(&self.limits, Arc::new(admission), "the pipeline", move || {
            this.placement.timed(false, |clock| pipeline(&this, input, clock))
        })
        .await
    }

    /// parse -> preprocess (and prepare).
    fn front(&self, body: Bytes, content_type: Option<&str>, clock: &mut Lap) -> Result<Erased> {
        let m = &self.metrics;
        let input = self.model.parse(body, content_type);
        clock.lap(&m.parse);
        let x = self.model.preprocess(input?);
        clock.lap(&m.preprocess);
        x
    }

    /// postprocess -> serialize.
    fn back(&self, y: Erased, clock: &mut Lap) -> Result<Answer> {
        let m = &self.metrics;
        let output = self.model.postprocess(y);
        clock.lap(&m.postprocess);
        let answer = self.model.serialize(output?);
        clock.lap(&m.serialize);
        answer
    }

    /// `front`, `predict` (through the batch worker when batching), then `back`, on the
    /// blocking pool under the engine's limits.
    async fn staged<T: Send + 'static>(
        self: Arc<Self>,
        front: impl FnOnce(&Self) -> Result<Erased> + Send + 'static,
        back: impl FnOnce(&Self, Erased) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let admission = Arc::new(Admission::new(&self.limits)?);
        let this = self.clone();
        let Some(sender) = self.batcher.as_ref() else {
            return offload(&self.limits, admission, "the pipeline", move || {
                let x = front(&this)?;
                let mut clock = Lap::start();
                let y = this.model.predict(x);
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
            mpsc::TrySendError::Full(_) => {
                Error::serving(ErrorKind::Overloaded, "the batch queue is full; retry later")
            }
            mpsc::TrySendError::Disconnected(_) => Error::serving(ErrorKind::Internal, "the batch worker stopped"),
        })?;
        let y = receiver
            .await
            .map_err(|_| Error::serving(ErrorKind::Internal, "the batch worker dropped the request"))??;
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

    /// The model's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.model.manifest()
    }

    /// The runner's name.
    pub fn runner(&self) -> &'static str {
        self.model.runner()
    }

    /// JSON Schemas of the API types.
    pub fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Schemas {
        self.model.schemas(generator)
    }

    /// Media types of the request and response bodies.
    pub fn media_types(&self) -> (&'static str, &'static str) {
        self.model.media_types()
    }

    /// The batching in effect, if any.
    pub fn batch(&self) -> Option<BatchConfig> {
        self.batch
    }

    /// This model's metrics.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Where the pipeline runs now, and its average times.
    pub fn placement(&self) -> serde_json::Value {
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

    /// Runs the pipeline here and now when it is placed inline; otherwise gives the body
    /// back for [`Endpoint::call`]. A front end tries this first: a cheap pipeline then
    /// costs no future, no timer and no thread hop.
    pub fn try_inline(&self, body: Bytes, content_type: Option<&str>) -> std::result::Result<Result<Answer>, Bytes> {
        self.run_here(body, |this, body, clock| this.pipeline(body, content_type, clock))
    }

    /// Runs the pipeline on a request body under the engine's limits: on the blocking
    /// pool, or through the batch worker when batching.
    pub async fn call(self: Arc<Self>, body: Bytes, content_type: Option<String>) -> Result<Answer> {
        if self.batcher.is_some() {
            let front = move |this: &Self| this.front(body, content_type.as_deref(), &mut Lap::start());
            return self.staged(front, |this, y| this.back(y, &mut Lap::start())).await;
        }
        self.run_pooled(body, move |this, body, clock| this.pipeline(body, content_type.as_deref(), clock)).await
    }

    /// The tensor signature, when the runner speaks the V2 protocol.
    pub fn v2_signature(&self) -> Option<v2::Signature> {
        self.model.v2_signature()
    }

    /// Whether the runner speaks tensors (V2 with its own signature).
    pub fn speaks_tensors(&self) -> bool {
        self.tensors
    }

    /// decode -> predict -> encode, timing each step.
    fn v2_pipeline(&self, inputs: Vec<v2::Tensor>, clock: &mut Lap) -> Result<Vec<v2::Tensor>> {
        let x = self.v2_front(inputs, clock);
        self.through(x, clock, |y, clock| self.v2_back(y, clock))
    }

    /// V2 tensors to the model input (timed as `parse`).
    fn v2_front(&self, inputs: Vec<v2::Tensor>, clock: &mut Lap) -> Result<Erased> {
        let x = self.model.v2_decode(inputs);
        clock.lap(&self.metrics.parse);
        x
    }

    /// The model output to V2 tensors (timed as `serialize`).
    fn v2_back(&self, y: Erased, clock: &mut Lap) -> Result<Vec<v2::Tensor>> {
        let outputs = self.model.v2_encode(y);
        clock.lap(&self.metrics.serialize);
        outputs
    }

    /// [`Endpoint::try_inline`] for V2 tensors: runs the tensor pipeline here and now when
    /// it is placed inline; otherwise gives the inputs back for [`Endpoint::v2_infer`].
    pub fn try_v2_inline(
        &self,
        inputs: Vec<v2::Tensor>,
    ) -> std::result::Result<Result<Vec<v2::Tensor>>, Vec<v2::Tensor>> {
        self.run_here(inputs, Self::v2_pipeline)
    }

    /// V2 inference: tensors through `prepare`, `predict` (batched when configured) and
    /// back to tensors, under the same limits as [`Endpoint::call`]; measured for
    /// placement like it, so a cheap tensor pipeline moves inline too.
    pub async fn v2_infer(self: Arc<Self>, inputs: Vec<v2::Tensor>) -> Result<Vec<v2::Tensor>> {
        if self.batcher.is_none() {
            return self.run_pooled(inputs, Self::v2_pipeline).await;
        }
        self.staged(move |this| this.v2_front(inputs, &mut Lap::start()), |this, y| this.v2_back(y, &mut Lap::start()))
            .await
    }
}

/// The thread that groups queued inputs into `predict_batch` calls.
struct BatchWorker {
    model: Arc<dyn DynModel>,
    receiver: mpsc::Receiver<Job>,
    config: BatchConfig,
    incoming: Arc<AtomicUsize>,
    batch_size: prometheus_client::metrics::histogram::Histogram,
    predict: prometheus_client::metrics::histogram::Histogram,
}

impl BatchWorker {
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
    fn collect(&self, first: Job) -> Vec<Job> {
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
    fn predict_all(&self, inputs: Vec<Erased>) -> Vec<Result<Erased>> {
        let expected = inputs.len();
        let error = match catch_unwind(AssertUnwindSafe(|| self.model.predict_batch(inputs))) {
            Ok(Ok(outputs)) if outputs.len() == expected => return outputs.into_iter().map(Ok).collect(),
            Ok(Ok(outputs)) => Error::serving(
                ErrorKind::BatchMismatch,
                format!("predict_batch returned {} outputs for {expected} inputs", outputs.len()),
            ),
            Ok(Err(e)) => e,
            Err(panic) => panicked("predict_batch", panic.as_ref()),
        };
        let error = Arc::new(error);
        (0..expected).map(|_| Err(Error::Shared(error.clone()))).collect()
    }
}
