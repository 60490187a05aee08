//! OpenID Connect single sign-on state (README "Identity", `[auth.oidc]`):
//!
//! - **Started logins**: each redirect to the provider stores its `state` (hashed), nonce,
//!   PKCE verifier and the hash of the browser's binding cookie, for `login_ttl_secs`. A
//!   callback takes its row exactly once ([`MetaStore::take_oidc_login`]); a second use of the
//!   same state is told apart from an unknown one (replay vs. forgery, for the audit log).
//!   The table is bounded: the oldest rows go past [`MAX_PENDING`].
//! - **Used nonces**: the nonce of every accepted ID token, until that token expires, so the
//!   same ID token is never accepted twice.
//! - **SSO sessions**: the ID token behind a zhiku session, for the provider's logout
//!   (`id_token_hint`). Deleted with the session.

use rusqlite::{OptionalExtension, params};

use super::{MetaStore, Result, now};

/// Schema step 2 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS oidc_logins (
    state_hash    TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    browser_hash  TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    next          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
CREATE INDEX IF NOT EXISTS oidc_logins_created ON oidc_logins(created_at);
CREATE TABLE IF NOT EXISTS oidc_nonces (
    nonce_hash  TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oidc_sessions (
    session_hash  TEXT PRIMARY KEY REFERENCES sessions(id_hash) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    id_token      TEXT NOT NULL
);
"#;

/// At most this many started logins are kept (a flood of `/auth/oidc/login` cannot grow the
/// table without bound; the oldest go first).
pub const MAX_PENDING: i64 = 10_000;

/// Used logins are remembered this long past their expiry, so a replay is recognised as one.
const REPLAY_MEMORY_SECS: i64 = 3600;

/// A started login, as the callback finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcLogin {
    pub provider: String,
    pub browser_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where the user goes after logging in (a path on this site).
    pub next: String,
}

/// What a callback's state turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OidcTake {
    /// Live and unused: now used.
    Fresh(OidcLogin),
    /// Used before: a replayed callback.
    Replayed,
    /// Started, but longer ago than its time limit.
    Expired,
    /// Never issued here (or long forgotten).
    Unknown,
}

impl MetaStore {
    /// Record a started login under the hash of its `state`, live for `ttl_secs`.
    pub fn begin_oidc_login(
        &self,
        state_hash: &str,
        login: &OidcLogin,
        ttl_secs: u64,
    ) -> Result<()> {
        self.begin_oidc_login_bounded(state_hash, login, ttl_secs, MAX_PENDING)
    }

    fn begin_oidc_login_bounded(
        &self,
        state_hash: &str,
        login: &OidcLogin,
        ttl_secs: u64,
        max: i64,
    ) -> Result<()> {
        let t = now();
        self.with(|c| {
            c.execute(
                "DELETE FROM oidc_logins WHERE expires_at + ?2 <= ?1",
                params![t, REPLAY_MEMORY_SECS],
            )?;
            c.execute(
                "INSERT INTO oidc_logins(state_hash, provider, browser_hash, nonce, pkce_verifier,
                                         next, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    state_hash,
                    login.provider,
                    login.browser_hash,
                    login.nonce,
                    login.pkce_verifier,
                    login.next,
                    t,
                    t.saturating_add(ttl_secs as i64)
                ],
            )?;
            c.execute(
                "DELETE FROM oidc_logins WHERE state_hash IN (
                     SELECT state_hash FROM oidc_logins ORDER BY created_at DESC, rowid DESC
                     LIMIT -1 OFFSET ?1)",
                [max],
            )
            .map(|_| ())
        })
    }

    /// Take the started login with this state hash: at most one caller ever gets
    /// [`OidcTake::Fresh`] for it.
    pub fn take_oidc_login(&self, state_hash: &str) -> Result<OidcTake> {
        let t = now();
        self.with(|c| {
            let taken = c
                .query_row(
                    "UPDATE oidc_logins SET used_at = ?2
                     WHERE state_hash = ?1 AND used_at IS NULL AND expires_at > ?2
                     RETURNING provider, browser_hash, nonce, pkce_verifier, next",
                    params![state_hash, t],
                    |r| {
                        Ok(OidcLogin {
                            provider: r.get(0)?,
                            browser_hash: r.get(1)?,
                            nonce: r.get(2)?,
                            pkce_verifier: r.get(3)?,
                            next: r.get(4)?,
                        })
                    },
                )
                .optional()?;
            if let Some(login) = taken {
                return Ok(OidcTake::Fresh(login));
            }
            let row: Option<Option<i64>> = c
                .query_row(
                    "SELECT used_at FROM oidc_logins WHERE state_hash = ?1",
                    [state_hash],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match row {
                None => OidcTake::Unknown,
                Some(Some(_)) => OidcTake::Replayed,
                Some(None) => OidcTake::Expired,
            })
        })
    }

    /// Remember the nonce hash of an accepted ID token until `expires_at`: true the first
    /// time, false when it was used already (a replayed ID token).
    pub fn use_oidc_nonce(&self, nonce_hash: &str, expires_at: i64) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM oidc_nonces WHERE expires_at <= ?1", [now()])?;
            c.execute(
                "INSERT OR IGNORE INTO oidc_nonces(nonce_hash, expires_at) VALUES (?1, ?2)",
                params![nonce_hash, expires_at.max(now() + 1)],
            )
            .map(|n| n > 0)
        })
    }

    /// Record the ID token behind the session `session_hash` (for the provider's logout).
    pub fn set_oidc_session(
        &self,
        session_hash: &str,
        provider: &str,
        id_token: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO oidc_sessions(session_hash, provider, id_token)
                 VALUES (?1, ?2, ?3)",
                params![session_hash, provider, id_token],
            )
            .map(|_| ())
        })
    }

    /// The provider and ID token behind a session, when it was an SSO login.
    pub fn oidc_session(&self, session_hash: &str) -> Result<Option<(String, String)>> {
        self.with(|c| {
            c.query_row(
                "SELECT provider, id_token FROM oidc_sessions WHERE session_hash = ?1",
                [session_hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;

    fn login(next: &str) -> OidcLogin {
        OidcLogin {
            provider: "sso".into(),
            browser_hash: "b".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            next: next.into(),
        }
    }

    #[test]
    fn a_state_is_taken_once_and_a_replay_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("m.sqlite")).unwrap();
        s.begin_oidc_login("st1", &login("/admin"), 600).unwrap();
        assert_eq!(
            s.take_oidc_login("st1").unwrap(),
            OidcTake::Fresh(login("/admin"))
        );
        assert_eq!(s.take_oidc_login("st1").unwrap(), OidcTake::Replayed);
        assert_eq!(s.take_oidc_login("nope").unwrap(), OidcTake::Unknown);
        // A login that outlived its time limit.
        s.begin_oidc_login("st2", &login("/"), 0).unwrap();
        assert_eq!(s.take_oidc_login("st2").unwrap(), OidcTake::Expired);
        // Nonces: once.
        assert!(s.use_oidc_nonce("nh", now() + 60).unwrap());
        assert!(!s.use_oidc_nonce("nh", now() + 60).unwrap());
        // An SSO session's ID token goes with the session.
        let u = s.create_user("ann", None, Role::Member).unwrap();
        s.create_session("sess", u, "csrf", now() + 3600).unwrap();
        s.set_oidc_session("sess", "sso", "eyJ.x.y").unwrap();
        assert_eq!(
            s.oidc_session("sess").unwrap(),
            Some(("sso".into(), "eyJ.x.y".into()))
        );
        s.delete_session("sess").unwrap();
        assert_eq!(s.oidc_session("sess").unwrap(), None);
    }

    #[test]
    fn started_logins_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("m.sqlite")).unwrap();
        for i in 0..55 {
            s.begin_oidc_login_bounded(&format!("s{i}"), &login("/"), 600, 50)
                .unwrap();
        }
        let n: i64 = s
            .with(|c| c.query_row("SELECT count(*) FROM oidc_logins", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 50);
        // The oldest went; the newest stays.
        assert_eq!(s.take_oidc_login("s0").unwrap(), OidcTake::Unknown);
        assert!(matches!(
            s.take_oidc_login("s54").unwrap(),
            OidcTake::Fresh(_)
        ));
    }
}
