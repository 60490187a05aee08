//! WeCom messages and callback nonces, so that an answer goes out once.
//!
//! A message's state, by MsgId (WeCom retries a callback with the same MsgId):
//!
//! ```text
//! accepted ──(answered, about to send)──> sending ──> sent
//!     │                                      └──────> failed   (WeCom refused it)
//!     ├──(cannot answer or send)──────────────────> failed
//!     └──(found at start-up, too old to answer)───> expired
//! ```
//!
//! `accepted` is written before the callback is answered, so a retry or a restart never
//! starts a second answer. At start-up, `accepted` messages are answered (the process
//! stopped before their answer was sent) unless they are older than
//! `wecom.recover_max_age_secs`: after a long outage an answer to a question asked hours ago
//! would arrive out of the blue, so those become `expired`. `sending` ones become `unknown`:
//! their answer may or may not have reached WeCom, and sending it twice is worse than once
//! too few.
//!
//! Nonces are remembered while their callback's timestamp is inside the accepted window, so
//! a replayed callback is refused; older ones cannot pass the timestamp check anyway.

use rusqlite::{Connection, OptionalExtension, params};

use super::{MetaStore, Result, now};

/// Part of schema step 1 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS wecom_messages (
    msg_id      TEXT PRIMARY KEY,
    from_user   TEXT NOT NULL,
    content     TEXT NOT NULL,
    state       TEXT NOT NULL
                CHECK (state IN ('accepted', 'sending', 'sent', 'failed', 'unknown', 'expired')),
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS wecom_messages_state ON wecom_messages(state);
CREATE INDEX IF NOT EXISTS wecom_messages_created ON wecom_messages(created_at);
CREATE TABLE IF NOT EXISTS wecom_nonces (
    nonce      TEXT PRIMARY KEY,
    timestamp  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS wecom_nonces_timestamp ON wecom_nonces(timestamp);
"#;

/// Finished messages are forgotten after this long (WeCom retries within seconds).
const KEEP_SECS: i64 = 7 * 24 * 3600;

/// Bring a `wecom_messages` table made before the `expired` state into the current schema:
/// SQLite cannot change a CHECK constraint in place, so the table is rebuilt with its rows,
/// inside schema step 1's transaction, after [`SCHEMA`].
pub(super) fn upgrade(conn: &Connection) -> rusqlite::Result<()> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'wecom_messages'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if sql.is_none_or(|s| s.contains("'expired'")) {
        return Ok(());
    }
    conn.execute_batch(
        "ALTER TABLE wecom_messages RENAME TO wecom_messages_before_expired;
         DROP INDEX IF EXISTS wecom_messages_state;
         DROP INDEX IF EXISTS wecom_messages_created;",
    )?;
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(
        "INSERT INTO wecom_messages
             (msg_id, from_user, content, state, error, created_at, updated_at)
         SELECT msg_id, from_user, content, state, error, created_at, updated_at
         FROM wecom_messages_before_expired;
         DROP TABLE wecom_messages_before_expired;",
    )
}

/// What start-up recovery found ([`MetaStore::wecom_recover`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WecomRecovery {
    /// Messages whose answer was being sent: now `unknown`, not sent again.
    pub unknown: usize,
    /// Accepted messages too old to answer: now `expired`.
    pub expired: usize,
    /// Accepted messages to answer now, oldest first.
    pub waiting: Vec<WecomMessage>,
}

/// A message waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WecomMessage {
    pub msg_id: String,
    /// The sender's WeCom userid.
    pub from_user: String,
    /// The question, or `""` for a message that is not text.
    pub content: String,
}

impl MetaStore {
    /// Record a new message as `accepted`; false when its MsgId was seen before (a retry).
    pub fn wecom_accept(&self, msg: &WecomMessage) -> Result<bool> {
        self.with(|c| {
            let t = now();
            c.execute(
                "DELETE FROM wecom_messages WHERE created_at < ?1 AND state != 'accepted'",
                [t - KEEP_SECS],
            )?;
            let n = c.execute(
                "INSERT OR IGNORE INTO wecom_messages
                     (msg_id, from_user, content, state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'accepted', ?4, ?4)",
                params![msg.msg_id, msg.from_user, msg.content, t],
            )?;
            Ok(n == 1)
        })
    }

    /// Move `accepted` → `sending`; false when the message is not `accepted` (someone else
    /// is sending it, or it is finished): then it must not be sent.
    pub fn wecom_start_sending(&self, msg_id: &str) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "UPDATE wecom_messages SET state = 'sending', updated_at = ?2
                 WHERE msg_id = ?1 AND state = 'accepted'",
                params![msg_id, now()],
            )
            .map(|n| n == 1)
        })
    }

    /// The message's answer went out (`error` None) or cannot (`Some`).
    pub fn wecom_finish(&self, msg_id: &str, error: Option<&str>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE wecom_messages SET state = ?2, error = ?3, updated_at = ?4
                 WHERE msg_id = ?1",
                params![
                    msg_id,
                    if error.is_some() { "failed" } else { "sent" },
                    error,
                    now()
                ],
            )
            .map(|_| ())
        })
    }

    /// The state of a message (`accepted`, `sending`, `sent`, `failed`, `unknown`,
    /// `expired`).
    pub fn wecom_state(&self, msg_id: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT state FROM wecom_messages WHERE msg_id = ?1",
                [msg_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// At start-up: messages a stopped process was sending become `unknown`, `accepted`
    /// ones accepted more than `max_age_secs` ago become `expired`, and the other
    /// `accepted` ones are returned to be answered.
    pub fn wecom_recover(&self, max_age_secs: u64) -> Result<WecomRecovery> {
        self.with(|c| {
            let t = now();
            let unknown = c.execute(
                "UPDATE wecom_messages SET state = 'unknown', updated_at = ?1
                 WHERE state = 'sending'",
                [t],
            )?;
            let oldest = t.saturating_sub(max_age_secs.min(i64::MAX as u64) as i64);
            let expired = c.execute(
                "UPDATE wecom_messages SET state = 'expired', updated_at = ?1
                 WHERE state = 'accepted' AND created_at < ?2",
                [t, oldest],
            )?;
            let mut stmt = c.prepare(
                "SELECT msg_id, from_user, content FROM wecom_messages
                 WHERE state = 'accepted' ORDER BY created_at, rowid",
            )?;
            let waiting = stmt
                .query_map([], |r| {
                    Ok(WecomMessage {
                        msg_id: r.get(0)?,
                        from_user: r.get(1)?,
                        content: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(WecomRecovery {
                unknown,
                expired,
                waiting,
            })
        })
    }

    /// Remember a callback's nonce; false when it was already used by a callback whose
    /// timestamp is still inside the window (a replay). Nonces of callbacks older than
    /// `now - max_skew` are forgotten.
    pub fn wecom_fresh_nonce(&self, nonce: &str, timestamp: i64, max_skew: u64) -> Result<bool> {
        self.with(|c| {
            let oldest = now().saturating_sub(max_skew.min(i64::MAX as u64) as i64);
            c.execute("DELETE FROM wecom_nonces WHERE timestamp < ?1", [oldest])?;
            c.execute(
                "INSERT OR IGNORE INTO wecom_nonces(nonce, timestamp) VALUES (?1, ?2)",
                params![nonce, timestamp],
            )
            .map(|n| n == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("meta.db")).unwrap();
        (dir, s)
    }

    fn msg(id: &str) -> WecomMessage {
        WecomMessage {
            msg_id: id.into(),
            from_user: "ZhangSan".into(),
            content: "年假几天？".into(),
        }
    }

    #[test]
    fn a_message_is_accepted_and_sent_once() {
        let (_d, s) = store();
        assert!(s.wecom_accept(&msg("1")).unwrap());
        assert!(!s.wecom_accept(&msg("1")).unwrap(), "a retry is not new");
        assert!(s.wecom_start_sending("1").unwrap());
        assert!(
            !s.wecom_start_sending("1").unwrap(),
            "sent by one task only"
        );
        s.wecom_finish("1", None).unwrap();
        assert_eq!(s.wecom_state("1").unwrap().as_deref(), Some("sent"));
        assert!(!s.wecom_accept(&msg("1")).unwrap(), "still known once sent");
        assert!(!s.wecom_start_sending("1").unwrap());
        s.wecom_finish("2", Some("nobody")).unwrap();
        assert_eq!(s.wecom_state("2").unwrap(), None);
    }

    #[test]
    fn recovery_answers_accepted_and_never_resends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let s = MetaStore::open(&path).unwrap();
            for id in ["a", "b", "c"] {
                s.wecom_accept(&msg(id)).unwrap();
            }
            s.wecom_start_sending("b").unwrap();
            s.wecom_start_sending("c").unwrap();
            s.wecom_finish("c", None).unwrap();
        }
        let s = MetaStore::open(&path).unwrap();
        let r = s.wecom_recover(1800).unwrap();
        assert_eq!(r.unknown, 1);
        assert_eq!(r.expired, 0);
        assert_eq!(r.waiting, vec![msg("a")]);
        assert_eq!(s.wecom_state("b").unwrap().as_deref(), Some("unknown"));
        assert!(!s.wecom_start_sending("b").unwrap());
        assert_eq!(s.wecom_state("c").unwrap().as_deref(), Some("sent"));
    }

    /// A table made before the `expired` state keeps its rows and takes the new state.
    #[test]
    fn an_old_table_is_upgraded_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE wecom_messages (
                     msg_id TEXT PRIMARY KEY, from_user TEXT NOT NULL, content TEXT NOT NULL,
                     state TEXT NOT NULL
                         CHECK (state IN ('accepted', 'sending', 'sent', 'failed', 'unknown')),
                     error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
                 CREATE INDEX wecom_messages_state ON wecom_messages(state);
                 CREATE INDEX wecom_messages_created ON wecom_messages(created_at);
                 INSERT INTO wecom_messages VALUES ('old', 'ZhangSan', '年假几天？', 'accepted',
                     NULL, 1000, 1000);
                 INSERT INTO wecom_messages VALUES ('done', 'ZhangSan', '年假几天？', 'sent',
                     NULL, 1000, 1000);",
            )
            .unwrap();
        }
        let s = MetaStore::open(&path).unwrap();
        assert_eq!(s.wecom_state("done").unwrap().as_deref(), Some("sent"));
        let r = s.wecom_recover(1800).unwrap();
        assert_eq!((r.expired, r.waiting.len()), (1, 0));
        assert_eq!(s.wecom_state("old").unwrap().as_deref(), Some("expired"));
        drop(s);
        // Opening again finds the current schema and changes nothing.
        let s = MetaStore::open(&path).unwrap();
        assert_eq!(s.wecom_state("old").unwrap().as_deref(), Some("expired"));
        let indexes: i64 = s
            .with(|c| {
                c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index'
                     AND tbl_name = 'wecom_messages' AND name LIKE 'wecom_messages_%'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(indexes, 2);
    }

    /// Accepted messages older than the limit are expired, not answered; younger ones are.
    #[test]
    fn recovery_expires_messages_older_than_the_limit() {
        let (_d, s) = store();
        for id in ["old", "new"] {
            s.wecom_accept(&msg(id)).unwrap();
        }
        s.with(|c| {
            c.execute(
                "UPDATE wecom_messages SET created_at = created_at - 3601 WHERE msg_id = 'old'",
                [],
            )
        })
        .unwrap();
        let r = s.wecom_recover(3600).unwrap();
        assert_eq!(r.expired, 1);
        assert_eq!(r.waiting, vec![msg("new")]);
        assert_eq!(s.wecom_state("old").unwrap().as_deref(), Some("expired"));
        assert!(!s.wecom_start_sending("old").unwrap(), "expired is final");
    }

    #[test]
    fn repeated_nonces_are_refused_inside_the_window() {
        let (_d, s) = store();
        let t = now();
        assert!(s.wecom_fresh_nonce("263014780", t, 300).unwrap());
        assert!(!s.wecom_fresh_nonce("263014780", t, 300).unwrap());
        assert!(!s.wecom_fresh_nonce("263014780", t + 5, 300).unwrap());
        assert!(s.wecom_fresh_nonce("263014781", t, 300).unwrap());
        // A nonce whose callback has left the window is forgotten (the timestamp check
        // refuses such a callback before its nonce is looked at).
        assert!(s.wecom_fresh_nonce("old", t - 1000, 300).unwrap());
        assert!(s.wecom_fresh_nonce("old", t - 1000, 300).unwrap());
    }
}
