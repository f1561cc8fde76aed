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
        .with_state(AppState::new(backend, config))
        .layer(axum::middleware::from_fn(refuse_tokens_in_urls));
    catch_panics(router)
}

/// Query parameters that carry a token in other systems' URLs.
const TOKEN_PARAMETERS: &[&str] = &["token", "access_token", "api_key", "apikey"];

/// Refuses a request that carries a token in its URL (`?token=...`): URLs end up in logs,
/// browser history and proxies. Tokens go in the `Authorization` header only.
async fn refuse_tokens_in_urls(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let in_url = request.uri().query().is_some_and(|query| {
        query.split('&').any(|pair| TOKEN_PARAMETERS.contains(&pair.split('=').next().unwrap_or_default()))
    });
    if in_url {
        let message = "a token in a URL is refused (URLs are logged and kept): send `Authorization: Bearer TOKEN`, and revoke this token (runner-registry token revoke ID), since it has been exposed";
        return ApiError::new(StatusCode::BAD_REQUEST, "token_in_url", message.into()).into_response();
    }
    next.run(request).await
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
    async fn a_token_in_a_url_is_refused_before_any_handler() {
        let app = Router::new()
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(refuse_tokens_in_urls));
        let request = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        for path in ["/fine?token=rrt_x", "/fine?a=1&access_token=rrt_x", "/fine?api_key"] {
            let response = app.clone().oneshot(request(path)).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        }
        for path in ["/fine", "/fine?tokens=2&q=token"] {
            assert_eq!(app.clone().oneshot(request(path)).await.unwrap().status(), StatusCode::OK, "{path}");
        }
    }

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
