//! Single sign-on with an OpenID Connect provider (README "Identity", `[auth.oidc]`):
//! Keycloak, Authing, Azure AD / Entra ID or any certified provider, by configuration.
//!
//! - `GET /auth/oidc/login?next=/path`: discovery (cached, refreshed hourly), then a redirect
//!   to the provider with the authorization code flow, PKCE (S256), a random `state` and
//!   `nonce`. The state, nonce and PKCE verifier stay on the server (SQLite, single use,
//!   `login_ttl_secs`, bounded), tied to this browser by a short-lived HttpOnly cookie.
//! - `GET /auth/oidc/callback`: the state is taken once (a replay, an unknown or an expired
//!   state is refused), the code is exchanged with the verifier, and the ID token is checked:
//!   signature against the provider's JWKS (an unknown `kid` refetches the JWKS once: key
//!   rotation), issuer, audience, expiry and issue time (`clock_skew_secs`), nonce; a nonce
//!   already used is refused. Then the allowed-domain and required-claim rules, and the user
//!   becomes a zhiku account through the same mapping as LDAP ([`super::ldap::provision_from`],
//!   source `oidc:<name>`): created on the first login, groups refreshed at every login, a
//!   local account of the same name never taken over. The session cookie is the local
//!   login's ([`super::auth::start_session`]).
//! - Logout (`POST /api/logout`) of an SSO session answers the provider's
//!   `end_session_endpoint` URL (with `id_token_hint` and `post_logout_redirect_uri`) when the
//!   provider offers one; the page goes there.
//!
//! Every refusal is logged and audited (`oidc.login_refused`) with its reason; the user sees
//! a plain page saying what to do, never internals. All calls to the provider go through
//! [`zhiku_core::http`] with `timeout_secs`.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use http_body_util::Full;
use hyper::body::Bytes;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, AsyncHttpClient, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, IdToken, IdTokenClaims, IdTokenVerifier, IssuerUrl, JsonWebKeySet, LogoutRequest,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};

use zhiku_core::access::{hash_secret, new_secret};
use zhiku_core::config::{OidcConfig, Secret};
use zhiku_core::http::{Endpoint, exchange};
use zhiku_core::store::meta::{MetaStore, OidcLogin, OidcTake};

use super::auth;
use super::ldap::{ClientIp, DirectoryUser, Provision, map_groups_by, provision_from};
use super::state::AppState;

/// The cookie that ties a started login to the browser that started it.
pub const BROWSER_COOKIE: &str = "zhiku_oidc";
/// Largest answer read from the provider (discovery, keys, tokens).
const MAX_BODY: usize = 1 << 20;
/// Discovery (and the keys with it) is read again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the keys at most this often (a flood of forged tokens must not
/// make zhiku hammer the provider).
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(5);

/// The ID token's claims beyond the standard ones (groups, roles, tenant, …), as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extra(pub serde_json::Map<String, serde_json::Value>);

impl AdditionalClaims for Extra {}

pub type Token =
    IdToken<Extra, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
pub type Claims = IdTokenClaims<Extra, CoreGenderClaim>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A call to the provider that failed (said without query strings or bodies).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(String);

/// openidconnect's HTTP client: [`zhiku_core::http`], one connection per request, no
/// redirects followed.
#[derive(Debug, Clone, Copy)]
pub struct Http {
    pub timeout: Duration,
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpFailure;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpFailure>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move { send(request, timeout).await })
    }
}

async fn send(request: HttpRequest, timeout: Duration) -> Result<HttpResponse, HttpFailure> {
    let uri = request.uri().clone();
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(HttpFailure(format!("not an absolute URL: {}", uri.path())));
    };
    let endpoint = Endpoint::parse(&format!("{scheme}://{authority}"))
        .map_err(|e| HttpFailure(e.to_string()))?;
    let path_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut builder = endpoint.request(request.method().clone(), path_query);
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let req = builder
        .body(Full::new(Bytes::from(request.into_body())))
        .map_err(|e| HttpFailure(format!("bad request to {authority}: {e}")))?;
    let (status, body) = exchange(&endpoint, req, timeout, MAX_BODY)
        .await
        .map_err(|e| HttpFailure(format!("{} {}: {e}", authority, uri.path())))?;
    hyper::http::Response::builder()
        .status(status)
        .body(body.to_vec())
        .map_err(|e| HttpFailure(e.to_string()))
}

/// What discovery found, with the keys.
pub struct Discovered {
    pub metadata: ProviderMetadataWithLogout,
    pub jwks: CoreJsonWebKeySet,
    fetched: Instant,
    jwks_fetched: Instant,
}

/// The provider cannot be asked (discovery, keys or token endpoint unreachable or broken).
#[derive(Debug, thiserror::Error)]
#[error("the identity provider {issuer}: {message}")]
pub struct ProviderError {
    pub issuer: String,
    pub message: String,
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    Malformed(String),
    WrongIssuer(String),
    WrongAudience(String),
    Expired(String),
    WrongNonce(String),
    /// Signed by a key the provider does not publish (after refetching its keys).
    UnknownKey,
    /// The signature does not verify, or uses an algorithm not allowed.
    BadSignature(String),
    Other(String),
}

impl TokenRefusal {
    fn describe(&self) -> String {
        match self {
            Self::Malformed(m) => format!("the ID token cannot be read: {m}"),
            Self::WrongIssuer(m) => format!("wrong issuer: {m}"),
            Self::WrongAudience(m) => format!("wrong audience: {m}"),
            Self::Expired(m) => format!("expired: {m}"),
            Self::WrongNonce(m) => format!("wrong nonce: {m}"),
            Self::UnknownKey => "signed with a key the provider does not publish (forged?)".into(),
            Self::BadSignature(m) => format!("bad signature (forged?): {m}"),
            Self::Other(m) => m.clone(),
        }
    }
}

fn refusal_of(e: ClaimsVerificationError) -> TokenRefusal {
    use ClaimsVerificationError as C;
    match e {
        C::InvalidAudience(m) => TokenRefusal::WrongAudience(m),
        C::InvalidIssuer(m) => TokenRefusal::WrongIssuer(m),
        C::Expired(m) => TokenRefusal::Expired(m),
        C::InvalidNonce(m) => TokenRefusal::WrongNonce(m),
        C::SignatureVerification(SignatureVerificationError::NoMatchingKey) => {
            TokenRefusal::UnknownKey
        }
        C::SignatureVerification(s) => TokenRefusal::BadSignature(s.to_string()),
        other => TokenRefusal::Other(other.to_string()),
    }
}

/// What an ID token must satisfy.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub client_secret: Option<&'a str>,
    pub nonce: &'a str,
    /// The signing algorithms allowed (the provider's, never `none`).
    pub algs: &'a [CoreJwsSigningAlgorithm],
    pub now: chrono::DateTime<chrono::Utc>,
    pub skew: Duration,
}

/// Check the ID token `raw` against `jwks` and `expected`: signature, issuer, audience,
/// expiry, issue time and nonce. Pure (no I/O, the time given), so crafted tokens can face it.
pub fn verify_id_token(
    raw: &str,
    jwks: &JsonWebKeySet<CoreJsonWebKey>,
    expected: &Expected<'_>,
) -> Result<Claims, TokenRefusal> {
    let token = Token::from_str(raw.trim()).map_err(|e| TokenRefusal::Malformed(e.to_string()))?;
    let issuer = IssuerUrl::new(expected.issuer.to_string())
        .map_err(|e| TokenRefusal::Other(format!("the configured issuer: {e}")))?;
    let client_id = ClientId::new(expected.client_id.to_string());
    let verifier = match expected.client_secret {
        Some(s) => IdTokenVerifier::new_confidential_client(
            client_id,
            ClientSecret::new(s.to_string()),
            issuer,
            jwks.clone(),
        ),
        None => IdTokenVerifier::new_public_client(client_id, issuer, jwks.clone()),
    };
    let skew = chrono::Duration::from_std(expected.skew).unwrap_or(chrono::Duration::zero());
    let now = expected.now;
    let verifier = verifier
        .set_allowed_algs(expected.algs.iter().cloned())
        // `exp` is checked against now − skew (a provider clock a little behind is fine)…
        .set_time_fn(move || now - skew)
        // …and an `iat` in the future beyond the skew is refused.
        .set_issue_time_verifier_fn(move |iat| {
            if iat > now + skew {
                Err(format!("issued in the future ({iat}; now {now})"))
            } else {
                Ok(())
            }
        });
    let nonce = Nonce::new(expected.nonce.to_string());
    token.into_claims(&verifier, &nonce).map_err(refusal_of)
}

/// A claim of `claims` by name or dotted path (`realm_access.roles`): the standard claims
/// by their accessors, the others from the JSON.
pub fn claim(claims: &Claims, path: &str) -> Option<serde_json::Value> {
    use serde_json::Value;
    let standard = match path {
        "sub" => Some(claims.subject().as_str().to_string()),
        "preferred_username" => claims.preferred_username().map(|v| v.as_str().to_string()),
        "email" => claims.email().map(|v| v.as_str().to_string()),
        "name" => claims
            .name()
            .and_then(|n| n.get(None))
            .map(|v| v.as_str().to_string()),
        "phone_number" => claims.phone_number().map(|v| v.as_str().to_string()),
        _ => None,
    };
    if let Some(v) = standard {
        return Some(Value::String(v));
    }
    let mut parts = path.split('.');
    let mut v = claims.additional_claims().0.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v.clone())
}

/// A claim's values as strings: a string is one, a list gives its strings.
pub fn strings(v: Option<serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    match v {
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

/// Why a verified user may still not log in, or cannot be a zhiku account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleRefusal {
    DomainNotAllowed(String),
    EmailUnverified,
    ClaimMismatch(String),
    NoUsername(String),
}

/// The zhiku user the verified `claims` describe under `cfg`'s rules, or why not.
pub fn user_of(cfg: &OidcConfig, claims: &Claims) -> Result<DirectoryUser, RuleRefusal> {
    let email = claims.email().map(|e| e.as_str().to_string());
    if !cfg.allowed_domains.is_empty() {
        let domain = email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_lowercase());
        let ok = domain.as_deref().is_some_and(|d| {
            cfg.allowed_domains
                .iter()
                .any(|a| a.trim().trim_start_matches('@').eq_ignore_ascii_case(d))
        });
        if !ok {
            return Err(RuleRefusal::DomainNotAllowed(
                email.unwrap_or_else(|| "no email claim".into()),
            ));
        }
        if claims.email_verified() == Some(false) {
            return Err(RuleRefusal::EmailUnverified);
        }
    }
    if let (Some(name), Some(want)) = (&cfg.required_claim, &cfg.required_value) {
        let have = strings(claim(claims, name));
        if !have.iter().any(|h| h == want) {
            return Err(RuleRefusal::ClaimMismatch(format!(
                "claim {name} is {have:?}, not {want:?}"
            )));
        }
    }
    let login = strings(claim(claims, &cfg.username_claim))
        .into_iter()
        .next()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RuleRefusal::NoUsername(cfg.username_claim.clone()))?;
    let mut raw = strings(claim(claims, &cfg.groups_claim));
    if let Some(roles) = &cfg.roles_claim {
        raw.extend(strings(claim(claims, roles)));
    }
    raw.sort();
    raw.dedup();
    if raw.is_empty()
        && claims
            .additional_claims()
            .0
            .get("_claim_names")
            .and_then(|n| n.get(&cfg.groups_claim))
            .is_some()
    {
        tracing::warn!(
            user = %login,
            "the provider left the groups out of the ID token (Entra group overage: over 200 groups); the user gets no groups from it — emit app roles or only the groups assigned to the application (README \"Identity\")"
        );
    }
    let groups = map_groups_by(cfg.group_rule, &cfg.allowed_groups, &cfg.group_map, &raw);
    Ok(DirectoryUser {
        dn: claims.subject().as_str().to_string(),
        login,
        display_name: claim(claims, "name").and_then(|v| v.as_str().map(str::to_string)),
        mail: email,
        directory_groups: raw,
        groups,
    })
}

/// The configured provider: its settings and what discovery found.
pub struct Sso {
    pub cfg: OidcConfig,
    redirect: RedirectUrl,
    http: Http,
    discovered: RwLock<Option<Arc<Discovered>>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Sso {
    /// The provider of `[auth.oidc]`, when configured (the configuration is validated).
    pub fn from_config(config: &zhiku_core::config::Config) -> Option<Arc<Self>> {
        let cfg = &config.auth.oidc;
        if !cfg.enabled() {
            return None;
        }
        let redirect = cfg.redirect_url(config.server.public_url.as_deref())?;
        match RedirectUrl::new(redirect) {
            Ok(redirect) => Some(Arc::new(Self {
                cfg: cfg.clone(),
                redirect,
                http: Http {
                    timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
                },
                discovered: RwLock::new(None),
                fetching: tokio::sync::Mutex::new(()),
            })),
            Err(e) => {
                tracing::error!(error = %e, "auth.oidc.redirect_url is not a URL; SSO is off");
                None
            }
        }
    }

    fn issuer(&self) -> &str {
        self.cfg.issuer_url.as_deref().unwrap_or_default().trim()
    }

    fn fail(&self, message: String) -> ProviderError {
        ProviderError {
            issuer: self.issuer().to_string(),
            message,
        }
    }

    fn cached(&self) -> Option<Arc<Discovered>> {
        self.discovered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn store(&self, d: Arc<Discovered>) {
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = Some(d);
    }

    /// Discovery and keys, read at the first use and again after [`DISCOVERY_TTL`].
    pub async fn discovered(&self) -> Result<Arc<Discovered>, ProviderError> {
        if let Some(d) = self
            .cached()
            .filter(|d| d.fetched.elapsed() < DISCOVERY_TTL)
        {
            return Ok(d);
        }
        let _one = self.fetching.lock().await;
        if let Some(d) = self
            .cached()
            .filter(|d| d.fetched.elapsed() < DISCOVERY_TTL)
        {
            return Ok(d);
        }
        let issuer =
            IssuerUrl::new(self.issuer().to_string()).map_err(|e| self.fail(e.to_string()))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| self.fail(format!("discovery failed: {}", error_chain(&e))))?;
        let jwks = metadata.jwks().clone();
        let now = Instant::now();
        let d = Arc::new(Discovered {
            metadata,
            jwks,
            fetched: now,
            jwks_fetched: now,
        });
        tracing::info!(issuer = %self.issuer(), keys = d.jwks.keys().len(), "OIDC provider discovered");
        self.store(d.clone());
        Ok(d)
    }

    /// The keys again (an ID token named a `kid` not among them: the provider rotated its
    /// keys). `None` when they were fetched moments ago.
    async fn refetch_keys(
        &self,
        seen: &Arc<Discovered>,
    ) -> Result<Option<Arc<Discovered>>, ProviderError> {
        let _one = self.fetching.lock().await;
        if let Some(d) = self.cached()
            && !Arc::ptr_eq(&d, seen)
        {
            return Ok(Some(d));
        }
        if seen.jwks_fetched.elapsed() < JWKS_REFETCH_GAP {
            return Ok(None);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(seen.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| self.fail(format!("fetching its keys failed: {}", error_chain(&e))))?;
        tracing::info!(issuer = %self.issuer(), keys = jwks.keys().len(), "OIDC provider keys fetched again (an unknown key id)");
        let d = Arc::new(Discovered {
            metadata: seen.metadata.clone(),
            jwks,
            fetched: seen.fetched,
            jwks_fetched: Instant::now(),
        });
        self.store(d.clone());
        Ok(Some(d))
    }

    fn client(&self, d: &Discovered) -> Client {
        CoreClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            Secret::exposed(&self.cfg.client_secret).map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    fn algs(d: &Discovered) -> Vec<CoreJwsSigningAlgorithm> {
        let algs: Vec<_> = d
            .metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| **a != CoreJwsSigningAlgorithm::None)
            .cloned()
            .collect();
        if algs.is_empty() {
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        } else {
            algs
        }
    }

    /// [`verify_id_token`] with the provider's keys; an unknown key id refetches them once.
    pub async fn verify(
        &self,
        d: Arc<Discovered>,
        raw: &str,
        nonce: &str,
    ) -> Result<Result<Claims, TokenRefusal>, ProviderError> {
        let check = |d: &Discovered| {
            let algs = Self::algs(d);
            verify_id_token(
                raw,
                &d.jwks,
                &Expected {
                    issuer: d.metadata.issuer().as_str(),
                    client_id: &self.cfg.client_id,
                    client_secret: Secret::exposed(&self.cfg.client_secret),
                    nonce,
                    algs: &algs,
                    now: chrono::Utc::now(),
                    skew: Duration::from_secs(self.cfg.clock_skew_secs),
                },
            )
        };
        match check(&d) {
            Err(TokenRefusal::UnknownKey) => match self.refetch_keys(&d).await? {
                Some(fresh) => Ok(check(&fresh)),
                None => Ok(Err(TokenRefusal::UnknownKey)),
            },
            other => Ok(other),
        }
    }
}

/// An error with its sources, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Why a callback did not log anyone in. `reason` goes to the log and the audit log; the
/// user sees `shown` (zh, en).
struct Refused {
    status: StatusCode,
    reason: String,
    shown: (&'static str, &'static str),
    user: Option<String>,
}

const START_AGAIN: (&str, &str) = (
    "这个登录链接已失效或已被使用过。请回到登录页重新点击“单点登录”。",
    "This sign-in link has expired or was used already. Go back to the login page and start again.",
);
const TOKEN_REFUSED: (&str, &str) = (
    "身份提供方返回的登录凭证未通过校验，登录被拒绝。请重试；若仍失败请联系管理员。",
    "The identity provider's sign-in token failed zhiku's checks, so the login was refused. Try again; if it keeps failing, ask an admin.",
);
const NOT_ALLOWED: (&str, &str) = (
    "你的账号不允许登录知库。如有疑问请联系管理员。",
    "Your account is not allowed to sign in to Zhiku. Ask an admin if you think it should be.",
);
const PROVIDER_DOWN: (&str, &str) = (
    "暂时无法连接身份提供方，请稍后再试。",
    "The identity provider cannot be reached right now; try again in a moment.",
);

impl Refused {
    fn new(
        status: StatusCode,
        reason: impl Into<String>,
        shown: (&'static str, &'static str),
    ) -> Self {
        Self {
            status,
            reason: reason.into(),
            shown,
            user: None,
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plain page a refused or failed SSO login shows.
fn error_page(status: StatusCode, shown: (&str, &str)) -> Response {
    let v = super::web::VERSION.as_str();
    let (zh, en) = (html_escape(shown.0), html_escape(shown.1));
    let html = format!(
        r#"<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>单点登录失败 · Sign-in failed · 知库</title>
<link rel="icon" href="/static/{v}/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/{v}/style.css">
</head>
<body class="page-login">
<main class="login-card error-page" id="sso-error">
  <div class="login-brand">
    <img src="/static/{v}/favicon.svg" alt="" width="44" height="44">
    <div><h1>知库</h1><p>Zhiku</p></div>
  </div>
  <h2>单点登录失败</h2>
  <p class="muted">{zh}</p>
  <h2 lang="en">Sign-in failed</h2>
  <p class="muted" lang="en">{en}</p>
  <p class="error-actions"><a class="btn btn-primary" href="/login">返回登录 · Back to login</a></p>
</main>
</body>
</html>
"#
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

fn audit(
    meta: &MetaStore,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
    ip: Option<&str>,
) {
    if let Err(e) = meta.audit(actor, action, target, detail, ip) {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
}

/// A path on this site to go to after logging in (anything else becomes `/`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => {
            n.chars().take(512).collect()
        }
        _ => "/".into(),
    }
}

fn not_configured() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        (
            "本服务器未配置单点登录。",
            "Single sign-on is not configured on this server.",
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /auth/oidc/login`: start a login at the provider.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let Some(sso) = state.sso.clone() else {
        return not_configured();
    };
    let d = match sso.discovered().await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "SSO login cannot start");
            return error_page(StatusCode::SERVICE_UNAVAILABLE, PROVIDER_DOWN);
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = sso.client(&d);
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in sso.cfg.scopes.iter().filter(|s| s.as_str() != "openid") {
        request = request.add_scope(Scope::new(s.clone()));
    }
    let (url, csrf, nonce) = request.url();
    // One binding per browser: a second tab's login reuses it rather than breaking the first.
    let browser = match auth::cookie_value(&headers, BROWSER_COOKIE).filter(|b| b.len() == 64) {
        Some(b) => b,
        None => match new_secret("") {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for the SSO login");
                return error_page(StatusCode::INTERNAL_SERVER_ERROR, PROVIDER_DOWN);
            }
        },
    };
    let pending = OidcLogin {
        provider: sso.cfg.name.clone(),
        browser_hash: hash_secret(&browser),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        next: safe_next(q.next.as_deref()),
    };
    if let Err(e) = state.engine.meta.begin_oidc_login(
        &hash_secret(csrf.secret()),
        &pending,
        sso.cfg.login_ttl_secs,
    ) {
        tracing::error!(error = %e, "cannot record the SSO login");
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, PROVIDER_DOWN);
    }
    let cookie = Cookie::build((BROWSER_COOKIE, browser))
        .path("/auth/oidc")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(auth::secure_cookies(&state, &headers))
        .max_age(cookie::time::Duration::seconds(
            sso.cfg.login_ttl_secs as i64,
        ))
        .build();
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url.to_string()),
            (header::SET_COOKIE, cookie.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    /// RFC 9207: the issuer of the answer, when the provider says (mix-up defence).
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/oidc/callback`: the provider sends the browser back here.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    client_ip: ClientIp,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(sso) = state.sso.clone() else {
        return not_configured();
    };
    let ip = client_ip.0.map(|i| i.to_string());
    let meta = &state.engine.meta;
    let source = sso.cfg.source();
    match finish(&state, &sso, &headers, q).await {
        Ok(res) => res,
        Err(r) => {
            let who = r.user.clone().unwrap_or_default();
            tracing::warn!(provider = %sso.cfg.name, user = %who, reason = %r.reason, "SSO login refused");
            audit(
                meta,
                &source,
                "oidc.login_refused",
                &who,
                &r.reason,
                ip.as_deref(),
            );
            error_page(r.status, r.shown)
        }
    }
}

async fn finish(
    state: &AppState,
    sso: &Sso,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<Response, Refused> {
    let meta = &state.engine.meta;
    let bad = StatusCode::BAD_REQUEST;
    let Some(st) = q.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(Refused::new(bad, "the callback has no state", START_AGAIN));
    };
    let store = |e: zhiku_core::store::meta::MetaError| {
        tracing::error!(error = %e, "SSO callback: metadata store");
        Refused::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metadata store error",
            PROVIDER_DOWN,
        )
    };
    let login = match meta.take_oidc_login(&hash_secret(st)).map_err(store)? {
        OidcTake::Fresh(l) => l,
        OidcTake::Replayed => {
            return Err(Refused::new(
                bad,
                "replayed state: this callback was used already",
                START_AGAIN,
            ));
        }
        OidcTake::Expired => {
            return Err(Refused::new(
                bad,
                format!(
                    "expired state: the login took longer than {} s",
                    sso.cfg.login_ttl_secs
                ),
                START_AGAIN,
            ));
        }
        OidcTake::Unknown => {
            return Err(Refused::new(
                bad,
                "wrong state: never issued by this server",
                START_AGAIN,
            ));
        }
    };
    let browser_ok = auth::cookie_value(headers, BROWSER_COOKIE)
        .is_some_and(|b| zhiku_core::access::secrets_equal(&hash_secret(&b), &login.browser_hash));
    if !browser_ok {
        return Err(Refused::new(
            bad,
            "the callback came to a browser other than the one that started the login (no or another binding cookie)",
            START_AGAIN,
        ));
    }
    if login.provider != sso.cfg.name {
        return Err(Refused::new(
            bad,
            format!("the login was started for provider `{}`", login.provider),
            START_AGAIN,
        ));
    }
    if let Some(err) = &q.error {
        let desc: String = q
            .error_description
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            format!("the provider answered {err}: {desc}"),
            NOT_ALLOWED,
        ));
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return Err(Refused::new(bad, "the callback has no code", START_AGAIN));
    };
    let down = |e: ProviderError| {
        tracing::error!(error = %e, "SSO callback: provider");
        Refused::new(StatusCode::BAD_GATEWAY, e.to_string(), PROVIDER_DOWN)
    };
    let d = sso.discovered().await.map_err(down)?;
    if let Some(iss) = &q.iss
        && iss != d.metadata.issuer().as_str()
    {
        return Err(Refused::new(
            bad,
            format!("wrong issuer in the callback: {iss} (RFC 9207 mix-up)"),
            START_AGAIN,
        ));
    }
    let client = sso.client(&d);
    let request = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| {
            Refused::new(
                StatusCode::BAD_GATEWAY,
                format!("the provider has no token endpoint: {e}"),
                PROVIDER_DOWN,
            )
        })?
        .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()));
    let tokens = match request.request_async(&sso.http).await {
        Ok(t) => t,
        Err(RequestTokenError::ServerResponse(e)) => {
            return Err(Refused::new(
                bad,
                format!(
                    "the token endpoint refused the code: {}{}",
                    e.error(),
                    e.error_description()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                START_AGAIN,
            ));
        }
        Err(e) => {
            return Err(down(
                sso.fail(format!("the token request failed: {}", error_chain(&e))),
            ));
        }
    };
    let Some(id_token) = tokens.id_token() else {
        return Err(Refused::new(
            StatusCode::BAD_GATEWAY,
            "the token endpoint sent no ID token (is `openid` among the scopes?)",
            TOKEN_REFUSED,
        ));
    };
    let raw = id_token.to_string();
    let claims = match sso
        .verify(d.clone(), &raw, &login.nonce)
        .await
        .map_err(down)?
    {
        Ok(c) => c,
        Err(t) => {
            return Err(Refused::new(
                StatusCode::FORBIDDEN,
                format!("ID token refused: {}", t.describe()),
                TOKEN_REFUSED,
            ));
        }
    };
    let exp = claims.expiration().timestamp();
    let nonce_hash = hash_secret(&format!("{}\n{}", sso.cfg.name, login.nonce));
    if !meta.use_oidc_nonce(&nonce_hash, exp).map_err(store)? {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "replayed nonce: an ID token with this nonce was accepted already",
            TOKEN_REFUSED,
        ));
    }
    let user = match user_of(&sso.cfg, &claims) {
        Ok(u) => u,
        Err(r) => {
            let reason = match r {
                RuleRefusal::DomainNotAllowed(e) => {
                    format!("domain not allowed: {e} (auth.oidc.allowed_domains)")
                }
                RuleRefusal::EmailUnverified => {
                    "the provider says the email is not verified".into()
                }
                RuleRefusal::ClaimMismatch(m) => format!("required claim not met: {m}"),
                RuleRefusal::NoUsername(c) => {
                    format!("the ID token has no `{c}` claim (auth.oidc.username_claim)")
                }
            };
            return Err(Refused {
                user: Some(claims.subject().as_str().to_string()),
                ..Refused::new(StatusCode::FORBIDDEN, reason, NOT_ALLOWED)
            });
        }
    };
    let source = sso.cfg.source();
    let refused_account = |reason: String| Refused {
        user: Some(user.login.clone()),
        ..Refused::new(StatusCode::FORBIDDEN, reason, NOT_ALLOWED)
    };
    let user_id = match provision_from(meta, &source, true, &user, &user.login) {
        Ok(Provision::Ready { user, .. }) => user,
        Ok(Provision::LocalConflict) => {
            return Err(refused_account(format!(
                "a local (or other directory) account `{}` exists and is not taken over (rename or delete it to let the SSO user in)",
                user.login
            )));
        }
        Ok(Provision::OtherSubject) => {
            return Err(refused_account(format!(
                "the account `{}` belongs to another subject of this provider (sub differs): not taken over",
                user.login
            )));
        }
        Ok(Provision::BadName) => {
            return Err(refused_account(format!(
                "the claim {} = `{}` is not a valid zhiku user name",
                sso.cfg.username_claim, user.login
            )));
        }
        Err(super::ldap::LdapError::Meta(e)) => return Err(store(e)),
        Err(e) => return Err(refused_account(e.to_string())),
    };
    let started = auth::start_session(state, headers, user_id).map_err(|e| {
        tracing::error!(error = %e, "SSO callback: session");
        Refused::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot start the session",
            PROVIDER_DOWN,
        )
    })?;
    if let Err(e) = meta.set_oidc_session(&started.id_hash, &sso.cfg.name, &raw) {
        tracing::error!(error = %e, "cannot record the SSO session's ID token; the provider logout will not be offered");
    }
    audit(
        meta,
        &user.login,
        "oidc.login",
        &user.login,
        &format!(
            "provider {}; sub {}; groups {}",
            sso.cfg.name,
            user.dn,
            user.groups.join(",")
        ),
        None,
    );
    tracing::info!(user = %user.login, provider = %sso.cfg.name, "SSO login");
    let gone = Cookie::build((BROWSER_COOKIE, ""))
        .path("/auth/oidc")
        .http_only(true)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut res = (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, login.next.clone()),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response();
    for c in [started.cookie, gone.to_string()] {
        if let Ok(v) = header::HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// Where the browser goes to log out at the provider too, for the SSO session
/// `session_hash` (None: not an SSO session, provider logout off, or the provider offers
/// no end_session_endpoint).
pub async fn end_session_url(
    state: &AppState,
    session_hash: &str,
    headers: &HeaderMap,
) -> Option<String> {
    let sso = state.sso.clone()?;
    if !sso.cfg.provider_logout {
        return None;
    }
    let (provider, raw) = state.engine.meta.oidc_session(session_hash).ok()??;
    if provider != sso.cfg.name {
        return None;
    }
    let d = match sso.discovered().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "provider logout skipped");
            return None;
        }
    };
    let endpoint = d
        .metadata
        .additional_metadata()
        .end_session_endpoint
        .clone()?;
    let token = Token::from_str(&raw).ok()?;
    let mut req = LogoutRequest::from(endpoint)
        .set_id_token_hint(&token)
        .set_client_id(ClientId::new(sso.cfg.client_id.clone()));
    let back = match &sso.cfg.post_logout_redirect_url {
        Some(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => match state.engine.config.server.public_url.as_deref() {
            Some(p) => Some(format!("{}/login", p.trim_end_matches('/'))),
            None => headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    let scheme = if auth::secure_cookies(state, headers) {
                        "https"
                    } else {
                        "http"
                    };
                    format!("{scheme}://{h}/login")
                }),
        },
    };
    if let Some(b) = back.and_then(|b| PostLogoutRedirectUrl::new(b).ok()) {
        req = req.set_post_logout_redirect_uri(b);
    }
    Some(req.http_get_url().to_string())
}

/// What the login page offers besides the password form.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SsoProviders {
    pub providers: Vec<SsoProvider>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SsoProvider {
    pub name: String,
    /// The button's label; empty: the page's own ("Sign in with SSO").
    pub label: String,
    /// Where the button goes (add `?next=/path`).
    pub login_url: String,
}

/// The single sign-on providers the login page shows buttons for (no login needed).
#[utoipa::path(get, path = "/api/login/sso", tag = "session",
    responses((status = 200, body = SsoProviders)))]
pub async fn providers(State(state): State<AppState>) -> axum::Json<SsoProviders> {
    let providers = state
        .sso
        .iter()
        .map(|s| SsoProvider {
            name: s.cfg.name.clone(),
            label: s.cfg.button_label.clone(),
            login_url: "/auth/oidc/login".into(),
        })
        .collect();
    axum::Json(SsoProviders { providers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::core::CoreRsaPrivateSigningKey;
    use openidconnect::{
        Audience, EndUserEmail, EndUserUsername, JsonWebKeyId, PrivateSigningKey, StandardClaims,
        SubjectIdentifier,
    };
    use rsa::pkcs1::EncodeRsaPrivateKey;

    const ISS: &str = "https://sso.example.com/realms/corp";
    const CLIENT: &str = "zhiku";
    const NONCE: &str = "n-0S6_WzA2Mj";

    fn key(kid: &str) -> CoreRsaPrivateSigningKey {
        let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = k.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new(kid.into()))).unwrap()
    }

    struct Craft {
        iss: String,
        aud: String,
        exp_in: i64,
        iat_in: i64,
        nonce: String,
        extra: serde_json::Value,
    }

    impl Default for Craft {
        fn default() -> Self {
            Self {
                iss: ISS.into(),
                aud: CLIENT.into(),
                exp_in: 300,
                iat_in: 0,
                nonce: NONCE.into(),
                extra: serde_json::json!({"groups": ["staff", "ops"], "tid": "t-1"}),
            }
        }
    }

    fn sign(c: &Craft, k: &CoreRsaPrivateSigningKey) -> String {
        let now = chrono::Utc::now();
        let extra: Extra = serde_json::from_value(c.extra.clone()).unwrap();
        let claims = IdTokenClaims::new(
            IssuerUrl::new(c.iss.clone()).unwrap(),
            vec![Audience::new(c.aud.clone())],
            now + chrono::Duration::seconds(c.exp_in),
            now + chrono::Duration::seconds(c.iat_in),
            StandardClaims::new(SubjectIdentifier::new("sub-ann".into()))
                .set_preferred_username(Some(EndUserUsername::new("ann".into())))
                .set_email(Some(EndUserEmail::new("ann@corp.example.com".into()))),
            extra,
        )
        .set_nonce(Some(Nonce::new(c.nonce.clone())));
        Token::new(
            claims,
            k,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .unwrap()
        .to_string()
    }

    fn check(raw: &str, jwks: &CoreJsonWebKeySet) -> Result<Claims, TokenRefusal> {
        verify_id_token(
            raw,
            jwks,
            &Expected {
                issuer: ISS,
                client_id: CLIENT,
                client_secret: Some("client-secret-1"),
                nonce: NONCE,
                algs: &[CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
                now: chrono::Utc::now(),
                skew: Duration::from_secs(60),
            },
        )
    }

    #[test]
    fn crafted_id_tokens_face_the_verifier() {
        let good = key("k1");
        let other = key("k1"); // same kid, another key: a forgery
        let outsider = key("k9"); // a key the provider does not publish
        let jwks = JsonWebKeySet::new(vec![good.as_verification_key()]);

        let claims = check(&sign(&Craft::default(), &good), &jwks).expect("a good token");
        assert_eq!(claims.subject().as_str(), "sub-ann");
        assert_eq!(strings(claim(&claims, "groups")), vec!["staff", "ops"]);

        let refused =
            |c: Craft, k: &CoreRsaPrivateSigningKey| check(&sign(&c, k), &jwks).unwrap_err();
        assert!(matches!(
            refused(
                Craft {
                    aud: "another-app".into(),
                    ..Craft::default()
                },
                &good
            ),
            TokenRefusal::WrongAudience(_)
        ));
        assert!(matches!(
            refused(
                Craft {
                    iss: "https://evil.example.com".into(),
                    ..Craft::default()
                },
                &good
            ),
            TokenRefusal::WrongIssuer(_)
        ));
        // Expired beyond the 60 s skew; within it, still fine.
        assert!(matches!(
            refused(
                Craft {
                    exp_in: -120,
                    iat_in: -400,
                    ..Craft::default()
                },
                &good
            ),
            TokenRefusal::Expired(_)
        ));
        assert!(
            check(
                &sign(
                    &Craft {
                        exp_in: -30,
                        iat_in: -300,
                        ..Craft::default()
                    },
                    &good
                ),
                &jwks
            )
            .is_ok()
        );
        assert!(matches!(
            refused(
                Craft {
                    iat_in: 600,
                    exp_in: 900,
                    ..Craft::default()
                },
                &good
            ),
            TokenRefusal::Expired(_)
        ));
        assert!(matches!(
            refused(
                Craft {
                    nonce: "another".into(),
                    ..Craft::default()
                },
                &good
            ),
            TokenRefusal::WrongNonce(_)
        ));
        assert!(matches!(
            refused(Craft::default(), &other),
            TokenRefusal::BadSignature(_)
        ));
        assert_eq!(
            refused(Craft::default(), &outsider),
            TokenRefusal::UnknownKey
        );
        // A token with its payload changed after signing (groups added).
        let t = sign(&Craft::default(), &good);
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        payload["groups"] = serde_json::json!(["admins"]);
        parts[1] = b64.encode(serde_json::to_vec(&payload).unwrap());
        assert!(matches!(
            check(&parts.join("."), &jwks).unwrap_err(),
            TokenRefusal::BadSignature(_)
        ));
        // alg "none" and garbage.
        let none_header = b64.encode(br#"{"alg":"none"}"#);
        assert!(check(&format!("{none_header}.{}.", parts[1]), &jwks).is_err());
        assert!(matches!(
            check("not a jwt", &jwks).unwrap_err(),
            TokenRefusal::Malformed(_)
        ));
        // The rotated key is accepted once the JWKS has it.
        let rotated = key("k2");
        let both = JsonWebKeySet::new(vec![
            good.as_verification_key(),
            rotated.as_verification_key(),
        ]);
        assert_eq!(
            check(&sign(&Craft::default(), &rotated), &jwks).unwrap_err(),
            TokenRefusal::UnknownKey
        );
        assert!(check(&sign(&Craft::default(), &rotated), &both).is_ok());
    }

    #[test]
    fn claims_become_a_user_under_the_rules() {
        let k = key("k1");
        let jwks = JsonWebKeySet::new(vec![k.as_verification_key()]);
        let c = Craft {
            extra: serde_json::json!({
                "groups": ["staff", "Domain Users"],
                "realm_access": {"roles": ["editor"]},
                "tid": "t-1"
            }),
            ..Craft::default()
        };
        let claims = check(&sign(&c, &k), &jwks).unwrap();
        let mut cfg = OidcConfig {
            roles_claim: Some("realm_access.roles".into()),
            ..OidcConfig::default()
        };
        let u = user_of(&cfg, &claims).unwrap();
        assert_eq!((u.login.as_str(), u.dn.as_str()), ("ann", "sub-ann"));
        assert_eq!(u.directory_groups, vec!["Domain Users", "editor", "staff"]);
        assert_eq!(
            u.groups,
            vec!["editor", "staff"],
            "`Domain Users` is no zhiku name"
        );
        assert_eq!(u.mail.as_deref(), Some("ann@corp.example.com"));
        cfg.group_rule = zhiku_core::config::LdapGroupRule::Map;
        cfg.group_map = [("domain users".to_string(), "everyone".to_string())].into();
        assert_eq!(user_of(&cfg, &claims).unwrap().groups, vec!["everyone"]);
        cfg.allowed_domains = vec!["other.example.com".into()];
        assert!(matches!(
            user_of(&cfg, &claims),
            Err(RuleRefusal::DomainNotAllowed(_))
        ));
        cfg.allowed_domains = vec!["@Corp.Example.com".into()];
        assert!(user_of(&cfg, &claims).is_ok());
        cfg.required_claim = Some("tid".into());
        cfg.required_value = Some("t-2".into());
        assert!(matches!(
            user_of(&cfg, &claims),
            Err(RuleRefusal::ClaimMismatch(_))
        ));
        cfg.required_value = Some("t-1".into());
        assert!(user_of(&cfg, &claims).is_ok());
        cfg.username_claim = "upn".into();
        assert_eq!(
            user_of(&cfg, &claims).unwrap_err(),
            RuleRefusal::NoUsername("upn".into())
        );
        cfg.username_claim = "email".into();
        assert_eq!(
            user_of(&cfg, &claims).unwrap().login,
            "ann@corp.example.com"
        );
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/admin?x=1")), "/admin?x=1");
        for bad in ["https://evil.example", "//evil.example", "/\\evil", "admin"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
