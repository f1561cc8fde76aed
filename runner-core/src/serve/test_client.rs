//! Test a runner over HTTP without a socket: the same router, called in-process.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request};
use bytes::Bytes;
use tower::ServiceExt;

use super::app::App;
use super::options::ServeOptions;
use crate::load::{DynModel, Loaded};
use crate::runner::Runner;
use crate::Result;

/// Calls the server's router in-process (tower `oneshot`): status codes, headers and
/// bodies exactly as over a socket.
///
/// ```
/// # use runner_core::{runner, register_model, Loaded, LocalRegistry};
/// # #[derive(serde::Serialize, serde::Deserialize)] pub struct Two;
/// # pub struct Double;
/// # #[runner(name = "double")]
/// # impl Double { fn predict(_m: &Two, x: f64) -> f64 { 2.0 * x } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> runner_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let registry = LocalRegistry::open(dir.path())?;
/// # register_model::<Double>("double").model(Two).register(&registry)?;
/// let model = Loaded::<Double>::load(&registry, &"double:1".parse()?)?;
/// let client = runner_core::serve::TestClient::new(model)?;
/// let response = client.post_json("/predict", &serde_json::json!(21.0)).await;
/// assert_eq!(response.status, 200);
/// assert_eq!(response.json(), serde_json::json!(42.0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TestClient {
    app: App,
}

/// A response seen by [`TestClient`].
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestClient {
    /// A client for one model with the default options.
    pub fn new<R: Runner>(model: Loaded<R>) -> Result<TestClient> {
        TestClient::with_models(vec![Box::new(model)], ServeOptions::default())
    }

    /// A client for several models with the given options.
    pub fn with_models(models: Vec<Box<dyn DynModel>>, options: ServeOptions) -> Result<TestClient> {
        let app = App::new(options);
        app.set_models(models)?;
        Ok(TestClient { app })
    }

    /// A client for an application (ready or not).
    pub fn from_app(app: App) -> TestClient {
        TestClient { app }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Request::builder().uri(path).body(Body::empty()).expect("valid request")).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.post(path, serde_json::to_vec(body).expect("JSON values serialize"), "application/json").await
    }

    /// `POST path` with a body of the given media type.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>, content_type: &str) -> TestResponse {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.into()))
            .expect("valid request");
        self.request(request).await
    }

    /// Any request.
    pub async fn request(&self, request: Request<Body>) -> TestResponse {
        let response = self.app.service().oneshot(request).await.expect("the router is infallible");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("reading the response body");
        TestResponse { status, headers, body }
    }
}
