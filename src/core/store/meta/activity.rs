//! What people do with the assistant: conversations (the web chat's history) and their
//! messages, feedback on answers, the query log (every question, however it came in) and
//! the answers the content filter blocked.
//!
//! Conversations belong to one user and go with them (foreign keys cascade: deleting a user
//! deletes their conversations, messages and feedback). The two logs keep the user's name
//! as it was, so they outlive deleted accounts and renamed knowledge bases.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{MetaStore, Result, UserId, now};

pub type ConversationId = i64;
pub type MessageId = i64;

/// Part of schema step 1 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS conversations (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title       TEXT NOT NULL DEFAULT '',
    kb          TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations(user_id, updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id                   INTEGER PRIMARY KEY,
    conversation_id      INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    question             TEXT NOT NULL,
    standalone_question  TEXT NOT NULL,
    answer               TEXT NOT NULL,
    citations            TEXT NOT NULL DEFAULT '[]',
    outcome              TEXT NOT NULL,
    notice               TEXT,
    retrieval_ms         REAL,
    ttft_ms              REAL,
    total_ms             REAL,
    created_at           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, id);
CREATE TABLE IF NOT EXISTS feedback (
    message_id  INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    rating      INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    comment     TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_at ON feedback(at);
CREATE TABLE IF NOT EXISTS query_log (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    user_id       INTEGER,
    user_name     TEXT NOT NULL,
    kbs           TEXT NOT NULL DEFAULT '[]',
    question      TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    citations     INTEGER NOT NULL DEFAULT 0,
    retrieval_ms  REAL,
    total_ms      REAL,
    ttft_ms       REAL,
    via           TEXT NOT NULL CHECK (via IN ('web', 'api', 'openai', 'wecom')),
    flags         TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS query_log_user ON query_log(user_name, id);
CREATE TABLE IF NOT EXISTS blocked_answers (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    user_name  TEXT NOT NULL,
    via        TEXT NOT NULL,
    question   TEXT NOT NULL,
    word       TEXT NOT NULL,
    answer     TEXT NOT NULL
);
"#;

/// How a question came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The web chat (a browser session).
    Web,
    /// The REST API with an API token.
    Api,
    /// The OpenAI-compatible API (`/v1/chat/completions`).
    Openai,
    /// WeCom (企业微信) messages.
    Wecom,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Web => "web",
            Via::Api => "api",
            Via::Openai => "openai",
            Via::Wecom => "wecom",
        }
    }
}

/// A conversation of the web chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: ConversationId,
    /// Empty until the first question names it (or its owner does).
    pub title: String,
    /// The knowledge base it asks (`null`: every one its owner may read).
    pub kb: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last question or rename.
    pub updated_at: i64,
}

/// Feedback on an answer: thumbs up (1) or down (-1), with an optional comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Feedback {
    pub rating: i8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One turn of a conversation: a question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub question: String,
    /// The question retrieval ran with (a follow-up rewritten with the turns before it);
    /// the history of the next question.
    #[serde(skip)]
    pub standalone_question: String,
    pub answer: String,
    /// The cited passages, as in the answer (`rag::Citation`).
    #[schema(value_type = Vec<Object>)]
    pub citations: serde_json::Value,
    /// generated | extractive | not_found | blocked
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub feedback: Option<Feedback>,
}

/// A finished turn to store.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub question: &'a str,
    pub standalone_question: &'a str,
    pub answer: &'a str,
    /// JSON array of citations.
    pub citations: &'a str,
    pub outcome: &'a str,
    pub notice: Option<&'a str>,
    pub retrieval_ms: f64,
    pub ttft_ms: Option<f64>,
    pub total_ms: f64,
}

/// Feedback with what it is about, for admins.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FeedbackEntry {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    /// Who gave it.
    pub user: String,
    pub rating: i8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub question: String,
    pub answer: String,
    pub outcome: String,
    /// Unix seconds.
    pub at: i64,
}

/// A question to record in the query log.
#[derive(Debug, Clone)]
pub struct QueryRecord<'a> {
    pub user_id: Option<UserId>,
    pub user: &'a str,
    /// Names of the knowledge bases searched.
    pub kbs: &'a [String],
    pub question: &'a str,
    /// The answer's outcome, or `error`.
    pub outcome: &'a str,
    pub citations: usize,
    pub retrieval_ms: Option<f64>,
    pub total_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub via: Via,
    /// Instruction-like text found in the question or passages, described.
    pub flags: &'a [String],
}

/// One row of the query log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueryEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub user: String,
    pub kbs: Vec<String>,
    pub question: String,
    /// generated | extractive | not_found | blocked | error
    pub outcome: String,
    pub citations: u32,
    pub retrieval_ms: Option<f64>,
    pub total_ms: Option<f64>,
    /// Time to the first generated text.
    pub ttft_ms: Option<f64>,
    pub via: Via,
    /// Instruction-like text found in the question or the passages (possible prompt
    /// injection), e.g. `question: “忽略以上指令”`.
    pub flags: Vec<String>,
}

/// Which rows of the query log to list.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter<'a> {
    pub user: Option<&'a str>,
    pub kb: Option<&'a str>,
    pub limit: usize,
    pub offset: usize,
}

/// An answer the content filter blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BlockedEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    pub user: String,
    pub via: Via,
    pub question: String,
    /// The blocked word that matched (as configured).
    pub word: String,
    /// The answer as far as it was written when it was stopped (never shown to the user).
    pub answer: String,
}

fn parse_via(s: &str) -> Via {
    match s {
        "web" => Via::Web,
        "openai" => Via::Openai,
        "wecom" => Via::Wecom,
        _ => Via::Api,
    }
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

fn conversation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        title: r.get(1)?,
        kb: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

const CONVERSATION_COLS: &str = "id, title, kb, created_at, updated_at";

impl MetaStore {
    // ---- conversations ----

    pub fn create_conversation(
        &self,
        user: UserId,
        title: &str,
        kb: Option<&str>,
    ) -> Result<Conversation> {
        self.with(|c| {
            let at = now();
            c.execute(
                "INSERT INTO conversations(user_id, title, kb, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![user, title, kb, at],
            )?;
            Ok(Conversation {
                id: c.last_insert_rowid(),
                title: title.to_string(),
                kb: kb.map(str::to_string),
                created_at: at,
                updated_at: at,
            })
        })
    }

    /// A conversation of `user` (`None` when it does not exist or is someone else's).
    pub fn conversation(&self, user: UserId, id: ConversationId) -> Result<Option<Conversation>> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?1 AND user_id = ?2"
                ),
                params![id, user],
                conversation_row,
            )
            .optional()
        })
    }

    /// `user`'s conversations, most recently used first.
    pub fn conversations(
        &self,
        user: UserId,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {CONVERSATION_COLS} FROM conversations WHERE user_id = ?1
                 ORDER BY updated_at DESC, id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            let rows =
                stmt.query_map(params![user, limit as i64, offset as i64], conversation_row)?;
            rows.collect()
        })
    }

    /// Rename one of `user`'s conversations; `None` when it is not theirs.
    pub fn rename_conversation(
        &self,
        user: UserId,
        id: ConversationId,
        title: &str,
    ) -> Result<Option<Conversation>> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE conversations SET title = ?3, updated_at = ?4
                 WHERE id = ?1 AND user_id = ?2",
                params![id, user, title, now()],
            )
        })?;
        if changed == 0 {
            return Ok(None);
        }
        self.conversation(user, id)
    }

    /// Delete one of `user`'s conversations with its messages and feedback; false when it is
    /// not theirs.
    pub fn delete_conversation(&self, user: UserId, id: ConversationId) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "DELETE FROM conversations WHERE id = ?1 AND user_id = ?2",
                params![id, user],
            )
            .map(|n| n > 0)
        })
    }

    /// Store a finished turn; an untitled conversation is named after its first question
    /// (cut to 40 characters). Returns the message id.
    pub fn add_message(
        &self,
        conversation: ConversationId,
        m: &NewMessage<'_>,
    ) -> Result<MessageId> {
        let mut conn = self.conn();
        let run = |tx: &rusqlite::Transaction<'_>| -> rusqlite::Result<MessageId> {
            let at = now();
            tx.execute(
                "INSERT INTO messages(conversation_id, question, standalone_question, answer,
                        citations, outcome, notice, retrieval_ms, ttft_ms, total_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    conversation,
                    m.question,
                    m.standalone_question,
                    m.answer,
                    m.citations,
                    m.outcome,
                    m.notice,
                    m.retrieval_ms,
                    m.ttft_ms,
                    m.total_ms,
                    at
                ],
            )?;
            let id = tx.last_insert_rowid();
            let title: String = m.question.trim().chars().take(40).collect();
            tx.execute(
                "UPDATE conversations SET updated_at = ?2,
                        title = CASE WHEN title = '' THEN ?3 ELSE title END
                 WHERE id = ?1",
                params![conversation, at, title],
            )?;
            Ok(id)
        };
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let id = run(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// The turns of a conversation, oldest first, with their feedback. Only the last `last`
    /// when given.
    pub fn messages(
        &self,
        conversation: ConversationId,
        last: Option<usize>,
    ) -> Result<Vec<Message>> {
        let limit = last.map_or(-1, |n| n as i64);
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT * FROM (
                   SELECT m.id, m.question, m.standalone_question, m.answer, m.citations,
                          m.outcome, m.notice, m.created_at, f.rating, f.comment
                   FROM messages m LEFT JOIN feedback f ON f.message_id = m.id
                   WHERE m.conversation_id = ?1 ORDER BY m.id DESC LIMIT ?2)
                 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![conversation, limit], |r| {
                let citations: String = r.get(4)?;
                let rating: Option<i64> = r.get(8)?;
                let comment: Option<String> = r.get(9)?;
                Ok(Message {
                    id: r.get(0)?,
                    question: r.get(1)?,
                    standalone_question: r.get(2)?,
                    answer: r.get(3)?,
                    citations: serde_json::from_str(&citations)
                        .unwrap_or_else(|_| serde_json::json!([])),
                    outcome: r.get(5)?,
                    notice: r.get(6)?,
                    created_at: r.get(7)?,
                    feedback: rating.map(|rating| Feedback {
                        rating: rating as i8,
                        comment,
                    }),
                })
            })?;
            rows.collect()
        })
    }

    // ---- feedback ----

    /// Record `user`'s feedback on one of their own messages, replacing earlier feedback on
    /// it; false when the message is not theirs.
    pub fn set_feedback(&self, user: UserId, message: MessageId, f: &Feedback) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "INSERT INTO feedback(message_id, user_id, rating, comment, at)
                 SELECT m.id, ?2, ?3, ?4, ?5 FROM messages m
                   JOIN conversations v ON v.id = m.conversation_id
                 WHERE m.id = ?1 AND v.user_id = ?2
                 ON CONFLICT(message_id) DO UPDATE SET
                   rating = excluded.rating, comment = excluded.comment, at = excluded.at",
                params![message, user, f.rating as i64, f.comment, now()],
            )
            .map(|n| n > 0)
        })
    }

    /// All feedback, newest first, with the question and answer it is about.
    pub fn feedback_log(&self, limit: usize, offset: usize) -> Result<Vec<FeedbackEntry>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT f.message_id, m.conversation_id, u.name, f.rating, f.comment,
                        m.question, m.answer, m.outcome, f.at
                 FROM feedback f JOIN messages m ON m.id = f.message_id
                   JOIN users u ON u.id = f.user_id
                 ORDER BY f.at DESC, f.message_id DESC LIMIT ?1 OFFSET ?2",
            )?;
            let rows = stmt.query_map(params![limit as i64, offset as i64], |r| {
                Ok(FeedbackEntry {
                    message_id: r.get(0)?,
                    conversation_id: r.get(1)?,
                    user: r.get(2)?,
                    rating: r.get::<_, i64>(3)? as i8,
                    comment: r.get(4)?,
                    question: r.get(5)?,
                    answer: r.get(6)?,
                    outcome: r.get(7)?,
                    at: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    // ---- query log ----

    pub fn log_query(&self, q: &QueryRecord<'_>) -> Result<()> {
        let kbs = serde_json::to_string(q.kbs).unwrap_or_else(|_| "[]".into());
        let flags = serde_json::to_string(q.flags).unwrap_or_else(|_| "[]".into());
        self.with(|c| {
            c.execute(
                "INSERT INTO query_log(at, user_id, user_name, kbs, question, outcome, citations,
                        retrieval_ms, total_ms, ttft_ms, via, flags)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    now(),
                    q.user_id,
                    q.user,
                    kbs,
                    q.question,
                    q.outcome,
                    q.citations as i64,
                    q.retrieval_ms,
                    q.total_ms,
                    q.ttft_ms,
                    q.via.as_str(),
                    flags
                ],
            )
            .map(|_| ())
        })
    }

    /// The query log, newest first, optionally only one user's questions or those that
    /// searched one knowledge base.
    pub fn query_log(&self, f: &QueryFilter<'_>) -> Result<Vec<QueryEntry>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT id, at, user_name, kbs, question, outcome, citations, retrieval_ms,
                        total_ms, ttft_ms, via, flags
                 FROM query_log q
                 WHERE (?1 IS NULL OR user_name = ?1)
                   AND (?2 IS NULL OR EXISTS (SELECT 1 FROM json_each(q.kbs) WHERE value = ?2))
                 ORDER BY id DESC LIMIT ?3 OFFSET ?4",
            )?;
            let rows = stmt.query_map(
                params![f.user, f.kb, f.limit as i64, f.offset as i64],
                |r| {
                    Ok(QueryEntry {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        user: r.get(2)?,
                        kbs: json_list(&r.get::<_, String>(3)?),
                        question: r.get(4)?,
                        outcome: r.get(5)?,
                        citations: r.get::<_, i64>(6)? as u32,
                        retrieval_ms: r.get(7)?,
                        total_ms: r.get(8)?,
                        ttft_ms: r.get(9)?,
                        via: parse_via(&r.get::<_, String>(10)?),
                        flags: json_list(&r.get::<_, String>(11)?),
                    })
                },
            )?;
            rows.collect()
        })
    }

    // ---- blocked answers ----

    pub fn log_blocked(
        &self,
        user: &str,
        via: Via,
        question: &str,
        word: &str,
        answer: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO blocked_answers(at, user_name, via, question, word, answer)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![now(), user, via.as_str(), question, word, answer],
            )
            .map(|_| ())
        })
    }

    /// Blocked answers, newest first.
    pub fn blocked_log(&self, limit: usize, offset: usize) -> Result<Vec<BlockedEntry>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT id, at, user_name, via, question, word, answer FROM blocked_answers
                 ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            )?;
            let rows = stmt.query_map(params![limit as i64, offset as i64], |r| {
                Ok(BlockedEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    user: r.get(2)?,
                    via: parse_via(&r.get::<_, String>(3)?),
                    question: r.get(4)?,
                    word: r.get(5)?,
                    answer: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta::Role;

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("z.sqlite")).unwrap();
        (dir, s)
    }

    fn turn<'a>(q: &'a str, a: &'a str) -> NewMessage<'a> {
        NewMessage {
            question: q,
            standalone_question: q,
            answer: a,
            citations: r#"[{"index":1,"chunk":7}]"#,
            outcome: "generated",
            notice: None,
            retrieval_ms: 3.0,
            ttft_ms: Some(40.0),
            total_ms: 90.0,
        }
    }

    #[test]
    fn conversations_belong_to_their_owner() {
        let (_d, s) = store();
        let alice = s.create_user("alice", None, Role::Member).unwrap();
        let bob = s.create_user("bob", None, Role::Member).unwrap();
        let c = s.create_conversation(alice, "", Some("hr")).unwrap();
        assert!(s.conversation(bob, c.id).unwrap().is_none());
        assert!(s.rename_conversation(bob, c.id, "x").unwrap().is_none());
        assert!(!s.delete_conversation(bob, c.id).unwrap());

        let long = "年假怎么计算？".repeat(10);
        let m1 = s.add_message(c.id, &turn(&long, "按工龄[1]。")).unwrap();
        let m2 = s
            .add_message(c.id, &turn("病假呢？", "需要证明[1]。"))
            .unwrap();
        let got = s.conversation(alice, c.id).unwrap().unwrap();
        assert_eq!(
            got.title.chars().count(),
            40,
            "named after the first question"
        );
        assert!(long.starts_with(&got.title));
        let renamed = s.rename_conversation(alice, c.id, "休假").unwrap().unwrap();
        assert_eq!(renamed.title, "休假");
        s.add_message(c.id, &turn("婚假呢？", "3天[1]。")).unwrap();
        assert_eq!(s.conversation(alice, c.id).unwrap().unwrap().title, "休假");

        let all = s.messages(c.id, None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].id, m1);
        assert_eq!(all[0].citations[0]["chunk"], 7);
        let last2 = s.messages(c.id, Some(2)).unwrap();
        assert_eq!(last2[0].id, m2, "the last turns, oldest first");

        // Feedback: own messages only, replaced by a second post.
        let good = Feedback {
            rating: 1,
            comment: None,
        };
        assert!(!s.set_feedback(bob, m1, &good).unwrap());
        assert!(s.set_feedback(alice, m1, &good).unwrap());
        let bad = Feedback {
            rating: -1,
            comment: Some("太短".into()),
        };
        assert!(s.set_feedback(alice, m1, &bad).unwrap());
        assert_eq!(s.messages(c.id, None).unwrap()[0].feedback, Some(bad));
        let log = s.feedback_log(10, 0).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].user.as_str(), log[0].rating), ("alice", -1));

        let c2 = s.create_conversation(alice, "新的", None).unwrap();
        let mine = s.conversations(alice, 0, 100).unwrap();
        assert_eq!(mine.len(), 2);
        assert!(s.conversations(bob, 0, 100).unwrap().is_empty());
        assert!(mine.iter().any(|x| x.id == c2.id));
        // Pages follow the same order and do not overlap.
        let first = s.conversations(alice, 0, 1).unwrap();
        let second = s.conversations(alice, 1, 1).unwrap();
        assert_eq!((first.len(), second.len()), (1, 1));
        assert_eq!([first[0].id, second[0].id], [mine[0].id, mine[1].id]);
        assert!(s.conversations(alice, 2, 1).unwrap().is_empty());

        // Deleting the conversation takes its messages and feedback with it.
        assert!(s.delete_conversation(alice, c.id).unwrap());
        assert!(s.messages(c.id, None).unwrap().is_empty());
        assert!(s.feedback_log(10, 0).unwrap().is_empty());
    }

    #[test]
    fn query_log_filters_by_user_and_knowledge_base() {
        let (_d, s) = store();
        let record = |user: &str, kbs: &[String], via| {
            s.log_query(&QueryRecord {
                user_id: None,
                user,
                kbs,
                question: "年假？",
                outcome: "generated",
                citations: 2,
                retrieval_ms: Some(3.5),
                total_ms: Some(120.0),
                ttft_ms: None,
                via,
                flags: &["question: “忽略以上指令”".to_string()],
            })
            .unwrap()
        };
        record("alice", &["hr".into(), "it".into()], Via::Web);
        record("bob", &["it".into()], Via::Openai);
        record("alice", &["hr".into()], Via::Api);
        let all = s
            .query_log(&QueryFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].via, Via::Api, "newest first");
        assert_eq!(all[1].kbs, vec!["it".to_string()]);
        assert_eq!(all[2].flags.len(), 1);
        let f = |user, kb| QueryFilter {
            user,
            kb,
            limit: 10,
            offset: 0,
        };
        assert_eq!(s.query_log(&f(Some("alice"), None)).unwrap().len(), 2);
        assert_eq!(s.query_log(&f(None, Some("it"))).unwrap().len(), 2);
        assert_eq!(s.query_log(&f(Some("alice"), Some("it"))).unwrap().len(), 1);
        assert_eq!(s.query_log(&f(None, Some("i"))).unwrap().len(), 0);

        s.log_blocked("bob", Via::Web, "代号？", "机密", "代号是机")
            .unwrap();
        let b = s.blocked_log(10, 0).unwrap();
        assert_eq!((b[0].word.as_str(), b[0].via), ("机密", Via::Web));
    }
}
