//! A small HTTP/JSON client for the WeCom API on the stack the OpenAI-compatible client
//! already uses (hyper 1, rustls with the system roots): one connection per request, which is
//! plenty for a few messages a minute, with a deadline on the whole exchange.
//!
//! URLs are `http://` (tests, private proxies) or `https://`. Query strings carry secrets
//! (`corpsecret`, `access_token`, the robot's `key`), so errors name the request by its
//! path only.

use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use super::WecomError;

/// Largest answer body read, bytes (WeCom's answers are a few hundred).
const MAX_BODY: usize = 1 << 20;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client for one server (scheme, host and port of a base URL).
pub struct JsonClient {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    /// Path prefix of the base URL, no trailing slash.
    base_path: String,
    timeout: Duration,
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

impl JsonClient {
    /// A client for `base` (e.g. `https://qyapi.weixin.qq.com`); `timeout` bounds each
    /// whole request.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, WecomError> {
        let bad = |m: String| WecomError::Config(format!("URL `{base}`: {m}"));
        let uri: Uri = base.trim().parse().map_err(|e| bad(format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("it must start with http:// or https://".into())),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad("it has no host".into()))?
            .trim_matches(['[', ']'])
            .to_string();
        Ok(Self {
            https,
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_else(|| host.clone()),
            host,
            base_path: uri.path().trim_end_matches('/').to_string(),
            timeout,
            tls: OnceLock::new(),
        })
    }

    /// `GET {base}{path_query}`, the answer as JSON. `what` names it in errors.
    pub async fn get(&self, path_query: &str, what: &str) -> Result<Value, WecomError> {
        self.request(Method::GET, path_query, what, None).await
    }

    /// `POST {base}{path_query}` with a JSON body, the answer as JSON.
    pub async fn post(
        &self,
        path_query: &str,
        what: &str,
        body: &Value,
    ) -> Result<Value, WecomError> {
        let body = serde_json::to_vec(body).expect("JSON values serialise");
        self.request(Method::POST, path_query, what, Some(body))
            .await
    }

    async fn request(
        &self,
        method: Method,
        path_query: &str,
        what: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, WecomError> {
        let fail = |message: String| WecomError::Http {
            what: what.to_string(),
            message,
        };
        let unreachable = |message: String| WecomError::Unreachable {
            what: what.to_string(),
            message,
        };
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| unreachable(format!("cannot connect to {}: {e}", self.authority)))?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = if self.https {
                let tls = self
                    .tls
                    .get_or_init(zhiku_llm::generate::openai::tls_connector)
                    .clone()
                    .map_err(unreachable)?;
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| unreachable(format!("bad TLS server name: {e}")))?;
                Box::new(
                    tls.connect(name, tcp)
                        .await
                        .map_err(|e| unreachable(format!("TLS handshake: {e}")))?,
                )
            } else {
                Box::new(tcp)
            };
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| unreachable(format!("HTTP handshake: {e}")))?;
            let conn = tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}{path_query}", self.base_path))
                .header(hyper::header::HOST, &self.authority)
                .header(
                    hyper::header::USER_AGENT,
                    concat!("zhiku/", env!("CARGO_PKG_VERSION")),
                );
            if body.is_some() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| unreachable(format!("bad request: {e}")))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| fail(format!("request failed: {e}")));
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    conn.abort();
                    return Err(e);
                }
            };
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the answer: {e}")))?
                .to_bytes();
            conn.abort();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
                return Err(fail(format!("HTTP {status}: {}", text.trim())));
            }
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("the answer is not JSON: {e}")))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(fail(format!(
                "no answer within {} s from {}",
                self.timeout.as_secs(),
                self.authority
            ))),
        }
    }
}
