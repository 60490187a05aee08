//! The embedded web pages as the server hands them out: content types, cache headers and
//! revalidation, the security headers, every asset a page or script refers to, nothing
//! loaded from outside the server, and the HTML 404 for browsers (JSON for the APIs).

mod common;

use common::HashEmbedder;
use common::http::{Client, Response, TestServer};

fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(&dir.path().join("data"), HashEmbedder::new());
    (dir, TestServer::start(e, None))
}

fn get(c: &Client, path: &str, accept: &str) -> Response {
    c.request("GET", path, None, &[("Accept", accept)])
}

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// `/static/…` references in a page (src and href attributes).
fn static_refs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for piece in html.split(attr).skip(1) {
            let url = piece.split('"').next().unwrap();
            if url.starts_with("/static/") {
                out.push(url.to_string());
            }
        }
    }
    out
}

/// Module imports of a script (`from './x.js'`).
fn imports(js: &str) -> Vec<String> {
    js.split("from '")
        .skip(1)
        .map(|p| p.split('\'').next().unwrap().to_string())
        .collect()
}

/// URLs that would leave the server (a CDN, web fonts…); XML namespaces are not fetched.
fn external_urls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for scheme in ["http://", "https://", "//cdn", "//fonts."] {
        for (i, _) in text.match_indices(scheme) {
            let url: String = text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"'\"<>)`".contains(*c))
                .collect();
            if !url.starts_with("http://www.w3.org/") {
                out.push(url);
            }
        }
    }
    out
}

#[test]
fn pages_and_assets_are_served_with_types_caching_and_security_headers() {
    let (_d, s) = server();
    let c = s.client();
    let mut assets = std::collections::BTreeSet::new();
    for page in ["/", "/login", "/admin"] {
        let r = get(&c, page, BROWSER);
        assert_eq!(r.status, 200, "{page}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{page}");
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline"),
            "no inline scripts or styles: {csp}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        let html = r.text();
        assert!(!html.contains("{{"), "{page}: unreplaced placeholder");
        assert!(!html.contains("<script>"), "{page}: inline script");
        assert!(!html.contains(" style="), "{page}: inline style");
        assert_eq!(external_urls(&html), Vec::<String>::new(), "{page}");
        let refs = static_refs(&html);
        assert!(
            refs.iter().any(|r| r.ends_with(".js")) && refs.iter().any(|r| r.ends_with(".css")),
            "{page}: {refs:?}"
        );
        assets.extend(refs);

        // Revalidation: the same page with its ETag is 304 and empty.
        let etag = r.header("etag").expect("etag").to_string();
        let again = c.request("GET", page, None, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{page}");
        assert!(again.body.is_empty());
    }

    // Every asset the pages link, and every module those scripts import, resolves.
    let mut queue: Vec<String> = assets.iter().cloned().collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(url) = queue.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let r = get(&c, &url, "*/*");
        assert_eq!(r.status, 200, "{url}");
        let want = match url.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected asset type {other}: {url}"),
        };
        assert_eq!(r.header("content-type"), Some(want), "{url}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{url}: versioned URLs are cached for good"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        let text = r.text();
        assert_eq!(external_urls(&text), Vec::<String>::new(), "{url}");
        if url.ends_with(".js") {
            assert!(
                !text.contains(".innerHTML") && !text.contains("insertAdjacentHTML"),
                "{url}: the pages build DOM nodes, never HTML strings"
            );
            let base = &url[..url.rfind('/').unwrap() + 1];
            for m in imports(&text) {
                let m = m.strip_prefix("./").expect("relative imports");
                queue.push(format!("{base}{m}"));
            }
        }
    }
    assert!(seen.len() >= 6, "{seen:?}");

    // The same asset without the version, or under an old one, is served but revalidated.
    let any = seen.iter().find(|u| u.ends_with("chat.js")).unwrap();
    let name = any.rsplit('/').next().unwrap();
    for url in [format!("/static/{name}"), format!("/static/0ld/{name}")] {
        let r = get(&c, &url, "*/*");
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{url}");
        let etag = r.header("etag").unwrap().to_string();
        let again = c.request("GET", &url, None, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{url}");
    }
    assert_eq!(get(&c, "/static/nope.js", "*/*").status, 404);
    assert_eq!(get(&c, "/static/x/../../Cargo.toml", "*/*").status, 404);
}

#[test]
fn browsers_get_an_html_404_and_apis_keep_json() {
    let (_d, s) = server();
    let c = s.client();
    let r = get(&c, "/no/such/page", BROWSER);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.header("content-security-policy").is_some());
    let html = r.text();
    assert!(
        html.contains("页面不存在") && html.contains("Page not found"),
        "{html}"
    );
    assert!(!html.contains("/no/such/page"), "the path is not echoed");

    for (path, accept) in [
        ("/no/such/page", "application/json"),
        ("/no/such/page", "*/*"),
        ("/api/no-such-endpoint", BROWSER),
        ("/v1/no-such-endpoint", BROWSER),
        ("/api", BROWSER),
    ] {
        let r = get(&c, path, accept);
        assert_eq!(r.status, 404, "{path} {accept}");
        assert_eq!(
            r.json()["error"]["code"],
            "not_found",
            "{path} {accept}: {}",
            r.text()
        );
    }
    // API errors are untouched: a browser without a session asking /api/me gets JSON 401.
    let r = get(&c, "/api/me", BROWSER);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unauthorized");
}

/// Every response, not only the pages, carries the security headers: an API's JSON (say, a
/// document title with markup) opened in a tab must not be sniffed as HTML or framed.
#[test]
fn api_responses_carry_the_security_headers_too() {
    let (_d, s) = server();
    let c = s.client();
    for (path, status) in [
        ("/api/me", 401),
        ("/healthz", 200),
        ("/api/openapi.json", 200),
    ] {
        let r = get(&c, path, "*/*");
        assert_eq!(r.status, status, "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        // No public https URL configured: no HSTS (it would lock out a plain-http install).
        assert_eq!(r.header("strict-transport-security"), None, "{path}");
    }
}
