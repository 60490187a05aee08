//! OIDC single sign-on against a real, certified OpenID Provider: panva's `oidc-provider`
//! (npm, pinned in tests/oidc/package-lock.json), started by each test on 127.0.0.1 by
//! tests/oidc/provider.mjs with the clients `zhiku` and `other-app` and the users ann (staff,
//! platform), ben (staff) and eve (mail at a domain zhiku does not allow). zhiku runs in
//! process, `[auth.oidc]` pointing at it.
//!
//! - [`refusals_and_key_rotation`]: logins driven without a browser (tests/oidc/login.mjs
//!   signs in at the provider's form and stops before the callback, which the test sends):
//!   a good login with the provider's groups; a replayed, an unknown and a foreign-browser
//!   state; ID tokens changed by the provider's test hook (wrong audience, expired, forged
//!   with a key it does not publish, an old token with an old nonce); a domain not allowed;
//!   a local account not taken over; then the provider restarts with its second key (a key
//!   rotation) and logins still work; logout answers the provider's end_session URL.
//! - [`login_in_a_browser`]: the whole flow in headless Chromium (tests/oidc/browser.mjs,
//!   playwright-core from tests/browser): the login page's button, the provider's form, back
//!   logged in with the right groups, the refusal page of a replayed callback, logout through
//!   the provider. Screenshots go to target/oidc-artifacts/.
//!
//! Needs node, `npm ci` in tests/oidc (and in tests/browser plus Chromium for the browser
//! test); where one is missing the tests are skipped with a note, except in CI, where they
//! fail.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use zhiku_core::config::OidcConfig;
use zhiku_core::engine::Engine;
use zhiku_core::store::meta::Role;

use common::HashEmbedder;
use common::http::{Client, Response, TestServer};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// node and the provider package, when installed.
fn node() -> Option<PathBuf> {
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return common::missing("node is not installed"),
    }
    if !repo()
        .join("tests/oidc/node_modules/oidc-provider")
        .exists()
    {
        return common::missing("oidc-provider is not installed (run `npm ci` in tests/oidc)");
    }
    Some(PathBuf::from("node"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running provider; killed when dropped.
struct Provider {
    child: Child,
    port: u16,
    url: String,
    redirect: String,
    post_logout: String,
    keys: PathBuf,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_provider(port: u16, redirect: &str, post_logout: &str, keys: &Path, kid: &str) -> Child {
    let mut child = Command::new("node")
        .arg(repo().join("tests/oidc/provider.mjs"))
        .env("OIDC_PORT", port.to_string())
        .env("OIDC_REDIRECT", redirect)
        .env("OIDC_POST_LOGOUT", post_logout)
        .env("OIDC_KEYS", keys)
        .env("OIDC_SIGNING_KID", kid)
        .current_dir(repo().join("tests/oidc"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the OIDC provider");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("provider: {line}");
            if line.starts_with("oidc-provider listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the OIDC provider did not start listening within 60 s");
    child
}

impl Provider {
    fn start(dir: &Path, zhiku: &str) -> Self {
        let port = free_port();
        let redirect = format!("{zhiku}/auth/oidc/callback");
        let post_logout = format!("{zhiku}/login");
        let keys = dir.join("provider-keys.json");
        let child = spawn_provider(port, &redirect, &post_logout, &keys, "k1");
        Self {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            redirect,
            post_logout,
            keys,
        }
    }

    /// Restart signing with (and publishing only) key `kid`: a key rotation.
    fn restart_with_key(&mut self, kid: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_provider(
            self.port,
            &self.redirect,
            &self.post_logout,
            &self.keys,
            kid,
        );
    }

    /// Change the next ID token the provider issues (provider.mjs's test hook).
    fn tamper(&self, mode: &str) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /__test/tamper?mode={mode} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "tamper {mode}: {out}");
    }
}

/// zhiku in process on a port chosen first (the redirect URL names it), SSO configured, a
/// knowledge base `handbook` read by group `staff`.
fn zhiku(dir: &Path, op_port: u16, zhiku_port: u16) -> TestServer {
    let url = format!("http://127.0.0.1:{zhiku_port}");
    let mut c = common::config(dir);
    c.server.public_url = Some(url.clone());
    c.auth.oidc = OidcConfig {
        issuer_url: Some(format!("http://127.0.0.1:{op_port}")),
        client_id: "zhiku".into(),
        client_secret: Some("zhiku-secret-1".into()),
        allowed_domains: vec!["corp.example.com".into()],
        timeout_secs: 10,
        ..OidcConfig::default()
    };
    let engine = Engine::open(c).unwrap().with_embedder(HashEmbedder::new());
    let kb = engine.meta.create_kb("handbook").unwrap();
    let staff = engine.meta.ensure_group("staff").unwrap();
    engine.meta.grant(kb, staff).unwrap();
    TestServer::start_at(engine, None, &format!("127.0.0.1:{zhiku_port}"))
}

/// A login at the provider as `user`, stopped before the callback: the callback's path and
/// query, and the browser-binding cookie.
fn sign_in(zhiku: &str, user: &str) -> (String, String) {
    let out = Command::new("node")
        .arg(repo().join("tests/oidc/login.mjs"))
        .env("ZHIKU_URL", zhiku)
        .env("OIDC_USER", user)
        .current_dir(repo().join("tests/oidc"))
        .output()
        .expect("run login.mjs");
    assert!(
        out.status.success(),
        "login.mjs as {user}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let callback = v["callback"].as_str().unwrap();
    let path = callback.strip_prefix(zhiku).unwrap().to_string();
    (path, v["cookie"].as_str().unwrap().to_string())
}

fn callback(c: &Client, path: &str, cookie: Option<&str>) -> Response {
    match cookie {
        Some(k) => c.clone().with_header("Cookie", k).get(path),
        None => c.get(path),
    }
}

/// The `zhiku_session=…` pair a successful callback sets.
fn session_of(r: &Response) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .find(|p| p.starts_with("zhiku_session=") && p.len() > "zhiku_session=".len())
        .unwrap_or_else(|| panic!("no session cookie: {:?}", r.headers))
}

/// The newest `oidc.login_refused` audit entry's detail.
fn last_refusal(s: &TestServer) -> String {
    s.state
        .engine
        .meta
        .audit_log(50, 0)
        .unwrap()
        .into_iter()
        .find(|e| e.action == "oidc.login_refused")
        .map(|e| e.detail)
        .unwrap_or_default()
}

fn assert_refused(s: &TestServer, r: &Response, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let page = r.text();
    assert!(
        page.contains("单点登录失败") && page.contains("/login"),
        "a plain page with the way back: {page}"
    );
    assert!(
        !r.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("zhiku_session=")),
        "no session for a refusal"
    );
    let audited = last_refusal(s);
    assert!(
        audited.contains(reason),
        "audited `{audited}`, wanted `{reason}`"
    );
}

#[test]
fn refusals_and_key_rotation() {
    if node().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let zp = free_port();
    let zurl = format!("http://127.0.0.1:{zp}");
    let mut op = Provider::start(tmp.path(), &zurl);
    let s = zhiku(tmp.path(), op.port, zp);
    let c = s.client();

    // The login page learns of the provider.
    let p = c.get("/api/login/sso").json();
    assert_eq!(p["providers"][0]["login_url"], "/auth/oidc/login", "{p}");

    // A good login: the session, the account and the provider's groups.
    let (path, binding) = sign_in(&zurl, "ann");
    let r = callback(&c, &path, Some(&binding));
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    let ann = c.clone().with_header("Cookie", &session_of(&r));
    let me = ann.get("/api/me").json();
    assert_eq!(me["user"]["name"], "ann", "{me}");
    assert_eq!(
        me["user"]["groups"],
        serde_json::json!(["platform", "staff"])
    );
    assert_eq!(me["user"]["directory"], "oidc:sso");
    assert_eq!(me["knowledge_bases"], serde_json::json!(["handbook"]));
    let account = s.state.engine.meta.directory_accounts("oidc:sso").unwrap();
    assert_eq!(account[0].dn, "ann", "the provider's sub");
    assert_eq!(account[0].mail.as_deref(), Some("ann@corp.example.com"));

    // The same callback again: a replayed state.
    let r = callback(&c, &path, Some(&binding));
    assert_refused(&s, &r, 400, "replayed state");
    // A state never issued here.
    let forged = path.replace("state=", "state=x");
    assert_refused(
        &s,
        &callback(&c, &forged, Some(&binding)),
        400,
        "wrong state",
    );
    // A callback in another browser than the one that started the login (login CSRF).
    let (path, _) = sign_in(&zurl, "ann");
    assert_refused(&s, &callback(&c, &path, None), 400, "other than the one");

    // ID tokens the provider's hook changes: each refused, whatever the rest says.
    for (mode, reason) in [
        ("aud", "wrong audience"),
        ("expired", "expired"),
        ("forged", "does not publish"),
        ("replay", "wrong nonce"),
    ] {
        op.tamper(mode);
        let (path, binding) = sign_in(&zurl, "ann");
        let r = callback(&c, &path, Some(&binding));
        assert_refused(&s, &r, 403, reason);
    }

    // The rules: a domain not allowed; a local account never taken over.
    let (path, binding) = sign_in(&zurl, "eve");
    assert_refused(
        &s,
        &callback(&c, &path, Some(&binding)),
        403,
        "domain not allowed",
    );
    let hash = zhiku_core::access::hash_password("local-pass-1").unwrap();
    s.state
        .engine
        .meta
        .create_user("ben", Some(&hash), Role::Member)
        .unwrap();
    let (path, binding) = sign_in(&zurl, "ben");
    assert_refused(
        &s,
        &callback(&c, &path, Some(&binding)),
        403,
        "not taken over",
    );

    // Key rotation: the provider now signs with k2 and publishes only k2; zhiku has k1
    // cached, meets an unknown kid, fetches the keys again and accepts.
    op.restart_with_key("k2");
    std::thread::sleep(Duration::from_millis(5500)); // past the refetch gap of the forged case
    let (path, binding) = sign_in(&zurl, "ann");
    let r = callback(&c, &path, Some(&binding));
    assert_eq!(
        r.status,
        303,
        "after the key rotation: {} ({})",
        r.text(),
        last_refusal(&s)
    );
    let ann = c.clone().with_header("Cookie", &session_of(&r));
    let me = ann.get("/api/me").json();
    assert_eq!(me["user"]["name"], "ann");

    // Logout of an SSO session: the provider's end_session_endpoint, with the hint.
    let csrf = me["csrf"].as_str().unwrap();
    let r = ann
        .clone()
        .with_header("X-CSRF-Token", csrf)
        .post_json("/api/logout", &serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["end_session_url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("{}/session/end?", op.url)),
        "{url}"
    );
    assert!(
        url.contains("id_token_hint=") && url.contains("post_logout_redirect_uri="),
        "{url}"
    );
    assert_eq!(ann.get("/api/me").status, 401, "the zhiku session ended");
    // A password login's logout stays a plain 204.
    let hash = zhiku_core::access::hash_password("root-pass-1").unwrap();
    s.state
        .engine
        .meta
        .create_user("root", Some(&hash), Role::Admin)
        .unwrap();
    let root = c.login("root", "root-pass-1");
    assert_eq!(
        root.post_json("/api/logout", &serde_json::json!({})).status,
        204
    );
}

#[test]
fn login_in_a_browser() {
    if node().is_none() {
        return;
    }
    let chromium = std::env::var_os("ZHIKU_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        common::missing::<()>(&format!(
            "{} is missing (apt-get install chromium, or set ZHIKU_CHROMIUM)",
            chromium.display()
        ));
        return;
    }
    if !repo()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        common::missing::<()>("playwright-core is not installed (run `npm ci` in tests/browser)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let zp = free_port();
    let zurl = format!("http://127.0.0.1:{zp}");
    let op = Provider::start(tmp.path(), &zurl);
    let _s = zhiku(tmp.path(), op.port, zp);
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("oidc-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    let mut script = Command::new("node")
        .arg(repo().join("tests/oidc/browser.mjs"))
        .env("ZHIKU_URL", &zurl)
        .env("OIDC_URL", &op.url)
        .env("ZHIKU_ARTIFACTS", &artifacts)
        .env("ZHIKU_CHROMIUM", &chromium)
        .current_dir(repo().join("tests/oidc"))
        .spawn()
        .expect("run node");
    // The script bounds itself at 5 minutes; this is the backstop.
    let status = common::wait_bounded(
        &mut script,
        Duration::from_secs(6 * 60),
        "the OIDC browser test",
    );
    assert!(
        status.success(),
        "the OIDC browser test failed ({status}); its output is above, screenshots in {}",
        artifacts.display()
    );
}
