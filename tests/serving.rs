//! Serving models in-process on a free port of 127.0.0.1, for the tests that drive a real
//! server over sockets (`mod serving;` in each).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runner_core::serve::ServeOptions;
use runner_core::Registry;

/// A `serve` running in this process, ready; stopped by [`Serving::stop`] (or when the
/// test ends).
pub struct Serving {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<runner_core::Result<()>>,
}

impl Serving {
    /// Serves `models` (references) from `registry` with `options`, and waits until
    /// `/readyz` answers 200.
    pub async fn start(registry: Arc<dyn Registry>, models: &[&str], options: ServeOptions) -> Serving {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(runner_core::serve::serve_on(
            listener,
            registry,
            models.iter().map(|model| model.parse().unwrap()).collect(),
            options,
            async move {
                let _ = stopped.await;
            },
            || {},
        ));
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http.get(format!("{url}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
            assert!(started.elapsed() < Duration::from_secs(20), "never ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Serving { url, stop: Some(stop), task }
    }

    /// Stops accepting, lets requests in flight finish, and returns how serving ended.
    pub async fn stop(mut self) -> runner_core::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("the server task")
    }
}

/// One prediction on `{url}/predict` (with the request header `header`, if any): the HTTP
/// status, the `number` in the body, and the number after the colon of `x-runner-model`.
#[allow(dead_code)]
pub async fn ask(http: &reqwest::Client, url: &str, header: Option<(&str, &str)>) -> (u16, Option<u64>, Option<u64>) {
    let mut request = http.post(format!("{url}/predict")).json(&serde_json::json!({ "question": "who?" }));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let Ok(response) = request.send().await else { return (0, None, None) };
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get(runner_core::serve::MODEL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(':').next())
        .and_then(|n| n.parse().ok());
    let body: Option<serde_json::Value> = response.json().await.ok();
    (status, body.and_then(|b| b["number"].as_u64()), header)
}

/// Waits until `done`, for at most 20 s (then fails naming `what`).
#[allow(dead_code)]
pub async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A moment of the load: when a request was sent, and its answer.
#[allow(dead_code)]
pub type Sample = (Instant, (u16, Option<u64>, Option<u64>));

#[allow(dead_code)]
/// Continuous load: clients each sending the next request when one answers.
pub struct Load {
    running: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

#[allow(dead_code)]
impl Load {
    /// `connections` clients on `url`, from now until [`Load::stop`].
    pub fn start(url: &str, connections: usize) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let clients = (0..connections)
            .map(|_| {
                let (url, running, samples) = (url.to_string(), running.clone(), samples.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    while running.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let answer = ask(&http, &url, None).await;
                        samples.lock().unwrap().push((sent, answer));
                    }
                })
            })
            .collect();
        Load { running, samples, clients }
    }

    /// The answers so far.
    pub fn samples(&self) -> std::sync::MutexGuard<'_, Vec<Sample>> {
        self.samples.lock().unwrap()
    }

    /// Stops the clients once their requests in flight are answered; every answer.
    pub async fn stop(self) -> Vec<Sample> {
        self.running.store(false, Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        self.samples.lock().unwrap().clone()
    }
}
