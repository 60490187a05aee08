//! WeCom messages and callback nonces, so that an answer goes out once.
//!
//! A message's state, by MsgId (WeCom retries a callback with the same MsgId):
//!
//! ```text
//! accepted ──(answered, about to send)──> sending ──> sent
//!     │                                      └──────> failed   (WeCom refused it)
//!     └──(cannot answer or send)──────────────────> failed
//! ```
//!
//! `accepted` is written before the callback is answered, so a retry or a restart never
//! starts a second answer. At start-up, `accepted` messages are answered (the process
//! stopped before their answer was sent) and `sending` ones become `unknown`: their answer
//! may or may not have reached WeCom, and sending it twice is worse than once too few.
//!
//! Nonces are remembered while their callback's timestamp is inside the accepted window, so
//! a replayed callback is refused; older ones cannot pass the timestamp check anyway.

use rusqlite::{OptionalExtension, params};

use super::{MetaStore, Result, now};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS wecom_messages (
    msg_id      TEXT PRIMARY KEY,
    from_user   TEXT NOT NULL,
    content     TEXT NOT NULL,
    state       TEXT NOT NULL
                CHECK (state IN ('accepted', 'sending', 'sent', 'failed', 'unknown')),
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

    /// The state of a message (`accepted`, `sending`, `sent`, `failed`, `unknown`).
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

    /// At start-up: messages a stopped process was sending become `unknown` (returns how
    /// many), and the `accepted` ones, oldest first, are returned to be answered.
    pub fn wecom_recover(&self) -> Result<(usize, Vec<WecomMessage>)> {
        self.with(|c| {
            let unknown = c.execute(
                "UPDATE wecom_messages SET state = 'unknown', updated_at = ?1
                 WHERE state = 'sending'",
                [now()],
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
            Ok((unknown, waiting))
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
        let (unknown, waiting) = s.wecom_recover().unwrap();
        assert_eq!(unknown, 1);
        assert_eq!(waiting, vec![msg("a")]);
        assert_eq!(s.wecom_state("b").unwrap().as_deref(), Some("unknown"));
        assert!(!s.wecom_start_sending("b").unwrap());
        assert_eq!(s.wecom_state("c").unwrap().as_deref(), Some("sent"));
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
