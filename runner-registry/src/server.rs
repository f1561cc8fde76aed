//! The whole server: the API's routes and the pages over one storage, with panics
//! answered 500 in the API's envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::api::{not_found, routes, ApiError, AppState, Config};
use crate::pages;
use crate::storage::Backend;

/// The server's router over `backend`: the API, `/livez`, `/openapi.json` and the pages.
///
/// ```no_run
/// # async fn run() -> runner_core::Result<()> {
/// use runner_registry::{router, Backend, Config};
///
/// let app = router(Backend::directory(std::path::Path::new("registry"))?, &Config::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await.unwrap();
/// axum::serve(listener, app).await.unwrap();
/// # Ok(())
/// # }
/// ```
pub fn router(backend: Backend, config: &Config) -> Router {
    let router = routes()
        .merge(pages::routes())
        .fallback(|| async { not_found("route") })
        .method_not_allowed_fallback(runner_core::serve::method_not_allowed)
        .with_state(AppState::new(backend, config));
    catch_panics(router)
}

/// `router` with its handlers' panics answered 500 in the API's error envelope (and
/// logged), instead of the connection dropped under the client.
fn catch_panics(router: Router) -> Router {
    router.layer(tower_http::catch_panic::CatchPanicLayer::custom(answer_panic))
}

fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&'static str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = what, "a request handler panicked; answered 500");
    let message = "the server failed on this request (a bug, logged on the server); other requests are not affected";
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message.into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500_and_the_router_keeps_answering() {
        let boom = || async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            "never"
        };
        let app = catch_panics(Router::new().route("/boom", get(boom)).route("/fine", get(|| async { "fine" })));
        let request = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = app.clone().oneshot(request("/boom")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((body["error"]["status"].as_u64(), body["error"]["code"].as_str()), (Some(500), Some("internal")));
        assert_eq!(app.oneshot(request("/fine")).await.unwrap().status(), StatusCode::OK);
    }
}
