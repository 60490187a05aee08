//! The one outbound HTTP client: hyper 1 over TCP, or rustls (ring, the system's root
//! certificates) for `https://`, one HTTP/1.1 connection per request. The OpenAI-compatible
//! generator streams answers through it; the WeCom API client (and sign-in providers) send
//! JSON through it. Outbound calls are few (a question's answer, a WeCom message), so a
//! connection per request keeps the client simple and a cancelled answer closes its socket
//! at once.
//!
//! Errors name the server by its authority and the request by what the caller calls it,
//! never by its query string: WeCom and others carry secrets there.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The configured URL cannot be used.
    #[error("URL `{url}`: {message}")]
    Url { url: String, message: String },
    /// No connection (refused, timed out, reset): another attempt may succeed.
    #[error("{0}")]
    Unreachable(String),
    /// A connection that will not work as configured (TLS name or certificate): retrying
    /// does not help.
    #[error("{0}")]
    Tls(String),
}

impl HttpError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A server: the scheme, host, port and path prefix of a base URL such as
/// `https://qyapi.weixin.qq.com` or `http://vllm:8000/v1`.
pub struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    /// Path prefix, no trailing slash.
    base_path: String,
    tls: OnceLock<Result<tokio_rustls::TlsConnector, String>>,
}

/// An open connection: send one request on it. Dropping it closes the socket (ends the
/// connection's task), which tells a streaming server to stop.
pub struct Connection {
    pub sender: SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |message: String| HttpError::Url {
            url: url.to_string(),
            message,
        };
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e| bad(format!("not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            other => {
                return Err(bad(format!(
                    "it must start with http:// or https://, not {:?}",
                    other.unwrap_or("")
                )));
            }
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
            tls: OnceLock::new(),
        })
    }

    /// `host[:port]` as written in the URL, for messages.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// A request for `{base path}{path_query}` with `Host` and `User-Agent` set.
    pub fn request(&self, method: Method, path_query: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{path_query}", self.base_path))
            .header(hyper::header::HOST, &self.authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("zhiku/", env!("CARGO_PKG_VERSION")),
            )
    }

    /// Connect (TCP, then TLS for `https://`, each within `timeout`) and shake hands.
    pub async fn connect(&self, timeout: Duration) -> Result<Connection, HttpError> {
        let tcp = tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            HttpError::Unreachable(format!(
                "no connection to {} within {timeout:?}; is the server running and reachable?",
                self.authority
            ))
        })?
        .map_err(|e| {
            HttpError::Unreachable(format!("cannot connect to {}: {e}", self.authority))
        })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if self.https {
            let tls = self
                .tls
                .get_or_init(tls_connector)
                .clone()
                .map_err(HttpError::Tls)?;
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| HttpError::Tls(format!("bad TLS server name: {e}")))?;
            let stream = tokio::time::timeout(timeout, tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    HttpError::Unreachable(format!(
                        "TLS handshake with {} timed out",
                        self.authority
                    ))
                })?
                .map_err(|e| {
                    HttpError::Tls(format!("TLS handshake with {}: {e}", self.authority))
                })?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| {
                HttpError::Unreachable(format!("HTTP handshake with {}: {e}", self.authority))
            })?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection { sender, task })
    }
}

/// Why one request/answer exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Connect(#[from] HttpError),
    /// Sending, or reading the answer, failed or ran out of time.
    #[error("{0}")]
    Failed(String),
}

/// One whole exchange within `timeout`: connect, send `req`, read at most `max_body` bytes
/// of the answer. Returns the status and the body, whatever the status.
pub async fn exchange(
    endpoint: &Endpoint,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
) -> Result<(StatusCode, Bytes), ExchangeError> {
    let run = async {
        let mut conn = endpoint.connect(timeout).await?;
        let resp: Response<Incoming> = conn
            .sender
            .send_request(req)
            .await
            .map_err(|e| ExchangeError::Failed(format!("request failed: {e}")))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| ExchangeError::Failed(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| {
            Err(ExchangeError::Failed(format!(
                "no answer within {} s from {}",
                timeout.as_secs(),
                endpoint.authority()
            )))
        })
}

/// The TLS client configuration: the system's root certificates, ring, TLS 1.2 and 1.3.
pub fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONNECTOR: OnceLock<Result<tokio_rustls::TlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "https: no system root certificates found (install ca-certificates)".into(),
                );
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_endpoints() {
        let e = Endpoint::parse(" http://127.0.0.1:8000/v1/ ").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port),
            (false, "127.0.0.1", 8000)
        );
        assert_eq!(
            (e.authority(), e.base_path.as_str()),
            ("127.0.0.1:8000", "/v1")
        );
        let e = Endpoint::parse("https://[::1]").unwrap();
        assert_eq!((e.https, e.host.as_str(), e.port), (true, "::1", 443));
        let r = e
            .request(Method::GET, "/cgi-bin/gettoken?corpsecret=s")
            .body(())
            .unwrap();
        assert_eq!(r.uri(), "/cgi-bin/gettoken?corpsecret=s");
        assert_eq!(r.headers()[hyper::header::HOST], "[::1]");
        for bad in ["ftp://x", "not a url", "/relative"] {
            let err = Endpoint::parse(bad).err().expect(bad);
            assert!(matches!(err, HttpError::Url { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn a_closed_port_is_unreachable_and_retryable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = rt
            .block_on(e.connect(Duration::from_secs(2)))
            .err()
            .unwrap();
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[test]
    fn an_exchange_reads_status_and_body_and_caps_the_body() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for body in ["{\"errcode\":0}", &"x".repeat(5000)] {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).unwrap();
                let reply = format!(
                    "HTTP/1.1 418 I'm a teapot\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(reply.as_bytes()).unwrap();
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let req = || {
            e.request(Method::GET, "/x")
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let (status, body) = rt
            .block_on(exchange(&e, req(), Duration::from_secs(5), 1000))
            .unwrap();
        assert_eq!((status.as_u16(), &body[..]), (418, &b"{\"errcode\":0}"[..]));
        let err = rt
            .block_on(exchange(&e, req(), Duration::from_secs(5), 1000))
            .err()
            .unwrap();
        assert!(err.to_string().contains("reading the answer"), "{err}");
        server.join().unwrap();
    }
}
