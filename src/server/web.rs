//! The web pages (chat at `/`, `/login`, `/admin`) and their scripts and styles under
//! `/static/`, embedded in the binary: no front-end build, nothing from a CDN, so the pages
//! work on a network without internet access.
//!
//! Caching: pages are `no-cache` (revalidated with their ETag on every load, so an upgrade
//! shows at once) and link their assets as `/static/{version}/{name}`, where the version is
//! a hash of all the assets; those URLs are immutable and cached for a year. An asset asked
//! for under another version (a page from an older build) or none is served `no-cache`.
//!
//! Unknown paths: a browser asking for a page (`Accept: text/html`) gets a friendly HTML
//! 404; `/api` and `/v1` paths, and every other client, get the JSON [`ApiError`].

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::state::AppState;

/// One embedded file under `web/static/`.
pub struct Asset {
    pub name: &'static str,
    pub mime: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../web/static/",
                $name
            )),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file a page may load.
pub const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("common.js", JS),
    asset!("markdown.js", JS),
    asset!("chat.js", JS),
    asset!("login.js", JS),
    asset!("admin.js", JS),
    asset!("tend.js", JS),
    asset!("perms.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

macro_rules! page_source {
    ($name:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $name))
    };
}

/// What the pages allow themselves: only this server's scripts, styles, images and API.
/// Every response carries it ([`super::hardening::security_headers`]).
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

fn hash(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The assets' version: changes whenever any asset changes.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let parts: Vec<&[u8]> = ASSETS
        .iter()
        .flat_map(|a| [a.name.as_bytes(), a.body])
        .collect();
    hash(&parts)[..12].to_string()
});

static ASSET_ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", hash(&[a.body])))
        .collect()
});

/// A page with its asset links pointing at the current version.
struct Page {
    html: String,
    etag: String,
}

impl Page {
    fn new(source: &str) -> Self {
        let html = source.replace("{{v}}", &VERSION);
        let etag = format!("\"{}\"", hash(&[html.as_bytes()]));
        Self { html, etag }
    }
}

static CHAT: LazyLock<Page> = LazyLock::new(|| Page::new(page_source!("index.html")));
static LOGIN: LazyLock<Page> = LazyLock::new(|| Page::new(page_source!("login.html")));
static ADMIN: LazyLock<Page> = LazyLock::new(|| Page::new(page_source!("admin.html")));
static NOT_FOUND: LazyLock<Page> = LazyLock::new(|| Page::new(page_source!("404.html")));

/// The page routes and the assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { page(&CHAT, &h) }))
        .route(
            "/login",
            get(|h: HeaderMap| async move { page(&LOGIN, &h) }),
        )
        .route(
            "/admin",
            get(|h: HeaderMap| async move { page(&ADMIN, &h) }),
        )
        .route("/static/{*path}", get(asset))
}

/// Whether `headers` carry an `If-None-Match` that `etag` satisfies.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

fn set(res: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().insert(name, v);
    }
}

/// Headers every HTML response carries (the security headers are site-wide).
fn html_headers(res: &mut Response) {
    set(res, header::CONTENT_TYPE, "text/html; charset=utf-8");
}

fn page(p: &Page, headers: &HeaderMap) -> Response {
    let mut res = if not_modified(headers, &p.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        p.html.clone().into_response()
    };
    html_headers(&mut res);
    set(&mut res, header::ETAG, &p.etag);
    set(&mut res, header::CACHE_CONTROL, "no-cache");
    res
}

/// `/static/{version}/{name}` (immutable when the version is current) or `/static/{name}`.
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let (version, name) = match path.split_once('/') {
        Some((v, n)) => (Some(v), n),
        None => (None, path.as_str()),
    };
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return ApiError::NotFound(format!("no such file: /static/{path}")).into_response();
    };
    let a = &ASSETS[i];
    let etag = &ASSET_ETAGS[i];
    let mut res = if not_modified(&headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        a.body.into_response()
    };
    let cache = if version == Some(VERSION.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    set(&mut res, header::CONTENT_TYPE, a.mime);
    set(&mut res, header::ETAG, etag);
    set(&mut res, header::CACHE_CONTROL, cache);
    res
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

fn is_api(path: &str) -> bool {
    ["/api", "/v1"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// What an unknown path answers: an HTML page for a browser, JSON otherwise (always JSON
/// under `/api` and `/v1`).
pub async fn fallback(headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path();
    if !is_api(path) && wants_html(&headers) {
        let mut res = (StatusCode::NOT_FOUND, NOT_FOUND.html.clone()).into_response();
        html_headers(&mut res);
        set(&mut res, header::CACHE_CONTROL, "no-cache");
        return res;
    }
    ApiError::NotFound(format!("no such page or endpoint: {path}")).into_response()
}
