//! The web dashboard at `/ui`: a single page (HTML, CSS and JavaScript embedded in the binary,
//! no external assets) that drives the REST API from the browser on the same origin.
//!
//! The assets themselves are public; every call the page makes goes through the API and its
//! tokens (docs/dashboard.md).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");

/// Routes of the dashboard: `GET /ui` (the page), `/ui/app.js` and `/ui/style.css`; `/ui/`
/// redirects to `/ui`.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String, String) {
        let resp = super::routes()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_the_embedded_assets() {
        let (s, t, b) = get("/ui").await;
        assert_eq!(s, StatusCode::OK);
        assert!(t.starts_with("text/html"));
        assert!(b.contains("/ui/app.js") && b.contains("/ui/style.css"));
        let (s, t, _) = get("/ui/app.js").await;
        assert_eq!(s, StatusCode::OK);
        assert!(t.starts_with("text/javascript"));
        let (s, t, _) = get("/ui/style.css").await;
        assert_eq!(s, StatusCode::OK);
        assert!(t.starts_with("text/css"));
        let (s, _, _) = get("/ui/").await;
        assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    }

    #[test]
    fn assets_load_nothing_from_elsewhere() {
        for asset in [super::INDEX_HTML, super::APP_JS, super::STYLE_CSS] {
            assert!(!asset.contains("http://") && !asset.contains("https://"));
        }
    }
}
