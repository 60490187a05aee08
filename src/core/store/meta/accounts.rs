//! Accounts and access: users (with their role), groups, which groups may read which
//! knowledge base, browser sessions and API tokens.
//!
//! Only hashes of secrets are stored: argon2 for passwords (computed by [`crate::access`]),
//! SHA-256 for the random session ids and API tokens. Deleting a user, group or knowledge
//! base removes its memberships, grants, sessions and tokens with it (foreign keys cascade).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{KbId, MetaError, MetaStore, Result, now};

pub type UserId = i64;
pub type GroupId = i64;
pub type TokenId = i64;

/// How stale a token's `last_used_at` may get before a use writes it again.
const TOKEN_USE_RESOLUTION_SECS: i64 = 60;

/// Part of schema step 1 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    password_hash  TEXT,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    wecom_user     TEXT UNIQUE,
    created_at     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS user_groups (
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE TABLE IF NOT EXISTS kb_grants (
    kb_id     INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (kb_id, group_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
CREATE TABLE IF NOT EXISTS api_tokens (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
"#;

/// What a user may do: admins manage everything and read every knowledge base; members
/// read the knowledge bases granted to one of their groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    fn parse(s: &str) -> Role {
        if s == "admin" {
            Role::Admin
        } else {
            Role::Member
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!("unknown role `{other}`: use admin or member")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    /// Group names, sorted.
    pub groups: Vec<String>,
    /// The WeCom user id mapped to this user, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wecom_user: Option<String>,
    pub created_at: i64,
    /// The directory the account comes from (`ldap`), if it is not a local one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Locked out because the directory disabled or removed the account.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub members: u64,
    /// Knowledge bases this group may read, sorted.
    pub knowledge_bases: Vec<String>,
}

/// A live browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    /// The session's CSRF token, sent back by the page in a header on every write.
    pub csrf: String,
    pub expires_at: i64,
}

/// An API token as listed (never its secret, only the first characters to recognise it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: TokenId,
    pub user: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

/// Valid user and group names: 1–64 letters, digits, CJK, `-`, `_`, `.`, `@` (e-mail-like
/// names and WeCom ids fit).
pub fn valid_account_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// Valid WeCom userids, as the WeCom console allows them: 1–64 bytes of ASCII letters,
/// digits, `_`, `-`, `@` and `.`.
pub fn valid_wecom_userid(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@' | b'.'))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

const USER_COLUMNS: &str = "u.id, u.name, u.role, u.wecom_user, u.created_at,
    COALESCE((SELECT group_concat(name, char(10)) FROM
        (SELECT g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id
         WHERE ug.user_id = u.id ORDER BY g.name)), ''),
    (SELECT d.source FROM directory_accounts d WHERE d.user_id = u.id),
    COALESCE((SELECT d.disabled_at IS NOT NULL FROM directory_accounts d WHERE d.user_id = u.id), 0)";

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let groups: String = r.get(5)?;
    Ok(User {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&r.get::<_, String>(2)?),
        wecom_user: r.get(3)?,
        created_at: r.get(4)?,
        groups: groups
            .split('\n')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        directory: r.get(6)?,
        disabled: r.get(7)?,
    })
}

fn query_user(
    conn: &Connection,
    filter: &str,
    arg: &dyn rusqlite::ToSql,
) -> rusqlite::Result<Option<User>> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users u WHERE {filter}"),
        [arg],
        user_row,
    )
    .optional()
}

impl MetaStore {
    // ---- users ----

    /// Add a user. `password_hash` is `None` for accounts that cannot log in with a password
    /// (e.g. provisioned from WeCom).
    pub fn create_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        role: Role,
    ) -> Result<UserId> {
        if !valid_account_name(name) {
            return Err(MetaError::BadAccountName {
                kind: "user",
                name: name.into(),
            });
        }
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO users(name, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, password_hash, role.as_str(), now()],
        ) {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(e) if is_unique_violation(&e) => Err(MetaError::UserExists(name.into())),
            Err(e) => Err(self.err(e)),
        }
    }

    pub fn user(&self, id: UserId) -> Result<Option<User>> {
        self.read(|c| query_user(c, "u.id = ?1", &id))
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        self.read(|c| query_user(c, "u.name = ?1", &name))
    }

    /// The user `name`, or a clear error.
    pub fn require_user(&self, name: &str) -> Result<User> {
        self.user_by_name(name)?
            .ok_or_else(|| MetaError::NoSuchUser(name.into()))
    }

    /// Whether a new user could be linked to `wecom_user` (the checks of
    /// [`MetaStore::link_wecom_user`]), so that adding a user with a userid that cannot be
    /// linked fails before the user is made.
    pub fn check_wecom_userid(&self, wecom_user: &str) -> Result<()> {
        if !valid_wecom_userid(wecom_user) {
            return Err(MetaError::BadWecomUser(wecom_user.to_string()));
        }
        match self.user_by_wecom(wecom_user)? {
            Some(other) => Err(MetaError::WecomUserTaken {
                wecom_user: wecom_user.to_string(),
                user: other.name,
            }),
            None => Ok(()),
        }
    }

    /// The user linked to a WeCom userid. WeCom compares userids ignoring case, so does this.
    pub fn user_by_wecom(&self, wecom_user: &str) -> Result<Option<User>> {
        self.read(|c| query_user(c, "u.wecom_user = ?1 COLLATE NOCASE", &wecom_user))
    }

    /// Link `user` to a WeCom userid (their WeCom questions are answered as them), or unlink
    /// them (`None`). The rules every caller (CLI, admin API) shares: the userid is one the
    /// WeCom console allows, and one linked to another user (in any case) is refused with
    /// that user's name rather than taken from them.
    pub fn link_wecom_user(&self, user: UserId, wecom_user: Option<&str>) -> Result<()> {
        let conn = self.conn();
        let taken = |conn: &Connection, w: &str| -> Result<Option<MetaError>> {
            let other = query_user(conn, "u.wecom_user = ?1 COLLATE NOCASE", &w)
                .map_err(|e| self.err(e))?;
            Ok(other
                .filter(|o| o.id != user)
                .map(|o| MetaError::WecomUserTaken {
                    wecom_user: w.to_string(),
                    user: o.name,
                }))
        };
        if let Some(w) = wecom_user {
            if !valid_wecom_userid(w) {
                return Err(MetaError::BadWecomUser(w.to_string()));
            }
            if let Some(e) = taken(&conn, w)? {
                return Err(e);
            }
        }
        match conn.execute(
            "UPDATE users SET wecom_user = ?2 WHERE id = ?1",
            params![user, wecom_user],
        ) {
            Ok(_) => Ok(()),
            // Linked by another process (the CLI) between the check and the update.
            Err(e) if is_unique_violation(&e) => {
                let w = wecom_user.unwrap_or_default();
                Err(taken(&conn, w)?.unwrap_or_else(|| self.err(e)))
            }
            Err(e) => Err(self.err(e)),
        }
    }

    pub fn set_wecom_user(&self, user: UserId, wecom_user: Option<&str>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE users SET wecom_user = ?2 WHERE id = ?1",
                params![user, wecom_user],
            )
            .map(|_| ())
        })
    }

    /// The stored password hash of `name` (None: no such user, or no password).
    pub fn password_hash(&self, name: &str) -> Result<Option<(UserId, String)>> {
        self.with(|c| {
            c.query_row(
                "SELECT id, password_hash FROM users WHERE name = ?1 AND password_hash IS NOT NULL",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Replace a user's password hash; their sessions end (a changed password logs out
    /// everywhere).
    pub fn set_password(&self, user: UserId, password_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                params![user, password_hash],
            )?;
            c.execute("DELETE FROM sessions WHERE user_id = ?1", [user])
                .map(|_| ())
        })
    }

    /// Set a user's role. Demoting the last admin is refused ([`MetaError::LastAdmin`]):
    /// the check and the change are one `BEGIN IMMEDIATE` transaction, so two demotions or
    /// deletions at once (two admins, or the CLI beside the server) cannot both pass it.
    pub fn set_role(&self, user: UserId, role: Role) -> Result<()> {
        self.keeping_an_admin(user, role != Role::Admin, "demoted", |tx| {
            tx.execute(
                "UPDATE users SET role = ?2 WHERE id = ?1",
                params![user, role.as_str()],
            )
            .map(|_| ())
        })
    }

    /// Delete a user with their sessions and tokens; false when there was no such user.
    /// Deleting the last admin is refused, as in [`MetaStore::set_role`].
    pub fn delete_user(&self, user: UserId) -> Result<bool> {
        self.keeping_an_admin(user, true, "deleted", |tx| {
            tx.execute("DELETE FROM users WHERE id = ?1", [user])
                .map(|n| n > 0)
        })
    }

    /// Run `change` on `user` in one write transaction that first checks, when `removes_admin`,
    /// that another admin remains should `user` be one.
    fn keeping_an_admin<T>(
        &self,
        user: UserId,
        removes_admin: bool,
        what: &'static str,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        if removes_admin {
            let (is_admin, others): (bool, i64) = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM users WHERE id = ?1 AND role = 'admin'),
                            (SELECT COUNT(*) FROM users WHERE role = 'admin' AND id != ?1)",
                    [user],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| self.err(e))?;
            if is_admin && others == 0 {
                return Err(MetaError::LastAdmin(what));
            }
        }
        let out = change(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    pub fn list_users(&self) -> Result<Vec<User>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users u ORDER BY u.name"
            ))?;
            let rows = stmt.query_map([], user_row)?;
            rows.collect()
        })
    }

    /// How many admins exist (the last one may not be deleted or demoted).
    pub fn admin_count(&self) -> Result<u64> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
        })
    }

    // ---- groups ----

    pub fn create_group(&self, name: &str) -> Result<GroupId> {
        if !valid_account_name(name) {
            return Err(MetaError::BadAccountName {
                kind: "group",
                name: name.into(),
            });
        }
        let conn = self.conn();
        match conn.execute(
            "INSERT INTO groups(name, created_at) VALUES (?1, ?2)",
            params![name, now()],
        ) {
            Ok(_) => Ok(conn.last_insert_rowid()),
            Err(e) if is_unique_violation(&e) => Err(MetaError::GroupExists(name.into())),
            Err(e) => Err(self.err(e)),
        }
    }

    pub fn group_id(&self, name: &str) -> Result<Option<GroupId>> {
        self.with(|c| {
            c.query_row("SELECT id FROM groups WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    pub fn require_group(&self, name: &str) -> Result<GroupId> {
        self.group_id(name)?
            .ok_or_else(|| MetaError::NoSuchGroup(name.into()))
    }

    /// The group `name`, creating it when missing.
    pub fn ensure_group(&self, name: &str) -> Result<GroupId> {
        match self.group_id(name)? {
            Some(id) => Ok(id),
            None => self.create_group(name),
        }
    }

    pub fn delete_group(&self, group: GroupId) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM groups WHERE id = ?1", [group])
                .map(|n| n > 0)
        })
    }

    pub fn list_groups(&self) -> Result<Vec<Group>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT g.id, g.name,
                   (SELECT COUNT(*) FROM user_groups ug WHERE ug.group_id = g.id),
                   COALESCE((SELECT group_concat(name, char(10)) FROM
                     (SELECT k.name FROM kb_grants kg JOIN knowledge_bases k ON k.id = kg.kb_id
                      WHERE kg.group_id = g.id ORDER BY k.name)), '')
                 FROM groups g ORDER BY g.name",
            )?;
            let rows = stmt.query_map([], |r| {
                let kbs: String = r.get(3)?;
                Ok(Group {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    members: r.get::<_, i64>(2)? as u64,
                    knowledge_bases: kbs
                        .split('\n')
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })?;
            rows.collect()
        })
    }

    pub fn add_to_group(&self, user: UserId, group: GroupId) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO user_groups(user_id, group_id) VALUES (?1, ?2)",
                [user, group],
            )
            .map(|_| ())
        })
    }

    pub fn remove_from_group(&self, user: UserId, group: GroupId) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "DELETE FROM user_groups WHERE user_id = ?1 AND group_id = ?2",
                [user, group],
            )
            .map(|n| n > 0)
        })
    }

    // ---- knowledge-base grants ----

    /// Let `group` read `kb`.
    pub fn grant(&self, kb: KbId, group: GroupId) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO kb_grants(kb_id, group_id) VALUES (?1, ?2)",
                [kb, group],
            )
            .map(|_| ())
        })
    }

    pub fn revoke(&self, kb: KbId, group: GroupId) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "DELETE FROM kb_grants WHERE kb_id = ?1 AND group_id = ?2",
                [kb, group],
            )
            .map(|n| n > 0)
        })
    }

    /// Names of the groups that may read `kb`, sorted.
    pub fn kb_groups(&self, kb: KbId) -> Result<Vec<String>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT g.name FROM kb_grants kg JOIN groups g ON g.id = kg.group_id
                 WHERE kg.kb_id = ?1 ORDER BY g.name",
            )?;
            let rows = stmt.query_map([kb], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// The knowledge bases `user` may read: all of them for an admin, else those granted to
    /// one of the user's groups. Sorted by id.
    pub fn readable_kbs(&self, user: &User) -> Result<Vec<KbId>> {
        self.read(|c| {
            let sql = if user.is_admin() {
                "SELECT id FROM knowledge_bases WHERE ?1 = ?1 ORDER BY id"
            } else {
                "SELECT DISTINCT kg.kb_id FROM kb_grants kg
                 JOIN user_groups ug ON ug.group_id = kg.group_id
                 WHERE ug.user_id = ?1 ORDER BY kg.kb_id"
            };
            let mut stmt = c.prepare(sql)?;
            let rows = stmt.query_map([user.id], |r| r.get(0))?;
            rows.collect()
        })
    }

    // ---- sessions ----

    pub fn create_session(
        &self,
        id_hash: &str,
        user: UserId,
        csrf: &str,
        expires_at: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now()])?;
            c.execute(
                "INSERT INTO sessions(id_hash, user_id, csrf, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, user, csrf, now(), expires_at],
            )
            .map(|_| ())
        })
    }

    /// The live session with this id hash (expired ones are not returned).
    pub fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let found: Option<(UserId, String, i64)> = self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT user_id, csrf, expires_at FROM sessions
                     WHERE id_hash = ?1 AND expires_at > ?2 AND {}",
                    super::directory::NOT_DISABLED.replace("{col}", "sessions.user_id")
                ),
                params![id_hash, now()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        let Some((user, csrf, expires_at)) = found else {
            return Ok(None);
        };
        Ok(self.user(user)?.map(|user| Session {
            user,
            csrf,
            expires_at,
        }))
    }

    pub fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])
                .map(|_| ())
        })
    }

    // ---- API tokens ----

    pub fn create_token(
        &self,
        user: UserId,
        name: &str,
        token_hash: &str,
        prefix: &str,
    ) -> Result<TokenId> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO api_tokens(user_id, name, token_hash, prefix, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, name, token_hash, prefix, now()],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// The user of a live (not revoked) token, recording its use.
    pub fn token_user(&self, token_hash: &str) -> Result<Option<User>> {
        let found: Option<(UserId, Option<i64>)> = self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT user_id, last_used_at FROM api_tokens
                     WHERE token_hash = ?1 AND revoked_at IS NULL AND {}",
                    super::directory::NOT_DISABLED.replace("{col}", "api_tokens.user_id")
                ),
                [token_hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        let Some((id, last_used)) = found else {
            return Ok(None);
        };
        // "Last used" is shown to the minute: a token used all the time is written at most
        // once a minute, not on every request (each write waits for the writer connection).
        let now = now();
        if last_used.is_none_or(|t| now - t >= TOKEN_USE_RESOLUTION_SECS) {
            self.with(|c| {
                c.execute(
                    "UPDATE api_tokens SET last_used_at = ?2 WHERE token_hash = ?1",
                    params![token_hash, now],
                )
            })?;
        }
        self.user(id)
    }

    /// Tokens of one user, or of everyone (`None`), newest first.
    pub fn list_tokens(&self, user: Option<UserId>) -> Result<Vec<ApiToken>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT t.id, u.name, t.name, t.prefix, t.created_at, t.last_used_at,
                        t.revoked_at IS NOT NULL
                 FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE ?1 IS NULL OR t.user_id = ?1 ORDER BY t.id DESC",
            )?;
            let rows = stmt.query_map([user], |r| {
                Ok(ApiToken {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    name: r.get(2)?,
                    prefix: r.get(3)?,
                    created_at: r.get(4)?,
                    last_used_at: r.get(5)?,
                    revoked: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The owner of token `id`, if it exists.
    pub fn token_owner(&self, id: TokenId) -> Result<Option<UserId>> {
        self.with(|c| {
            c.query_row("SELECT user_id FROM api_tokens WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// Revoke a token; false when there is no such live token.
    pub fn revoke_token(&self, id: TokenId) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now()],
            )
            .map(|n| n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("zhiku.sqlite")).unwrap();
        (dir, s)
    }

    /// The last-admin rule holds when two admins are removed at the same moment through two
    /// connections (the server and the CLI on one data folder): one removal wins, the other
    /// is refused, and an admin remains. Repeated, since a race shows only sometimes.
    #[test]
    fn two_concurrent_removals_keep_an_admin() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("zhiku.sqlite");
            let s = MetaStore::open(&path).unwrap();
            let a = s.create_user("a", None, Role::Admin).unwrap();
            let b = s.create_user("b", None, Role::Admin).unwrap();
            let other = MetaStore::open(&path).unwrap();
            let start = std::sync::Barrier::new(2);
            let (ra, rb) = std::thread::scope(|t| {
                let ha = t.spawn(|| {
                    start.wait();
                    s.delete_user(a)
                });
                let hb = t.spawn(|| {
                    start.wait();
                    if round % 2 == 0 {
                        other.delete_user(b).map(|_| ())
                    } else {
                        other.set_role(b, Role::Member)
                    }
                });
                (ha.join().unwrap(), hb.join().unwrap())
            });
            let refused = [ra.is_err(), rb.is_err()];
            assert_eq!(
                refused.iter().filter(|r| **r).count(),
                1,
                "round {round}: exactly one removal is refused: {ra:?} {rb:?}"
            );
            for e in [ra.err(), rb.err()].into_iter().flatten() {
                assert!(matches!(e, MetaError::LastAdmin(_)), "{e}");
            }
            assert_eq!(s.admin_count().unwrap(), 1, "round {round}");
        }
    }

    #[test]
    fn the_last_admin_is_neither_deleted_nor_demoted() {
        let (_d, s) = store();
        let root = s.create_user("root", None, Role::Admin).unwrap();
        let m = s.create_user("m", None, Role::Member).unwrap();
        assert!(matches!(
            s.delete_user(root),
            Err(MetaError::LastAdmin("deleted"))
        ));
        assert!(matches!(
            s.set_role(root, Role::Member),
            Err(MetaError::LastAdmin("demoted"))
        ));
        // Members come and go; an admin may be demoted once another exists.
        s.set_role(m, Role::Admin).unwrap();
        s.set_role(root, Role::Member).unwrap();
        assert!(s.delete_user(root).unwrap());
        assert!(!s.delete_user(root).unwrap(), "already gone");
        assert_eq!(s.admin_count().unwrap(), 1);
    }

    #[test]
    fn members_read_only_granted_kbs_and_admins_read_all() {
        let (_d, s) = store();
        let hr = s.create_kb("hr").unwrap();
        let it = s.create_kb("it").unwrap();
        let finance = s.create_kb("finance").unwrap();
        let staff = s.create_group("staff").unwrap();
        let ops = s.create_group("ops").unwrap();
        s.grant(hr, staff).unwrap();
        s.grant(it, ops).unwrap();
        s.grant(it, staff).unwrap();
        let alice = s.create_user("alice", Some("h"), Role::Member).unwrap();
        let bob = s.create_user("bob", Some("h"), Role::Member).unwrap();
        s.create_user("root", Some("h"), Role::Admin).unwrap();
        s.add_to_group(alice, staff).unwrap();
        s.add_to_group(alice, ops).unwrap();
        s.add_to_group(bob, ops).unwrap();

        let alice = s.require_user("alice").unwrap();
        assert_eq!(alice.groups, vec!["ops", "staff"]);
        assert_eq!(s.readable_kbs(&alice).unwrap(), vec![hr, it]);
        assert_eq!(
            s.readable_kbs(&s.require_user("bob").unwrap()).unwrap(),
            vec![it]
        );
        let root = s.require_user("root").unwrap();
        assert_eq!(s.readable_kbs(&root).unwrap(), vec![hr, it, finance]);

        // Revoking and removing take effect at once.
        s.revoke(it, ops).unwrap();
        assert!(
            s.readable_kbs(&s.require_user("bob").unwrap())
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.kb_groups(it).unwrap(), vec!["staff"]);
        s.delete_group(staff).unwrap();
        assert!(
            s.readable_kbs(&s.require_user("alice").unwrap())
                .unwrap()
                .is_empty()
        );
        let groups = s.list_groups().unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].members, 2);
    }

    #[test]
    fn names_are_checked_and_unique() {
        let (_d, s) = store();
        s.create_user("张三", None, Role::Member).unwrap();
        assert!(matches!(
            s.create_user("张三", None, Role::Member),
            Err(MetaError::UserExists(_))
        ));
        for bad in ["", "a b", "../x", &"x".repeat(65)] {
            assert!(
                matches!(
                    s.create_user(bad, None, Role::Member),
                    Err(MetaError::BadAccountName { .. })
                ),
                "{bad:?}"
            );
        }
        s.create_group("wecom").unwrap();
        assert!(matches!(
            s.create_group("wecom"),
            Err(MetaError::GroupExists(_))
        ));
        assert!(matches!(
            s.require_group("nope"),
            Err(MetaError::NoSuchGroup(_))
        ));
        let e = s.require_user("nobody").unwrap_err().to_string();
        assert!(e.contains("zhiku user add nobody"), "{e}");
    }

    #[test]
    fn sessions_expire_and_end_with_a_new_password() {
        let (_d, s) = store();
        let u = s.create_user("alice", Some("h1"), Role::Member).unwrap();
        s.create_session("live", u, "csrf1", now() + 3600).unwrap();
        s.create_session("old", u, "csrf2", now() - 1).unwrap();
        let live = s.session("live").unwrap().unwrap();
        assert_eq!(
            (live.user.name.as_str(), live.csrf.as_str()),
            ("alice", "csrf1")
        );
        assert!(s.session("old").unwrap().is_none());
        assert!(s.session("nope").unwrap().is_none());
        s.set_password(u, "h2").unwrap();
        assert!(s.session("live").unwrap().is_none());
        assert_eq!(s.password_hash("alice").unwrap().unwrap().1, "h2");
    }

    #[test]
    fn tokens_revoke_and_go_with_their_user() {
        let (_d, s) = store();
        let u = s.create_user("bot", None, Role::Member).unwrap();
        let t = s.create_token(u, "ci", "hash1", "zk_ab12").unwrap();
        assert_eq!(s.token_user("hash1").unwrap().unwrap().name, "bot");
        let listed = s.list_tokens(Some(u)).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].last_used_at.is_some() && !listed[0].revoked);
        assert!(s.revoke_token(t).unwrap());
        assert!(!s.revoke_token(t).unwrap());
        assert!(s.token_user("hash1").unwrap().is_none());
        s.create_token(u, "other", "hash2", "zk_cd34").unwrap();
        s.delete_user(u).unwrap();
        assert!(s.token_user("hash2").unwrap().is_none());
        assert!(s.list_tokens(None).unwrap().is_empty());
    }
}
