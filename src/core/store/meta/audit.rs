//! The audit log: who did what to which, when, from where. Admin actions (accounts,
//! grants, knowledge bases, documents) and document downloads are recorded; the admin
//! pages list it.

use rusqlite::params;
use serde::Serialize;

use super::{MetaStore, Result, now};

/// Part of schema step 1 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    ip          TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log(at);
"#;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// User name of who did it (`cli` for the command line).
    pub actor: String,
    /// What was done, e.g. `user.create`, `kb.grant`, `document.download`.
    pub action: String,
    /// What it was done to, e.g. a user name or `hr/handbook.pdf`.
    pub target: String,
    pub detail: String,
    pub ip: Option<String>,
}

impl MetaStore {
    /// Record an action.
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        ip: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit_log(at, actor, action, target, detail, ip)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![now(), actor, action, target, detail, ip],
            )
            .map(|_| ())
        })
    }

    /// Newest first.
    pub fn audit_log(&self, limit: usize, offset: usize) -> Result<Vec<AuditEntry>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT id, at, actor, action, target, detail, ip FROM audit_log
                 ORDER BY id DESC LIMIT ?1 OFFSET ?2",
            )?;
            let rows = stmt.query_map(params![limit as i64, offset as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    detail: r.get(5)?,
                    ip: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_list_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("z.sqlite")).unwrap();
        s.audit(
            "root",
            "user.create",
            "alice",
            "role member",
            Some("127.0.0.1"),
        )
        .unwrap();
        s.audit("root", "kb.grant", "hr", "group staff", None)
            .unwrap();
        let log = s.audit_log(10, 0).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].action, "kb.grant");
        assert_eq!(log[1].ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.audit_log(10, 1).unwrap().len(), 1);
    }
}
