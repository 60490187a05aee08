//! WeCom (企业微信): employees ask zhiku from a self-built app (自建应用), and admins get
//! notifications from a group robot (群机器人).
//!
//! - [`crypto`]: the callback protocol's signature and AES-256-CBC envelope.
//! - [`message`]: the callback XML.
//! - [`api`]: access tokens and `message/send`, on a small client ([`http`]).
//! - [`reply`]: an answer as WeCom messages (sources listed, cut at 2048 bytes).
//! - [`robot`]: the group robot's notifications, 20 a minute at most.
//!
//! The HTTP side (the callback endpoint, answering in the background, deduplication by
//! MsgId, replay defence, user mapping) is [`crate::wecom::callback`].

pub mod api;
pub mod callback;
pub mod crypto;
pub mod http;
pub mod message;
pub mod reply;
pub mod robot;

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

use zhiku_core::config::{Secret, WecomConfig};

#[derive(Debug, thiserror::Error)]
pub enum WecomError {
    /// No request reached WeCom (connecting failed): trying again cannot send twice.
    #[error("WeCom {what}: {message}")]
    Unreachable { what: String, message: String },
    /// The request may have reached WeCom.
    #[error("WeCom {what}: {message}")]
    Http { what: String, message: String },
    #[error("WeCom {what} answered error {code}: {message}{}", hint(.code))]
    Api {
        what: String,
        code: i64,
        message: String,
    },
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("wecom configuration: {0}")]
    Config(String),
}

/// What an admin can do about the usual API errors.
fn hint(code: &i64) -> &'static str {
    match *code {
        40001 | 40013 | 40091 => " (check wecom.corp_id and wecom.secret)",
        60020 => " (add this server's public IP to the app's trusted IPs, 企业可信IP)",
        40056 | 301002 => " (check wecom.agent_id)",
        81013 => " (the employee is outside the app's visibility scope, 可见范围)",
        45009 => " (rate limited by WeCom)",
        _ => "",
    }
}

/// The self-built app: keys, API client and per-employee question limit.
pub struct App {
    pub crypto: crypto::Crypto,
    pub api: api::Api,
    limiter: DefaultKeyedRateLimiter<String>,
    /// Held while an employee's account is looked up or created.
    pub provisioning: std::sync::Mutex<()>,
}

impl App {
    /// Count a question of `wecom_user`; false when over `user_questions_per_minute`.
    pub fn allow_question(&self, wecom_user: &str) -> bool {
        self.limiter.check_key(&wecom_user.to_string()).is_ok()
    }

    /// Forget employees whose question quota is full again; returns those still tracked.
    pub fn forget_idle_rate_keys(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }
}

/// The WeCom integration as configured: the app (when `corp_id`, `token` and
/// `encoding_aes_key` are set) and the robot (when `robot_webhook` is).
pub struct Wecom {
    pub config: WecomConfig,
    pub app: Option<App>,
    pub robot: Option<robot::Robot>,
}

impl Wecom {
    /// The integration for `cfg`, or `None` when neither part is configured. Errors name
    /// the key to fix ([`zhiku_core::config::Config`] checks the same at load time).
    pub fn from_config(cfg: &WecomConfig) -> Result<Option<Self>, WecomError> {
        let app = if cfg.enabled() {
            let need = |v: Option<&str>, key: &str| {
                v.map(str::to_string)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or_else(|| {
                        WecomError::Config(format!("wecom.{key} is needed to answer in WeCom"))
                    })
            };
            let corp_id = need(cfg.corp_id.as_deref(), "corp_id")?;
            let secret = need(Secret::exposed(&cfg.secret), "secret")?;
            let agent_id = cfg
                .agent_id
                .ok_or_else(|| WecomError::Config("wecom.agent_id is needed to answer".into()))?;
            let per_minute = NonZeroU32::new(cfg.user_questions_per_minute.max(1)).expect("≥ 1");
            Some(App {
                crypto: crypto::Crypto::new(
                    Secret::exposed(&cfg.token).unwrap_or_default(),
                    Secret::exposed(&cfg.encoding_aes_key).unwrap_or_default(),
                    corp_id.trim(),
                )?,
                api: api::Api::new(
                    &cfg.api_base,
                    corp_id.trim(),
                    secret.trim(),
                    agent_id,
                    cfg.message_type,
                )?,
                limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
                provisioning: std::sync::Mutex::new(()),
            })
        } else {
            None
        };
        let robot = match Secret::exposed(&cfg.robot_webhook).filter(|w| !w.trim().is_empty()) {
            Some(w) => Some(robot::Robot::new(w, &cfg.api_base)?),
            None => None,
        };
        if app.is_none() && robot.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            config: cfg.clone(),
            app,
            robot,
        }))
    }
}

/// Finished ingestion jobs go to the group robot, when there is one.
impl zhiku_core::index::queue::Notifier for Wecom {
    fn job_finished(&self, job: &zhiku_core::store::meta::UploadJob) {
        if let Some(robot) = &self.robot {
            robot.notify(robot::job_message(job));
        }
    }
}

/// Why a callback's timestamp is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("the timestamp `{0}` is not a number")]
    NotANumber(String),
    #[error(
        "the timestamp is {0} s away from this server's clock (more than wecom.max_clock_skew_secs)"
    )]
    Skewed(i64),
}

/// The callback's timestamp (Unix seconds), when it is within `max_skew` seconds of `now`.
pub fn check_timestamp(timestamp: &str, now: i64, max_skew: u64) -> Result<i64, TimestampError> {
    let t: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| TimestampError::NotANumber(timestamp.chars().take(20).collect()))?;
    let skew = t.saturating_sub(now);
    if skew.unsigned_abs() > max_skew {
        return Err(TimestampError::Skewed(skew));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let now = 1_800_000_000;
        assert_eq!(check_timestamp("1800000000", now, 300), Ok(now));
        assert_eq!(check_timestamp("1799999700", now, 300), Ok(now - 300));
        assert_eq!(check_timestamp("1800000300", now, 300), Ok(now + 300));
        assert_eq!(
            check_timestamp("1799999699", now, 300),
            Err(TimestampError::Skewed(-301))
        );
        assert_eq!(
            check_timestamp("1800000301", now, 300),
            Err(TimestampError::Skewed(301))
        );
        // The official vector's timestamp, from 2014, is long expired.
        assert!(check_timestamp("1409659589", now, 300).is_err());
        assert!(matches!(
            check_timestamp("soon", now, 300),
            Err(TimestampError::NotANumber(_))
        ));
    }
}
