//! Who may do what: password hashing, secrets for sessions and API tokens, and the first-run
//! admin account. The accounts themselves (users, groups, grants) live in
//! [`crate::store::meta`]; which knowledge bases a user may read is
//! [`MetaStore::readable_kbs`], and retrieval only ever searches those.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use crate::store::meta::{MetaError, MetaStore, Role, UserId};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// API tokens start with this, so that they are recognisable in logs and secret scanners.
pub const TOKEN_PREFIX: &str = "zk_";

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the password is too short: use at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub type Result<T> = std::result::Result<T, AccessError>;

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| AccessError::Random(e.to_string()))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id hash (PHC string, with its own random salt) of `password`.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AccessError::WeakPassword);
    }
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| AccessError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccessError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new random secret (256 bits, hex) with a prefix: session ids, CSRF tokens, API tokens.
pub fn new_secret(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}{}", hex(&random_bytes::<32>()?)))
}

/// How secrets are stored: SHA-256, hex. The secrets are random and long, so a fast hash is
/// enough (nothing to brute-force), and lookups stay one indexed query.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Compare two secrets in time that does not depend on where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A new API token for `user`: stored hashed, returned in full exactly once.
pub fn create_token(meta: &MetaStore, user: UserId, name: &str) -> Result<(i64, String)> {
    let token = new_secret(TOKEN_PREFIX)?;
    let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let id = meta.create_token(user, name, &hash_secret(&token), &prefix)?;
    Ok((id, token))
}

/// What the first start did about the admin account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstAdmin {
    /// Users exist already: nothing done.
    Existing,
    /// `admin` was created with the password from `ZHIKU_ADMIN_PASSWORD`.
    FromEnv,
    /// `admin` was created with this generated password (print it once).
    Generated(String),
}

/// On a data folder without users, create the admin account `admin`, with `password` when
/// given (from `ZHIKU_ADMIN_PASSWORD`) or a generated one.
pub fn ensure_first_admin(meta: &MetaStore, password: Option<&str>) -> Result<FirstAdmin> {
    if !meta.list_users()?.is_empty() {
        return Ok(FirstAdmin::Existing);
    }
    let (password, outcome) = match password {
        Some(p) => (p.to_string(), FirstAdmin::FromEnv),
        None => {
            let p = hex(&random_bytes::<9>()?);
            (p.clone(), FirstAdmin::Generated(p))
        }
    };
    meta.create_user("admin", Some(&hash_password(&password)?), Role::Admin)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_salt_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted hashes must differ");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct hors", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(matches!(
            hash_password("short"),
            Err(AccessError::WeakPassword)
        ));
    }

    #[test]
    fn secrets_are_random_and_stored_hashed() {
        let a = new_secret(TOKEN_PREFIX).unwrap();
        let b = new_secret(TOKEN_PREFIX).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert!(secrets_equal(&a, &a.clone()));
        assert!(!secrets_equal(&a, &b));
        assert!(!secrets_equal("abc", "abcd"));
    }

    #[test]
    fn first_admin_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("z.sqlite")).unwrap();
        assert_eq!(
            ensure_first_admin(&meta, Some("s3cret-pass")).unwrap(),
            FirstAdmin::FromEnv
        );
        let (_, hash) = meta.password_hash("admin").unwrap().unwrap();
        assert!(verify_password("s3cret-pass", &hash));
        assert!(meta.require_user("admin").unwrap().is_admin());
        assert_eq!(
            ensure_first_admin(&meta, Some("other-pass")).unwrap(),
            FirstAdmin::Existing
        );
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("z.sqlite")).unwrap();
        let FirstAdmin::Generated(p) = ensure_first_admin(&meta, None).unwrap() else {
            panic!("expected a generated password")
        };
        let (_, hash) = meta.password_hash("admin").unwrap().unwrap();
        assert!(verify_password(&p, &hash));
    }

    #[test]
    fn tokens_are_shown_once_and_found_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("z.sqlite")).unwrap();
        let u = meta.create_user("bot", None, Role::Member).unwrap();
        let (_, token) = create_token(&meta, u, "ci").unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(
            meta.token_user(&hash_secret(&token)).unwrap().unwrap().name,
            "bot"
        );
        assert!(
            meta.token_user(&token).unwrap().is_none(),
            "only the hash is stored"
        );
        let listed = &meta.list_tokens(None).unwrap()[0];
        assert!(token.starts_with(&listed.prefix) && listed.prefix.len() < 16);
    }
}
