//! The WeCom server API a self-built app uses to answer: `GET /cgi-bin/gettoken` for an
//! access token (cached until shortly before it expires, fetched again when WeCom says it is
//! invalid or expired: errors 40014, 42001, 42007) and `POST /cgi-bin/message/send` to send
//! an employee a text or markdown message.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::WecomError;
use super::http::JsonClient;
use zhiku_core::config::WecomMessageType;

/// Errors that mean "fetch a new access token and try again".
const TOKEN_ERRORS: [i64; 3] = [40014, 42001, 42007];
/// A cached token is renewed this long before WeCom says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Deadline of one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

struct Token {
    value: String,
    renew_at: Instant,
}

/// The app's side of the WeCom API.
pub struct Api {
    http: JsonClient,
    corp_id: String,
    secret: String,
    agent_id: u64,
    kind: WecomMessageType,
    /// Held while a token is fetched, so concurrent answers fetch it once.
    token: tokio::sync::Mutex<Option<Token>>,
}

impl Api {
    pub fn new(
        api_base: &str,
        corp_id: &str,
        secret: &str,
        agent_id: u64,
        kind: WecomMessageType,
    ) -> Result<Self, WecomError> {
        Ok(Self {
            http: JsonClient::new(api_base, REQUEST_TIMEOUT)?,
            corp_id: corp_id.to_string(),
            secret: secret.to_string(),
            agent_id,
            kind,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one when `renew` or when it is due.
    async fn access_token(&self, renew: bool) -> Result<String, WecomError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached
            .as_ref()
            .filter(|t| !renew && Instant::now() < t.renew_at)
        {
            return Ok(t.value.clone());
        }
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("corpid", &self.corp_id)
            .append_pair("corpsecret", &self.secret)
            .finish();
        let v = self
            .http
            .get(&format!("/cgi-bin/gettoken?{query}"), "gettoken")
            .await?;
        check(&v, "gettoken")?;
        let value = v["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| WecomError::Api {
                what: "gettoken".into(),
                code: -1,
                message: "the answer has no access_token".into(),
            })?
            .to_string();
        let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(7200));
        *cached = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        });
        tracing::debug!(expires_in = lifetime.as_secs(), "new WeCom access token");
        Ok(value)
    }

    /// Send `content` to the employee `to_user` as the configured message type.
    pub async fn send(&self, to_user: &str, content: &str) -> Result<(), WecomError> {
        let body = match self.kind {
            WecomMessageType::Markdown => json!({
                "touser": to_user,
                "msgtype": "markdown",
                "agentid": self.agent_id,
                "markdown": { "content": content },
            }),
            WecomMessageType::Text => json!({
                "touser": to_user,
                "msgtype": "text",
                "agentid": self.agent_id,
                "text": { "content": content },
            }),
        };
        let mut renew = false;
        loop {
            let token = self.access_token(renew).await?;
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("access_token", &token)
                .finish();
            let v = self
                .http
                .post(
                    &format!("/cgi-bin/message/send?{query}"),
                    "message/send",
                    &body,
                )
                .await?;
            match check(&v, "message/send") {
                Err(WecomError::Api { code, .. }) if !renew && TOKEN_ERRORS.contains(&code) => {
                    tracing::info!(code, "WeCom access token rejected; fetching a new one");
                    renew = true;
                }
                other => return other,
            }
        }
    }
}

/// `errcode` 0, or the error WeCom gave.
pub(super) fn check(v: &Value, what: &str) -> Result<(), WecomError> {
    match v["errcode"].as_i64().unwrap_or(0) {
        0 => Ok(()),
        code => Err(WecomError::Api {
            what: what.into(),
            code,
            message: v["errmsg"].as_str().unwrap_or("").to_string(),
        }),
    }
}
