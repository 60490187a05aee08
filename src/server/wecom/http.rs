//! A small HTTP/JSON client for the WeCom API on core's outbound HTTP client
//! (`zhiku_core::http`), with a deadline on the whole exchange.
//!
//! URLs are `http://` (tests, private proxies) or `https://`. Query strings carry secrets
//! (`corpsecret`, `access_token`, the robot's `key`), so errors name the request by its
//! path only.

use std::time::Duration;

use http_body_util::Full;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::Value;
use zhiku_core::http::{Endpoint, ExchangeError, exchange};

use super::WecomError;

/// Largest answer body read, bytes (WeCom's answers are a few hundred).
const MAX_BODY: usize = 1 << 20;

/// A client for one server (scheme, host and port of a base URL).
pub struct JsonClient {
    endpoint: Endpoint,
    timeout: Duration,
}

impl JsonClient {
    /// A client for `base` (e.g. `https://qyapi.weixin.qq.com`); `timeout` bounds each
    /// whole request.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, WecomError> {
        let endpoint = Endpoint::parse(base).map_err(|e| WecomError::Config(e.to_string()))?;
        Ok(Self { endpoint, timeout })
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
        let mut req = self.endpoint.request(method, path_query);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(format!("bad request: {e}")))?;
        let (status, bytes) = exchange(&self.endpoint, req, self.timeout, MAX_BODY)
            .await
            .map_err(|e| match e {
                ExchangeError::Connect(e) => WecomError::Unreachable {
                    what: what.to_string(),
                    message: e.to_string(),
                },
                ExchangeError::Failed(m) => fail(m),
            })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
            return Err(fail(format!("HTTP {status}: {}", text.trim())));
        }
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("the answer is not JSON: {e}")))
    }
}
