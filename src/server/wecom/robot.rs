//! The group robot (群机器人): admin notifications posted to
//! `/cgi-bin/webhook/send?key=…` as markdown, at most 20 a minute (WeCom's limit per robot).
//!
//! Notifications come from threads that must not wait (the ingestion worker), so
//! [`Robot::notify`] only queues; one task sends them in order, waiting when the last minute
//! already had 20. A full queue drops the newest with a warning: notifications are a
//! convenience, the job statuses in the admin pages are the record.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::WecomError;
use super::api::{REQUEST_TIMEOUT, check};
use super::http::JsonClient;
use zhiku_core::store::meta::{JobStatus, UploadJob};

/// WeCom's limit: messages per robot per minute.
pub const PER_MINUTE: usize = 20;
/// Notifications waiting to be sent before new ones are dropped.
const QUEUE: usize = 200;
/// Failed files named in a notification.
const NAMED_FAILURES: usize = 5;

/// Sends at most `max` messages in any `span`.
#[derive(Debug)]
pub struct Window {
    max: usize,
    span: Duration,
    sent: VecDeque<Instant>,
}

impl Window {
    pub fn new(max: usize, span: Duration) -> Self {
        Self {
            max: max.max(1),
            span,
            sent: VecDeque::new(),
        }
    }

    /// How long to wait at `now` before the next message may go.
    pub fn wait(&mut self, now: Instant) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.span)
        {
            self.sent.pop_front();
        }
        match self.sent.front() {
            Some(first) if self.sent.len() >= self.max => (*first + self.span) - now,
            _ => Duration::ZERO,
        }
    }

    /// A message went at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

/// The robot of `robot_webhook`: a whole URL, or just its key (sent to `api_base`).
pub struct Robot {
    http: JsonClient,
    path_query: String,
    tx: mpsc::Sender<String>,
    rx: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Robot {
    pub fn new(webhook: &str, api_base: &str) -> Result<Self, WecomError> {
        let webhook = webhook.trim();
        let (base, path_query) = if webhook.contains("://") {
            let uri: hyper::Uri = webhook.parse().map_err(|e| {
                WecomError::Config(format!("wecom.robot_webhook is not a URL: {e}"))
            })?;
            let base = format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map(|a| a.as_str()).unwrap_or("")
            );
            let pq = uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            (base, pq)
        } else {
            let key = form_urlencoded::byte_serialize(webhook.as_bytes()).collect::<String>();
            (
                api_base.to_string(),
                format!("/cgi-bin/webhook/send?key={key}"),
            )
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok(Self {
            http: JsonClient::new(&base, REQUEST_TIMEOUT)?,
            path_query,
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// Queue a markdown notification; never waits.
    pub fn notify(&self, markdown: String) {
        if let Err(e) = self.tx.try_send(markdown) {
            tracing::warn!(error = %e, "WeCom robot notification dropped");
        }
    }

    /// Send one notification now.
    pub async fn send(&self, markdown: &str) -> Result<(), WecomError> {
        let body = json!({ "msgtype": "markdown", "markdown": { "content": markdown } });
        let v = self
            .http
            .post(&self.path_query, "webhook/send", &body)
            .await?;
        check(&v, "webhook/send")
    }

    /// Send queued notifications until the robot is dropped, `per_minute` at most in any
    /// `span` (20 a minute for WeCom). Runs once; later calls return at once.
    pub async fn run(&self, mut window: Window) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        while let Some(text) = rx.recv().await {
            let wait = window.wait(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            window.record(Instant::now());
            if let Err(e) = self.send(&text).await {
                tracing::warn!(error = %e, "cannot send a WeCom robot notification");
            }
        }
    }
}

/// The notification for a finished ingestion job.
pub fn job_message(job: &UploadJob) -> String {
    let ok = job.status == JobStatus::Done;
    let mut s = format!(
        "**知库 zhiku**：知识库 **{}** 的{}任务 #{} {}\n> 成功 {} 个，失败 {} 个（共 {} 个文件）",
        job.kb,
        match job.kind {
            zhiku_core::store::meta::JobKind::Upload => "上传",
            zhiku_core::store::meta::JobKind::Reindex => "重建索引",
        },
        job.id,
        if ok {
            "已完成"
        } else {
            "<font color=\"warning\">失败</font>"
        },
        job.counts.done,
        job.counts.failed,
        job.files.len(),
    );
    let failed: Vec<_> = job
        .files
        .iter()
        .filter(|f| f.status == zhiku_core::store::meta::FileStatus::Failed)
        .collect();
    for f in failed.iter().take(NAMED_FAILURES) {
        s.push_str(&format!(
            "\n> {}：{}",
            f.name,
            f.message.as_deref().unwrap_or("")
        ));
    }
    if failed.len() > NAMED_FAILURES {
        s.push_str(&format!("\n> …另有 {} 个", failed.len() - NAMED_FAILURES));
    }
    s.push_str(&format!("\n> 提交者 {}", job.actor));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_allows_twenty_a_minute() {
        let minute = Duration::from_secs(60);
        let mut w = Window::new(PER_MINUTE, minute);
        let t0 = Instant::now();
        for i in 0..PER_MINUTE {
            let now = t0 + Duration::from_secs(i as u64);
            assert_eq!(w.wait(now), Duration::ZERO, "message {i}");
            w.record(now);
        }
        // The 21st, at 20 s, waits until the first is a minute old.
        let now = t0 + Duration::from_secs(20);
        assert_eq!(w.wait(now), Duration::from_secs(40));
        let later = t0 + minute;
        assert_eq!(w.wait(later), Duration::ZERO);
        w.record(later);
        // The second one sent is now the oldest of the last minute.
        assert_eq!(w.wait(later), Duration::from_secs(1));
    }

    #[test]
    fn key_or_url() {
        let r = Robot::new("abc-123", "http://127.0.0.1:9").unwrap();
        assert_eq!(r.path_query, "/cgi-bin/webhook/send?key=abc-123");
        let r = Robot::new(
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k1",
            "http://unused",
        )
        .unwrap();
        assert_eq!(r.path_query, "/cgi-bin/webhook/send?key=k1");
        assert!(Robot::new("ftp://x/y", "http://a").is_err());
    }
}
