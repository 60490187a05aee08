//! `GET /metrics`: Prometheus text format on the server's own port.
//!
//! Series (all prefixed `zhiku_`; times in seconds, as Prometheus names them):
//! - `http_request_duration_seconds{method,route,status}`: time to the response head, by
//!   route template (`/api/kbs/{kb}`, not the raw path, so that ids do not multiply the
//!   series; requests matching no route are `route="unmatched"`). A streamed answer's head
//!   comes once it has a generation slot; its text is timed by the answer series below.
//! - `rate_limited_total{route}`: requests answered 429.
//! - `answer_retrieval_seconds`, `answer_ttft_seconds` (question to first generated text),
//!   `answer_duration_seconds{outcome}`, `answer_tokens_per_second`: every answered question
//!   (`/api/ask`, `/v1/chat/completions`, and whatever else runs [`super::ask`]).
//! - `answers_total{outcome}`: `generated`, `extractive`, `not_found`, or `error`;
//!   `answers_cancelled_total`: generations stopped because the client went away.
//! - `cited_sentences_total{kb}`, `unsupported_sentences_total{kb}`: cited answer sentences
//!   and those the citation check found unsupported by their passages (`rag::claims`), by
//!   the knowledge base of the cited passages; their ratio is each KB's unsupported rate.
//! - `generation_queue_depth`: questions waiting for a generation slot now.
//! - `documents{kb}`, `chunks{kb}` (ready ones), `documents_by_status{status}`,
//!   `ingest_jobs{status}`: read from SQLite at each scrape.
//!
//! Who may scrape: with `[server] metrics_token` set, requests bearing that token; without
//! it, requests from a loopback address that carry no proxy header (`X-Forwarded-For`,
//! `Forwarded`, `X-Real-IP`: a reverse proxy on the same host would otherwise make every
//! visitor look local). Admins (session or API token) may always read it. The series hold
//! knowledge base names and traffic, nothing else, but that is still not for everyone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use zhiku_core::access::secrets_equal;
use zhiku_core::rag::{Answer, Outcome};
use zhiku_core::store::KbId;

use super::auth::{Caller, bearer};
use super::error::ApiError;
use super::state::AppState;

/// The label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// This server's series, in its own registry (two servers in one process, as in the tests,
/// do not share counts).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: HistogramVec,
    rate_limited: IntCounterVec,
    retrieval: Histogram,
    ttft: Histogram,
    answer: HistogramVec,
    tokens_per_s: Histogram,
    answers: IntCounterVec,
    cited_sentences: IntCounterVec,
    unsupported_sentences: IntCounterVec,
    cancelled: IntCounter,
    queue_depth: IntGauge,
    documents: IntGaugeVec,
    chunks: IntGaugeVec,
    documents_by_status: IntGaugeVec,
    jobs: IntGaugeVec,
}

/// Response times from 5 ms to a minute.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Retrieval: milliseconds (int8 query embedding) to a second (a busy CPU, a remote Qdrant).
const RETRIEVAL_BUCKETS: &[f64] = &[0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0];
/// Decode speeds of CPU models (a few tokens/s) to GPU servers (hundreds).
const TOKENS_PER_S_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("zhiku".into()), None).expect("a valid metric prefix");
        let histogram_vec = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid histogram");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let cancelled = IntCounter::new(
            "answers_cancelled_total",
            "Generations stopped because the client went away",
        )
        .expect("valid counter");
        registry
            .register(Box::new(cancelled.clone()))
            .expect("registered once");
        let queue_depth = IntGauge::new(
            "generation_queue_depth",
            "Questions waiting for a generation slot",
        )
        .expect("valid gauge");
        registry
            .register(Box::new(queue_depth.clone()))
            .expect("registered once");
        Self {
            requests: histogram_vec(
                "http_request_duration_seconds",
                "Time to the response head, by route template and status",
                LATENCY_BUCKETS,
                &["method", "route", "status"],
            ),
            rate_limited: counter(
                "rate_limited_total",
                "Requests refused with 429 (rate limits)",
                &["route"],
            ),
            retrieval: histogram(
                "answer_retrieval_seconds",
                "Search time of answered questions (embedding, both indexes, fusion)",
                RETRIEVAL_BUCKETS,
            ),
            ttft: histogram(
                "answer_ttft_seconds",
                "From the question to the first generated text",
                LATENCY_BUCKETS,
            ),
            answer: histogram_vec(
                "answer_duration_seconds",
                "Whole answer, retrieval to last token, by outcome",
                LATENCY_BUCKETS,
                &["outcome"],
            ),
            tokens_per_s: histogram(
                "answer_tokens_per_second",
                "Decode speed of generated answers",
                TOKENS_PER_S_BUCKETS,
            ),
            answers: counter(
                "answers_total",
                "Questions answered, by outcome (generated, extractive, not_found, error)",
                &["outcome"],
            ),
            cited_sentences: counter(
                "cited_sentences_total",
                "Cited answer sentences, by knowledge base of the cited passages",
                &["kb"],
            ),
            unsupported_sentences: counter(
                "unsupported_sentences_total",
                "Cited answer sentences the citation check found unsupported, by knowledge base",
                &["kb"],
            ),
            documents: gauge("documents", "Ready documents per knowledge base", &["kb"]),
            chunks: gauge("chunks", "Ready chunks per knowledge base", &["kb"]),
            documents_by_status: gauge(
                "documents_by_status",
                "Documents by status (indexing = being ingested now, or left by a crash)",
                &["status"],
            ),
            jobs: gauge("ingest_jobs", "Ingestion jobs by status", &["status"]),
            cancelled,
            queue_depth,
            registry,
        }
    }

    /// Count one HTTP response.
    pub fn observe_request(
        &self,
        method: &Method,
        route: &str,
        status: StatusCode,
        took: Duration,
    ) {
        // Methods outside the standard set would be a label an attacker could choose.
        let method = match method.as_str() {
            m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
            _ => "other",
        };
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .observe(took.as_secs_f64());
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited.with_label_values(&[route]).inc();
        }
    }

    /// Count one answered question (`None`: it failed). `kb_name`: the name of a knowledge
    /// base id of the question's scope (for the citation check's per-KB series).
    pub fn observe_answer(
        &self,
        answer: Option<&Answer>,
        kb_name: &dyn Fn(KbId) -> Option<String>,
    ) {
        let Some(a) = answer else {
            self.answers.with_label_values(&["error"]).inc();
            return;
        };
        let outcome = match a.outcome {
            Outcome::Generated => "generated",
            Outcome::Extractive => "extractive",
            Outcome::NotFound => "not_found",
            Outcome::Blocked => "blocked",
        };
        self.answers.with_label_values(&[outcome]).inc();
        self.retrieval.observe(a.retrieval_ms / 1e3);
        self.answer
            .with_label_values(&[outcome])
            .observe(a.total_ms / 1e3);
        if let Some(ms) = a.ttft_ms {
            self.ttft.observe(ms / 1e3);
        }
        for claim in &a.check.claims {
            for name in claim.kbs.iter().filter_map(|&kb| kb_name(kb)) {
                self.cited_sentences
                    .with_label_values(&[name.as_str()])
                    .inc();
                if !claim.supported {
                    self.unsupported_sentences
                        .with_label_values(&[name.as_str()])
                        .inc();
                }
            }
        }
        if let Some(g) = &a.generation {
            if g.finish == zhiku_llm::generate::FinishReason::Cancelled {
                self.cancelled.inc();
            } else if g.completion_tokens > 1 {
                self.tokens_per_s.observe(g.tokens_per_s);
            }
        }
    }

    /// Every series in the text format, with the gauges read now. Blocking (SQLite).
    pub fn render(&self, state: &AppState) -> Result<String, ApiError> {
        self.queue_depth.set(state.queue_depth() as i64);
        let meta = &state.engine.meta;
        // Reset first: a deleted knowledge base (or a status no longer present) must vanish.
        self.documents.reset();
        self.chunks.reset();
        for kb in meta.list_kbs()? {
            self.documents
                .with_label_values(&[kb.name.as_str()])
                .set(kb.documents as i64);
            self.chunks
                .with_label_values(&[kb.name.as_str()])
                .set(kb.chunks as i64);
        }
        set_by_status(
            &self.documents_by_status,
            &["indexing", "ready"],
            meta.document_status_counts()?,
        );
        set_by_status(
            &self.jobs,
            &["running", "done", "failed"],
            meta.job_status_counts()?,
        );
        // Upload queue (documents API): its gauges go here, read on each scrape like the above.
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(ApiError::internal)?;
        String::from_utf8(out).map_err(ApiError::internal)
    }
}

/// Set a by-status gauge: the `known` statuses always appear (0 when none), others when
/// present.
fn set_by_status(gauge: &IntGaugeVec, known: &[&str], counts: Vec<(String, u64)>) {
    gauge.reset();
    for s in known {
        gauge.with_label_values(&[*s]).set(0);
    }
    for (status, n) in counts {
        gauge.with_label_values(&[status.as_str()]).set(n as i64);
    }
}

/// Middleware: time every request by route template and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let res = next.run(req).await;
    state.metrics.observe_request(
        &method,
        route.as_deref().unwrap_or(UNMATCHED),
        res.status(),
        start.elapsed(),
    );
    res
}

fn is_proxied(headers: &HeaderMap) -> bool {
    ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// Prometheus metrics (text format). Open to loopback callers without a proxy header when
/// `[server] metrics_token` is unset; otherwise send that token as `Authorization: Bearer …`.
/// Admins may always read it.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
        (status = 401, description = "`[server] metrics_token` is set and was not sent"),
        (status = 403, description = "not loopback (or through a proxy) and no metrics token is configured")))]
pub async fn scrape(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    // A blank token would match an empty bearer token: it counts as unset.
    let configured = zhiku_core::config::Secret::exposed(&state.engine.config.server.metrics_token)
        .filter(|t| !t.trim().is_empty());
    let token_ok = configured
        .zip(bearer(&headers))
        .is_some_and(|(want, sent)| secrets_equal(sent, want));
    let admin = caller.as_ref().is_ok_and(|c| c.user.is_admin());
    let local = configured.is_none() && peer.ip().is_loopback() && !is_proxied(&headers);
    if !(token_ok || admin || local) {
        return Err(match configured {
            Some(_) => ApiError::Unauthorized(
                "send [server] metrics_token as `Authorization: Bearer …` (or an admin's API \
                 token) to read /metrics"
                    .into(),
            ),
            None => ApiError::Forbidden(
                "/metrics is open to loopback only; set [server] metrics_token to scrape it \
                 from elsewhere, or use an admin's API token"
                    .into(),
            ),
        });
    }
    let s = state.clone();
    let text = tokio::task::spawn_blocking(move || s.metrics.render(&s))
        .await
        .map_err(ApiError::internal)??;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_do_not_become_labels() {
        let m = Metrics::new();
        let ok = StatusCode::OK;
        m.observe_request(&Method::GET, "/api/kbs", ok, Duration::from_millis(3));
        let odd = Method::from_bytes(b"BREW").unwrap();
        m.observe_request(
            &odd,
            UNMATCHED,
            StatusCode::TOO_MANY_REQUESTS,
            Duration::ZERO,
        );
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                r#"zhiku_http_request_duration_seconds_count{method="GET",route="/api/kbs",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"method="other""#), "{text}");
        assert!(!text.contains("BREW"), "{text}");
        assert!(
            text.contains(r#"zhiku_rate_limited_total{route="unmatched"} 1"#),
            "{text}"
        );
    }
}
