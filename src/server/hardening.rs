//! Site-wide protections every response gets: security headers, and a deadline that turns a
//! request that takes too long into a clear JSON 503 instead of an empty one.
//!
//! The headers follow the OWASP secure-headers baseline. The pages load only their own
//! scripts and styles (`web/`: no inline script, no inline style attribute), so a strict
//! Content-Security-Policy costs nothing and stops an injected `<script>` (say, from a
//! document title rendered by mistake as HTML) from running. HSTS is only sent when the
//! public URL is https: sent over plain http it would lock users out of a test install.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Add the security headers to every response (a handler's own value wins).
pub async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let https = state
        .engine
        .config
        .server
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "same-origin");
    set(header::CONTENT_SECURITY_POLICY, super::web::CSP);
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    if https {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    res
}

/// Uploads stream a body whose size only the client's link decides (up to
/// `server.max_upload_mb`), so they get `server.upload_timeout_secs` instead of
/// `server.request_timeout_secs`.
fn is_upload(req: &Request) -> bool {
    req.method() == Method::POST
        && req.uri().path().starts_with("/api/kbs/")
        && req.uri().path().ends_with("/documents")
}

/// Answer 503 with a JSON reason when the handler has not produced a response head in
/// time. A streamed answer (SSE) has its head at once, so only the wait before it counts
/// (the generation queue included); its body is bounded by the generator's own limits and
/// ends when the client goes away.
pub async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let cfg = &state.engine.config.server;
    let (secs, key) = if is_upload(&req) {
        (cfg.upload_timeout_secs, "server.upload_timeout_secs")
    } else {
        (cfg.request_timeout_secs, "server.request_timeout_secs")
    };
    let secs = secs.max(1);
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(limit_secs = secs, "request timed out");
            ApiError::Unavailable {
                retry_after: 5,
                message: format!(
                    "the request took longer than {secs} s ({key}) and was stopped; \
                     try again, or ask an admin to raise the limit"
                ),
            }
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_document_uploads_get_the_upload_deadline() {
        let req = |m: Method, p: &str| {
            Request::builder()
                .method(m)
                .uri(p)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert!(is_upload(&req(Method::POST, "/api/kbs/hr/documents")));
        assert!(!is_upload(&req(Method::GET, "/api/kbs/hr/documents")));
        assert!(!is_upload(&req(Method::POST, "/api/ask")));
    }
}
