//! Who is calling: a browser session (cookie + CSRF header on writes) or an API token
//! (`Authorization: Bearer zk_…`). Either way the caller acts with the user's own rights,
//! never more; retrieval is limited to [`Caller::readable_kbs`].

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use zhiku_core::access::{self, hash_secret, secrets_equal};
use zhiku_core::store::KbId;
use zhiku_core::store::meta::User;

use super::error::ApiError;
use super::state::AppState;

pub const SESSION_COOKIE: &str = "zhiku_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session { id_hash: String, csrf: String },
    Token,
}

/// An authenticated caller. Extracting it answers 401 without credentials, and 403 for a
/// cookie-authenticated write without the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub credential: Credential,
    /// The client's address (for rate limits and the audit log).
    pub ip: Option<std::net::IpAddr>,
}

/// A caller who is an admin (403 otherwise).
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl Caller {
    /// The knowledge bases this caller may read.
    pub fn readable_kbs(&self, state: &AppState) -> Result<Vec<KbId>, ApiError> {
        Ok(state.engine.meta.readable_kbs(&self.user)?)
    }

    /// Record an action of this caller in the audit log. A failure to record is logged,
    /// not returned: the action itself has already happened.
    pub fn audit(&self, state: &AppState, action: &str, target: &str, detail: &str) {
        let ip = self.ip.map(|i| i.to_string());
        if let Err(e) =
            state
                .engine
                .meta
                .audit(&self.user.name, action, target, detail, ip.as_deref())
        {
            tracing::error!(error = %e, action, target, "cannot write the audit log");
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of the request's cookie `name`.
pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        // The lookups are SQLite queries: on a blocking thread, never on the async runtime.
        let engine = std::sync::Arc::clone(&state.engine);
        if let Some(token) = bearer(&parts.headers) {
            let token_hash = hash_secret(token);
            let user = tokio::task::spawn_blocking(move || engine.meta.token_user(&token_hash))
                .await
                .map_err(ApiError::internal)??;
            return match user {
                Some(user) => Ok(Caller {
                    user,
                    credential: Credential::Token,
                    ip,
                }),
                None => Err(ApiError::Unauthorized(
                    "the API token is invalid or revoked".into(),
                )),
            };
        }
        let Some(id) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::Unauthorized(
                "log in first, or send an API token as `Authorization: Bearer …`".into(),
            ));
        };
        let id_hash = hash_secret(&id);
        let lookup = id_hash.clone();
        let session = tokio::task::spawn_blocking(move || engine.meta.session(&lookup))
            .await
            .map_err(ApiError::internal)??;
        let Some(session) = session else {
            return Err(ApiError::Unauthorized(
                "your session has expired; log in again".into(),
            ));
        };
        if is_write(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !secrets_equal(sent, &session.csrf) {
                return Err(ApiError::Forbidden(format!(
                    "missing or wrong {CSRF_HEADER} header (reload the page)"
                )));
            }
        }
        Ok(Caller {
            user: session.user,
            credential: Credential::Session {
                id_hash,
                csrf: session.csrf,
            },
            ip,
        })
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.user.is_admin() {
            return Err(ApiError::Forbidden("only admins may do this".into()));
        }
        Ok(Admin(caller))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    pub name: String,
    pub password: String,
}

/// The logged-in user, the CSRF token to send on writes, and what they may read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
    pub knowledge_bases: Vec<String>,
}

fn me(state: &AppState, user: User, csrf: Option<String>) -> Result<Me, ApiError> {
    let readable = state.engine.meta.readable_kbs(&user)?;
    let knowledge_bases = state
        .engine
        .meta
        .kb_names()?
        .into_iter()
        .filter(|(id, _)| readable.contains(id))
        .map(|(_, name)| name)
        .collect();
    Ok(Me {
        user,
        csrf,
        knowledge_bases,
    })
}

pub(crate) fn secure_cookies(state: &AppState, headers: &HeaderMap) -> bool {
    let public_https = state
        .engine
        .config
        .server
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let proxied_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    public_https || proxied_https
}

/// Log in with a name and password: sets the session cookie (HttpOnly, SameSite=Lax, Secure
/// behind TLS) and returns the CSRF token.
#[utoipa::path(post, path = "/api/login", request_body = Login, tag = "session",
    responses((status = 200, body = Me), (status = 401, description = "wrong name or password")))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: super::ldap::ClientIp,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(login) = body?;
    let meta = &state.engine.meta;
    if let Err(r) = state.login_limit.check(&login.name, client.0) {
        tracing::warn!(name = %login.name, ip = ?client.0, "login refused: too many failed attempts");
        let who = if r.by_name {
            "for this account"
        } else {
            "from this address"
        };
        return Err(ApiError::TooManyRequests {
            retry_after: r.retry_after,
            message: format!(
                "too many failed logins {who}; try again in {} minutes",
                r.retry_after.div_ceil(60)
            ),
        });
    }
    let found = meta.password_hash(login.name.trim())?;
    let local = found.is_some();
    // Verify on a blocking thread: argon2 takes tens of milliseconds by design.
    let mut ok = match found {
        Some((id, hash)) => {
            let password = login.password.clone();
            tokio::task::spawn_blocking(move || access::verify_password(&password, &hash))
                .await
                .map_err(ApiError::internal)?
                .then_some(id)
        }
        None => None,
    };
    // Names without a local password (unknown ones, directory accounts) are asked of the
    // directory when `[auth.ldap]` is configured; local accounts never are.
    let ldap = &state.engine.config.auth.ldap;
    if !local && ldap.enabled() {
        let ip = client.0.map(|i| i.to_string());
        ok = super::ldap::login(meta, ldap, &login.name, &login.password, ip.as_deref())
            .await
            .map_err(|e| match e {
                super::ldap::LdapError::Meta(m) => ApiError::from(m),
                e => {
                    tracing::error!(error = %e, "LDAP login failed");
                    ApiError::Unavailable {
                        retry_after: 30,
                        message: "the company directory cannot be reached; try again shortly"
                            .into(),
                    }
                }
            })?;
    }
    let Some(user_id) = ok else {
        tracing::info!(name = %login.name, "failed login");
        state.login_limit.failed(&login.name, client.0);
        return Err(ApiError::Unauthorized("wrong name or password".into()));
    };
    state.login_limit.succeeded(&login.name);
    let started = start_session(&state, &headers, user_id)?;
    Ok(([(header::SET_COOKIE, started.cookie)], Json(started.me)).into_response())
}

/// A new browser session for `user_id`: what the session cookie and the answer carry.
pub(crate) struct Started {
    /// The `Set-Cookie` value (HttpOnly, SameSite=Lax, Secure behind TLS).
    pub cookie: String,
    /// The session id's hash (its key in the store).
    pub id_hash: String,
    pub me: Me,
}

/// Start a browser session for `user_id`, the same for a password, a directory or an SSO
/// login.
pub(crate) fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    user_id: zhiku_core::store::meta::UserId,
) -> Result<Started, ApiError> {
    let meta = &state.engine.meta;
    let hours = state.engine.config.server.session_hours.max(1);
    let id = access::new_secret("")?;
    let csrf = access::new_secret("")?;
    let expires = now() + (hours * 3600) as i64;
    let id_hash = hash_secret(&id);
    meta.create_session(&id_hash, user_id, &csrf, expires)?;
    let user = meta
        .user(user_id)?
        .ok_or_else(|| ApiError::Unauthorized("the user was deleted".into()))?;
    let cookie = Cookie::build((SESSION_COOKIE, id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure_cookies(state, headers))
        .max_age(cookie::time::Duration::hours(hours as i64))
        .build();
    Ok(Started {
        cookie: cookie.to_string(),
        id_hash,
        me: me(state, user, Some(csrf))?,
    })
}

/// Where the browser goes after logging out: the identity provider's logout page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoggedOut {
    pub end_session_url: String,
}

/// End the browser session. A single sign-on session whose provider offers a logout
/// endpoint answers 200 with its URL (the page goes there to log out at the provider too);
/// others answer 204.
#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses((status = 204), (status = 200, body = LoggedOut)))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mut provider = None;
    if let Credential::Session { id_hash, .. } = &caller.credential {
        provider = super::oidc::end_session_url(&state, id_hash, &headers).await;
        state.engine.meta.delete_session(id_hash)?;
    }
    let gone = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let cookie = [(header::SET_COOKIE, gone.to_string())];
    Ok(match provider {
        Some(url) => (
            cookie,
            Json(LoggedOut {
                end_session_url: url,
            }),
        )
            .into_response(),
        None => (axum::http::StatusCode::NO_CONTENT, cookie).into_response(),
    })
}

/// Who is logged in (with the CSRF token for a browser session).
#[utoipa::path(get, path = "/api/me", tag = "session",
    responses((status = 200, body = Me), (status = 401)))]
pub async fn whoami(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let csrf = match caller.credential {
        Credential::Session { csrf, .. } => Some(csrf),
        Credential::Token => None,
    };
    Ok(Json(me(&state, caller.user, csrf)?))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
