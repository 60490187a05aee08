//! What every handler shares: the engine, the generators (one per LoRA adapter in use), the
//! rate limiters, the generation queue, the metrics and the ingestion worker's wake-up signal.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use zhiku_core::engine::Engine;
use zhiku_llm::generate::{self, GenerateError, Generator};

use super::error::ApiError;
use super::metrics::Metrics;

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub engine: Arc<Engine>,
    /// Wakes the ingestion worker ([`zhiku_core::index::queue`]) when files are queued.
    pub ingest: Arc<zhiku_core::index::queue::Signal>,
    /// Prometheus series of this server (`GET /metrics`).
    pub metrics: Metrics,
    /// The WeCom app and group robot, when configured ([`super::wecom`]).
    pub wecom: Option<Arc<crate::wecom::Wecom>>,
    /// The single sign-on provider, when `[auth.oidc]` is configured ([`crate::oidc`]).
    pub sso: Option<Arc<crate::oidc::Sso>>,
    generators: Generators,
    /// Failed logins per account name and client address ([`crate::login_limit`]).
    pub login_limit: crate::login_limit::LoginLimit,
    ip_limit: DefaultKeyedRateLimiter<std::net::IpAddr>,
    user_limit: DefaultKeyedRateLimiter<i64>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn quota(per_s: u32) -> Quota {
    let n = NonZeroU32::new(per_s.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(per_s.max(1).saturating_mul(2)).expect("at least 2");
    Quota::per_second(n).allow_burst(burst)
}

impl AppState {
    pub fn new(engine: Engine) -> Self {
        Self::with_generators(engine, Generators::from_config())
    }

    /// State whose answers come from `generator` (tests, benchmarks); `None` = extractive.
    pub fn with_generator(engine: Engine, generator: Option<Arc<dyn Generator>>) -> Self {
        Self::with_generators(engine, Generators::fixed(generator))
    }

    fn with_generators(engine: Engine, generators: Generators) -> Self {
        let s = &engine.config.server;
        let inner = Inner {
            login_limit: crate::login_limit::LoginLimit::new(
                s.login_failures_per_name,
                s.login_failures_per_ip,
                Duration::from_secs(s.login_lockout_minutes.max(1) * 60),
            ),
            ip_limit: governor::RateLimiter::keyed(quota(s.ip_questions_per_s)),
            user_limit: governor::RateLimiter::keyed(quota(s.user_questions_per_s)),
            slots: Arc::new(Semaphore::new(s.generation_slots.max(1))),
            waiting: AtomicUsize::new(0),
            ingest: zhiku_core::index::queue::Signal::new(),
            metrics: Metrics::new(),
            wecom: crate::wecom::callback::from_config(&engine.config.wecom),
            sso: crate::oidc::Sso::from_config(&engine.config),
            generators,
            engine: Arc::new(engine),
        };
        Self(Arc::new(inner))
    }

    /// [`Inner::generator_for`] on a blocking thread (the first use loads the
    /// model); a model that cannot be loaded is a 503 the client may retry.
    pub async fn load_generator(
        &self,
        kbs: Vec<String>,
    ) -> Result<Option<Arc<dyn Generator>>, ApiError> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.generator_for(&kbs))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::Unavailable {
                retry_after: 30,
                message: format!("the answer model cannot be loaded: {e}"),
            })
    }
}

/// How often rate-limiter keys of clients not seen lately are forgotten ([`Inner::forget_idle_rate_keys`]).
pub const FORGET_IDLE_KEYS_EVERY: Duration = Duration::from_secs(60);

impl Inner {
    /// Forget the rate-limiter keys (client addresses, users, WeCom userids) whose quota is
    /// full again, i.e. those not seen for a second or so: a keyed limiter otherwise keeps
    /// every key it has ever seen, and memory grows with each distinct client address. The
    /// server calls this every [`FORGET_IDLE_KEYS_EVERY`]. Returns the keys still tracked.
    pub fn forget_idle_rate_keys(&self) -> usize {
        self.ip_limit.retain_recent();
        self.ip_limit.shrink_to_fit();
        self.user_limit.retain_recent();
        self.user_limit.shrink_to_fit();
        let wecom = match self.wecom.as_ref().and_then(|w| w.app.as_ref()) {
            Some(app) => app.forget_idle_rate_keys(),
            None => 0,
        };
        self.ip_limit.len() + self.user_limit.len() + wecom + self.login_limit.forget_idle()
    }

    /// Count a question against the per-IP and per-user limits; 429 with the wait when over.
    pub fn check_question_rate(&self, ip: std::net::IpAddr, user: i64) -> Result<(), ApiError> {
        let now = DefaultClock::default().now();
        let over = |wait: Duration, who: &str| ApiError::TooManyRequests {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            message: format!("too many questions from this {who}; try again in a moment"),
        };
        if let Err(n) = self.ip_limit.check_key(&ip) {
            return Err(over(n.wait_time_from(now), "address"));
        }
        if let Err(n) = self.user_limit.check_key(&user) {
            return Err(over(n.wait_time_from(now), "user"));
        }
        Ok(())
    }

    /// Wait for a generation slot; 503 at once when the queue is full.
    pub async fn generation_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let max = self.engine.config.server.generation_queue;
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= max {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::Unavailable {
                retry_after: 5,
                message: format!(
                    "all answer slots are busy and {max} questions are already waiting; try again shortly"
                ),
            });
        }
        // Counted out on drop: a client that leaves while waiting drops this future, and its
        // place must be freed, or the queue fills up with questions nobody waits for.
        let _waiting = Waiting(&self.waiting);
        let permit = self.slots.clone().acquire_owned().await;
        permit.map_err(|_| ApiError::Internal("the generation queue is closed".into()))
    }

    /// Questions waiting for a generation slot now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The generator for questions to `kbs` (with that knowledge base's LoRA adapter when
    /// exactly one is asked and it has one), loading it on first use. Blocking: call from
    /// a blocking task.
    pub fn generator_for(
        &self,
        kbs: &[String],
    ) -> Result<Option<Arc<dyn Generator>>, GenerateError> {
        let kb = match kbs {
            [one] => Some(one.as_str()),
            _ => None,
        };
        self.generators.get(&self.engine.config.generate, kb)
    }
}

/// One question waiting for a generation slot, for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A loaded generator, or `None` where answers are extractive.
type MaybeGenerator = Option<Arc<dyn Generator>>;

/// Generators by LoRA adapter: questions to a knowledge base with its own adapter get a
/// model with that adapter merged; the others share one.
pub struct Generators {
    fixed: Option<MaybeGenerator>,
    loaded: Mutex<HashMap<Option<PathBuf>, MaybeGenerator>>,
}

impl Generators {
    fn from_config() -> Self {
        Self {
            fixed: None,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn fixed(generator: Option<Arc<dyn Generator>>) -> Self {
        Self {
            fixed: Some(generator),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn get(
        &self,
        cfg: &zhiku_core::config::GenerateConfig,
        kb: Option<&str>,
    ) -> Result<Option<Arc<dyn Generator>>, GenerateError> {
        if let Some(g) = &self.fixed {
            return Ok(g.clone());
        }
        let adapter = kb.and_then(|k| cfg.lora_per_kb.get(k)).cloned();
        // Held while loading, so that two first questions load the model once.
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = loaded.get(&adapter) {
            return Ok(g.clone());
        }
        let g = generate::from_config(cfg, if adapter.is_some() { kb } else { None })?;
        loaded.insert(adapter, g.clone());
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rate-limit keys of clients gone quiet are forgotten, so 2,000 one-off client
    /// addresses do not stay in memory for the life of the server.
    #[test]
    fn idle_rate_keys_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = zhiku_core::config::Config {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        // One question a second each: a key is full again (idle) one second after its use.
        config.server.ip_questions_per_s = 1;
        config.server.user_questions_per_s = 1;
        let state = AppState::with_generator(Engine::open(config).unwrap(), None);
        for i in 0..2000u32 {
            let ip = std::net::IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            state.check_question_rate(ip, i64::from(i)).unwrap();
        }
        assert_eq!(
            state.forget_idle_rate_keys(),
            4000,
            "keys used a moment ago are kept"
        );
        let mut kept = usize::MAX;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(50));
            kept = state.forget_idle_rate_keys();
            if kept == 0 {
                break;
            }
        }
        assert_eq!(
            kept, 0,
            "every key is forgotten once its quota is full again"
        );
        // A forgotten client starts again with a full quota.
        let ip = std::net::IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, 1));
        state.check_question_rate(ip, 1).unwrap();
    }
}
