//! A zhiku server on 127.0.0.1 inside the test process, and a minimal HTTP/1.1 client for it
//! (one connection per request, chunked bodies decoded, SSE events parsed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use zhiku_core::engine::Engine;
use zhiku_llm::generate::Generator;
use zhiku_server::AppState;

/// A running server; stops (gracefully) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(engine: Engine, generator: Option<Arc<dyn Generator>>) -> Self {
        Self::start_at(engine, generator, "127.0.0.1:0")
    }

    /// [`TestServer::start`] on `addr` (a port chosen beforehand, for a configuration that
    /// must name the server's own URL, such as an OIDC redirect).
    pub fn start_at(engine: Engine, generator: Option<Arc<dyn Generator>>, addr: &str) -> Self {
        let addr = addr.to_string();
        let state = AppState::with_generator(engine, generator);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr.as_str()).await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                zhiku_server::serve(s, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server start");
        Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            headers: Vec::new(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// Server-sent events as (event, data) pairs.
    pub fn events(&self) -> Vec<(String, String)> {
        let text = self.text();
        let mut out = Vec::new();
        for block in text.split("\n\n") {
            let mut event = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                }
            }
            if !data.is_empty() {
                out.push((event, data.join("\n")));
            }
        }
        out
    }
}

/// A client with default headers (cookie, CSRF token, bearer token).
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub headers: Vec<(String, String)>,
}

impl Client {
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.with_header("Authorization", &format!("Bearer {token}"))
    }

    /// Log in; the returned client sends the session cookie and CSRF token.
    pub fn login(&self, name: &str, password: &str) -> Client {
        let r = self.post_json(
            "/api/login",
            &serde_json::json!({"name": name, "password": password}),
        );
        assert_eq!(r.status, 200, "login as {name}: {}", r.text());
        let cookie = r.header("set-cookie").expect("session cookie").to_string();
        let pair = cookie.split(';').next().unwrap().to_string();
        let csrf = r.json()["csrf"].as_str().expect("csrf").to_string();
        self.clone()
            .with_header("Cookie", &pair)
            .with_header("X-CSRF-Token", &csrf)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[])
    }
    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None, &[])
    }
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        self.send_json("POST", path, body)
    }
    pub fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> Response {
        self.request(
            method,
            path,
            Some(body.to_string().into_bytes()),
            &[("Content-Type", "application/json")],
        )
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra.iter().copied())
        {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        parse(&raw)
    }
}

/// A `multipart/form-data` body, as a browser sends a file input: parts with a field name,
/// a file name (which may be a relative path, like `webkitRelativePath`) and bytes.
#[derive(Debug, Clone, Default)]
pub struct Multipart {
    body: Vec<u8>,
}

impl Multipart {
    const BOUNDARY: &'static str = "----zhikuTestBoundary7MA4YWxkTrZu0gW";

    pub fn new() -> Self {
        Self::default()
    }

    /// Add a file part. The name goes into the header raw (UTF-8), as browsers send it.
    pub fn file(mut self, field: &str, file_name: &str, data: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                Self::BOUNDARY
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", Self::BOUNDARY)
    }

    pub fn into_body(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{}--\r\n", Self::BOUNDARY).as_bytes());
        self.body
    }
}

impl Client {
    /// POST a multipart form. The server may answer before reading all of a large body
    /// (413) and close the connection: the answer is read all the same.
    pub fn post_multipart(&self, path: &str, form: Multipart) -> Response {
        let content_type = form.content_type();
        let body = form.into_body();
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let sent = s
            .write_all(head.as_bytes())
            .and_then(|_| s.write_all(&body));
        let mut raw = Vec::new();
        let read = s.read_to_end(&mut raw);
        assert!(
            !raw.is_empty(),
            "no response to POST {path} (send: {sent:?}, read: {read:?})"
        );
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}
