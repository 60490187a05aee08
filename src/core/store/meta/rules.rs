//! Folder and document rules inside a knowledge base: a folder (a path prefix of the
//! documents' sources, `政策/薪酬`) or a single document (its source) restricted to groups.
//!
//! A restricted item is readable only by those groups (and admins), on top of the
//! knowledge-base grant. The nearest rule wins: a document's own rule, else the deepest
//! folder rule above it; without one the document is readable by everyone who may read the
//! knowledge base (`readers = ["*"]`).
//!
//! SQLite is the truth. Each document row carries its effective readers (computed when it
//! is inserted, so a new document inherits the nearest folder rule, and again whenever a
//! rule of its knowledge base changes). The derived indexes hold a copy on every chunk (the
//! vector payload `readers`, the keyword field `readers`) and filter on it inside their
//! queries. A rule change writes the rule, the documents' new readers, a
//! `pending_access_updates` row per changed document and the audit row in one transaction;
//! the indexes are brought up to date afterwards (`index::apply_access_updates`). Until then
//! retrieval errs on the side of denial: the stores filter on the old readers and the
//! hydration from SQLite checks the new ones, so a chunk is returned only when both allow it.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{DocId, KbId, MetaError, MetaStore, Result, now};
use crate::store::{EVERYONE, Reader, group_principal};

/// Schema step 3 (`migrate.rs`, with the `readers` column): frozen; a change is a new step.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS access_rules (
    id          INTEGER PRIMARY KEY,
    kb_id       INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('folder', 'document')),
    updated_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (kb_id, path)
);
CREATE TABLE IF NOT EXISTS access_rule_groups (
    rule_id   INTEGER NOT NULL REFERENCES access_rules(id) ON DELETE CASCADE,
    group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (rule_id, group_id)
);
CREATE TABLE IF NOT EXISTS kb_editors (
    kb_id     INTEGER NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (kb_id, user_id)
);
CREATE TABLE IF NOT EXISTS pending_access_updates (
    document_id  INTEGER PRIMARY KEY,
    generation   INTEGER NOT NULL DEFAULT 0
);
"#;

/// Most groups on one rule.
pub const MAX_RULE_GROUPS: usize = 64;

/// What a rule restricts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// Every document whose source lies under the path (`path/…`).
    Folder,
    /// The one document whose source is the path.
    Document,
}

impl RuleKind {
    fn as_str(self) -> &'static str {
        match self {
            RuleKind::Folder => "folder",
            RuleKind::Document => "document",
        }
    }
}

/// One rule as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccessRule {
    pub path: String,
    pub kind: RuleKind,
    /// Group names, sorted.
    pub groups: Vec<String>,
    pub updated_by: String,
    /// Unix seconds.
    pub updated_at: i64,
}

/// What a rule change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RuleChange {
    pub path: String,
    pub kind: RuleKind,
    /// The rule's groups after the change (empty: the rule was removed).
    pub groups: Vec<String>,
    /// Documents whose readers changed; their chunks' filters are updated in the background.
    pub documents: u64,
}

/// A document's readers as the admin view shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DocumentAccess {
    pub id: DocId,
    pub source: String,
    pub title: String,
    /// Group names allowed (empty: everyone who may read the knowledge base).
    pub groups: Vec<String>,
    /// The rule that decides (its path), if any.
    pub rule: Option<String>,
    /// The derived indexes still hold the old readers (the update is queued).
    pub pending: bool,
}

/// A rule's path as stored: trimmed, no trailing `/`.
pub fn normalise_path(path: &str) -> Result<String> {
    let p = path.trim().trim_end_matches('/');
    if p.is_empty() || p.chars().count() > 1024 || p.contains('\0') {
        return Err(MetaError::BadRule(format!(
            "`{path}` is not a folder or document path (give a document's name as listed, or a \
             folder above it, e.g. `政策/薪酬`)"
        )));
    }
    Ok(p.to_string())
}

/// Whether a rule at `path` of `kind` covers a document with this source.
fn covers(kind: &str, path: &str, source: &str) -> bool {
    if kind == "document" {
        return source == path;
    }
    source
        .strip_prefix(path)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The readers of a document with `source` under `rules` (path, kind, group ids): the
/// nearest rule's groups (the document's own rule, else the deepest folder), else everyone.
/// Also returns the deciding rule's path.
fn readers_under(
    rules: &[(String, String, Vec<i64>)],
    source: &str,
) -> (Vec<String>, Option<String>) {
    let nearest = rules
        .iter()
        .filter(|(path, kind, _)| covers(kind, path, source))
        .max_by_key(|(path, kind, _)| (kind == "document", path.len()));
    match nearest {
        Some((path, _, groups)) => {
            let mut r: Vec<String> = groups.iter().map(|g| group_principal(*g)).collect();
            r.sort();
            (r, Some(path.clone()))
        }
        None => (vec![EVERYONE.to_string()], None),
    }
}

fn kb_rules(
    tx: &rusqlite::Connection,
    kb: KbId,
) -> rusqlite::Result<Vec<(String, String, Vec<i64>)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT r.path, r.kind,
                COALESCE((SELECT group_concat(group_id) FROM access_rule_groups g
                          WHERE g.rule_id = r.id), '')
         FROM access_rules r WHERE r.kb_id = ?1",
    )?;
    let rows = stmt.query_map([kb], |r| {
        let groups: String = r.get(2)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            groups.split(',').filter_map(|g| g.parse().ok()).collect(),
        ))
    })?;
    rows.collect()
}

/// The readers a new document with `source` in `kb` gets (the nearest rule at insert time).
pub(super) fn readers_for(
    conn: &rusqlite::Connection,
    kb: KbId,
    source: &str,
) -> rusqlite::Result<Vec<String>> {
    Ok(readers_under(&kb_rules(conn, kb)?, source).0)
}

/// Parse a stored readers column.
pub(super) fn parse_readers(json: &str) -> Vec<String> {
    // A malformed value reads as no reader at all: deny rather than open.
    serde_json::from_str(json).unwrap_or_default()
}

fn readers_json(readers: &[String]) -> String {
    serde_json::to_string(readers).unwrap_or_else(|_| "[]".into())
}

/// Queue `doc`'s chunks for a readers update of the derived indexes (a later change of the
/// same document bumps the generation, so an update in flight does not clear it).
pub(super) fn queue_access_update(conn: &rusqlite::Connection, doc: DocId) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO pending_access_updates(document_id, generation) VALUES (?1, 0)
         ON CONFLICT(document_id) DO UPDATE SET generation = generation + 1",
        [doc],
    )
    .map(|_| ())
}

/// Recompute the readers of every document of `kb`; queue those that changed. Returns how
/// many changed.
fn refresh_kb(tx: &Transaction<'_>, kb: KbId) -> rusqlite::Result<u64> {
    let rules = kb_rules(tx, kb)?;
    let docs: Vec<(DocId, String, String)> = {
        let mut stmt = tx.prepare("SELECT id, source, readers FROM documents WHERE kb_id = ?1")?;
        let rows = stmt.query_map([kb], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut changed = 0;
    for (id, source, stored) in docs {
        let (readers, _) = readers_under(&rules, &source);
        if parse_readers(&stored) == readers {
            continue;
        }
        tx.execute(
            "UPDATE documents SET readers = ?2 WHERE id = ?1",
            params![id, readers_json(&readers)],
        )?;
        queue_access_update(tx, id)?;
        changed += 1;
    }
    Ok(changed)
}

impl MetaStore {
    /// Restrict the folder or document at `path` of `kb` to `groups` (replacing the groups
    /// of a rule already there), or remove its rule (`groups` empty); the documents' readers
    /// change in the same transaction, their index updates are queued, and the change is
    /// written to the audit log as `actor` (`kb.restrict` / `kb.unrestrict`). The path must
    /// be a document's source or a folder above at least one document; every group must
    /// exist.
    pub fn set_rule(
        &self,
        kb: KbId,
        path: &str,
        groups: &[String],
        actor: &str,
        ip: Option<&str>,
    ) -> Result<RuleChange> {
        let path = normalise_path(path)?;
        if groups.len() > MAX_RULE_GROUPS {
            return Err(MetaError::BadRule(format!(
                "a rule names at most {MAX_RULE_GROUPS} groups"
            )));
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let kb_name: String = tx
            .query_row(
                "SELECT name FROM knowledge_bases WHERE id = ?1",
                [kb],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| MetaError::NoSuchKb(kb.to_string()))?;
        let mut group_ids = Vec::with_capacity(groups.len());
        let mut names: Vec<String> = Vec::with_capacity(groups.len());
        for g in groups {
            let g = g.trim();
            let id: i64 = tx
                .query_row("SELECT id FROM groups WHERE name = ?1", [g], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?
                .ok_or_else(|| MetaError::NoSuchGroup(g.to_string()))?;
            if !group_ids.contains(&id) {
                group_ids.push(id);
                names.push(g.to_string());
            }
        }
        names.sort();
        let existing: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, kind FROM access_rules WHERE kb_id = ?1 AND path = ?2",
                params![kb, path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if groups.is_empty() && existing.is_none() {
            return Err(MetaError::BadRule(format!(
                "`{path}` has no rule in knowledge base `{kb_name}` (see `zhiku kb rules {kb_name}`)"
            )));
        }
        let kind = match &existing {
            Some((_, k)) if k == "document" => RuleKind::Document,
            Some(_) => RuleKind::Folder,
            None => {
                let is_doc: bool = tx
                    .query_row(
                        "SELECT COUNT(*) FROM documents WHERE kb_id = ?1 AND source = ?2",
                        params![kb, path],
                        |r| r.get::<_, i64>(0).map(|n| n > 0),
                    )
                    .map_err(|e| self.err(e))?;
                let under = format!("{}/%", like_escape(&path));
                let is_folder: bool = tx
                    .query_row(
                        "SELECT COUNT(*) FROM documents
                         WHERE kb_id = ?1 AND source LIKE ?2 ESCAPE '\\'",
                        params![kb, under],
                        |r| r.get::<_, i64>(0).map(|n| n > 0),
                    )
                    .map_err(|e| self.err(e))?;
                match (is_doc, is_folder) {
                    (true, _) => RuleKind::Document,
                    (false, true) => RuleKind::Folder,
                    (false, false) => {
                        return Err(MetaError::BadRule(format!(
                            "`{path}` is neither a document nor a folder of knowledge base \
                             `{kb_name}` (see `zhiku kb rules {kb_name}` for its documents)"
                        )));
                    }
                }
            }
        };
        if groups.is_empty() {
            if let Some((id, _)) = existing {
                tx.execute("DELETE FROM access_rules WHERE id = ?1", [id])
                    .map_err(|e| self.err(e))?;
            }
        } else {
            let id = match existing {
                Some((id, _)) => {
                    tx.execute(
                        "UPDATE access_rules SET updated_by = ?2, updated_at = ?3 WHERE id = ?1",
                        params![id, actor, now()],
                    )
                    .map_err(|e| self.err(e))?;
                    tx.execute("DELETE FROM access_rule_groups WHERE rule_id = ?1", [id])
                        .map_err(|e| self.err(e))?;
                    id
                }
                None => {
                    tx.execute(
                        "INSERT INTO access_rules(kb_id, path, kind, updated_by, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![kb, path, kind.as_str(), actor, now()],
                    )
                    .map_err(|e| self.err(e))?;
                    tx.last_insert_rowid()
                }
            };
            for g in &group_ids {
                tx.execute(
                    "INSERT INTO access_rule_groups(rule_id, group_id) VALUES (?1, ?2)",
                    params![id, g],
                )
                .map_err(|e| self.err(e))?;
            }
        }
        let documents = refresh_kb(&tx, kb).map_err(|e| self.err(e))?;
        let (action, detail) = if groups.is_empty() {
            (
                "kb.unrestrict",
                format!(
                    "{} rule removed; {documents} document(s) changed",
                    kind.as_str()
                ),
            )
        } else {
            (
                "kb.restrict",
                format!(
                    "{} readable by {}; {documents} document(s) changed",
                    kind.as_str(),
                    names.join(", ")
                ),
            )
        };
        tx.execute(
            "INSERT INTO audit_log(at, actor, action, target, detail, ip)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                now(),
                actor,
                action,
                format!("{kb_name}/{path}"),
                detail,
                ip
            ],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(RuleChange {
            path,
            kind,
            groups: names,
            documents,
        })
    }

    /// The rules of `kb`, by path.
    pub fn rules(&self, kb: KbId) -> Result<Vec<AccessRule>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT r.path, r.kind, r.updated_by, r.updated_at,
                        COALESCE((SELECT group_concat(name, char(10)) FROM
                            (SELECT g.name FROM access_rule_groups rg
                             JOIN groups g ON g.id = rg.group_id
                             WHERE rg.rule_id = r.id ORDER BY g.name)), '')
                 FROM access_rules r WHERE r.kb_id = ?1 ORDER BY r.path",
            )?;
            let rows = stmt.query_map([kb], |r| {
                let groups: String = r.get(4)?;
                Ok(AccessRule {
                    path: r.get(0)?,
                    kind: if r.get::<_, String>(1)? == "document" {
                        RuleKind::Document
                    } else {
                        RuleKind::Folder
                    },
                    updated_by: r.get(2)?,
                    updated_at: r.get(3)?,
                    groups: groups
                        .split('\n')
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })?;
            rows.collect()
        })
    }

    /// Every ready document of `kb` with who may read it (the admin's folder tree).
    pub fn document_access(&self, kb: KbId) -> Result<Vec<DocumentAccess>> {
        self.with(|c| {
            let rules = kb_rules(c, kb)?;
            let names: std::collections::HashMap<i64, String> = {
                let mut stmt = c.prepare("SELECT id, name FROM groups")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut stmt = c.prepare(
                "SELECT d.id, d.source, d.title, d.readers,
                        EXISTS(SELECT 1 FROM pending_access_updates p WHERE p.document_id = d.id)
                 FROM documents d WHERE d.kb_id = ?1 AND d.status = 'ready' ORDER BY d.source",
            )?;
            let rows = stmt.query_map([kb], |r| {
                let source: String = r.get(1)?;
                let readers = parse_readers(&r.get::<_, String>(3)?);
                let (_, rule) = readers_under(&rules, &source);
                let mut groups: Vec<String> = readers
                    .iter()
                    .filter_map(|p| p.strip_prefix("g:")?.parse::<i64>().ok())
                    .filter_map(|g| names.get(&g).cloned())
                    .collect();
                groups.sort();
                Ok(DocumentAccess {
                    id: r.get(0)?,
                    source,
                    title: r.get(2)?,
                    groups,
                    rule,
                    pending: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Whose rights `user` has in retrieval: admins read every chunk; members those readable
    /// by everyone or by one of their groups.
    pub fn reader_of(&self, user: &super::User) -> Result<Reader> {
        if user.is_admin() {
            return Ok(Reader::All);
        }
        self.with(|c| {
            let mut stmt =
                c.prepare_cached("SELECT group_id FROM user_groups WHERE user_id = ?1 ORDER BY 1")?;
            let rows = stmt.query_map([user.id], |r| r.get::<_, i64>(0))?;
            Ok(Reader::groups(rows.collect::<rusqlite::Result<Vec<_>>>()?))
        })
    }

    /// Make `user` an editor of `kb` (`true`) or no longer one: editors upload, delete and
    /// restrict the documents of that knowledge base without being site admins. Returns
    /// whether anything changed.
    pub fn set_kb_editor(&self, kb: KbId, user: super::UserId, editor: bool) -> Result<bool> {
        self.with(|c| {
            let n = if editor {
                c.execute(
                    "INSERT OR IGNORE INTO kb_editors(kb_id, user_id) VALUES (?1, ?2)",
                    params![kb, user],
                )?
            } else {
                c.execute(
                    "DELETE FROM kb_editors WHERE kb_id = ?1 AND user_id = ?2",
                    params![kb, user],
                )?
            };
            Ok(n > 0)
        })
    }

    /// The editors of `kb` (user names, sorted).
    pub fn kb_editors(&self, kb: KbId) -> Result<Vec<String>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT u.name FROM kb_editors e JOIN users u ON u.id = e.user_id
                 WHERE e.kb_id = ?1 ORDER BY u.name",
            )?;
            let rows = stmt.query_map([kb], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Whether `user` may manage the documents and rules of `kb`: a site admin, or an
    /// editor of that knowledge base.
    pub fn may_manage(&self, user: &super::User, kb: KbId) -> Result<bool> {
        if user.is_admin() {
            return Ok(true);
        }
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM kb_editors WHERE kb_id = ?1 AND user_id = ?2",
                params![kb, user.id],
                |r| r.get::<_, i64>(0).map(|n| n > 0),
            )
        })
    }

    /// A document's current readers (the truth; `None` for an unknown document).
    pub fn document_readers(&self, doc: DocId) -> Result<Option<Vec<String>>> {
        self.with(|c| {
            c.query_row("SELECT readers FROM documents WHERE id = ?1", [doc], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map(|o| o.map(|s| parse_readers(&s)))
        })
    }

    /// Documents whose chunks' readers in the derived indexes wait for an update, with the
    /// generation to clear.
    pub fn pending_access_updates(&self) -> Result<Vec<(DocId, i64)>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT document_id, generation FROM pending_access_updates ORDER BY document_id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The derived indexes hold these documents' readers as of these generations (a row
    /// changed again since stays queued).
    pub fn clear_pending_access_updates(&self, done: &[(DocId, i64)]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for (doc, generation) in done {
            tx.execute(
                "DELETE FROM pending_access_updates WHERE document_id = ?1 AND generation = ?2",
                params![doc, generation],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Queue every document for a readers update (a keyword index recreated empty).
    pub fn queue_all_access_updates(&self) -> Result<u64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO pending_access_updates(document_id, generation)
                 SELECT id, 0 FROM documents WHERE true
                 ON CONFLICT(document_id) DO UPDATE SET generation = generation + 1",
                [],
            )
            .map(|n| n as u64)
        })
    }
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, kind: &str, groups: &[i64]) -> (String, String, Vec<i64>) {
        (path.into(), kind.into(), groups.to_vec())
    }

    #[test]
    fn nearest_rule_wins() {
        let rules = [
            rule("hr", "folder", &[1]),
            rule("hr/pay", "folder", &[2, 3]),
            rule("hr/pay/ceo.txt", "document", &[4]),
            rule("hr/payroll.txt", "document", &[5]),
        ];
        let r = |s: &str| readers_under(&rules, s);
        assert_eq!(r("hr/a.txt"), (vec!["g:1".into()], Some("hr".into())));
        assert_eq!(
            r("hr/pay/b.txt"),
            (vec!["g:2".into(), "g:3".into()], Some("hr/pay".into()))
        );
        assert_eq!(r("hr/pay/ceo.txt").0, vec!["g:4".to_string()]);
        // `hr/pay` is not a folder of `hr/payroll.txt`.
        assert_eq!(r("hr/payroll.txt").0, vec!["g:5".to_string()]);
        assert_eq!(r("hrx/a.txt"), (vec!["*".into()], None));
        assert_eq!(
            r("hr").0,
            vec!["*".to_string()],
            "a folder rule covers what is under it"
        );
    }

    fn chunk(text: &str) -> zhiku_ingest::Chunk {
        zhiku_ingest::Chunk {
            text: text.into(),
            page: 1,
            heading_path: Vec::new(),
            char_start: 0,
            char_end: text.chars().count(),
        }
    }

    fn add_doc(s: &MetaStore, kb: KbId, source: &str) -> DocId {
        let chunks = [chunk(source)];
        let reading = super::super::PageReading::default();
        let (id, _) = s
            .insert_document(&super::super::NewDocument {
                kb,
                source,
                title: source,
                format: "txt",
                content_hash: source,
                size: 1,
                pages: 1,
                warnings: &[],
                masked: 0,
                reading: &reading,
                chunks: &chunks,
            })
            .unwrap();
        s.finish_documents(&[(id, None)]).unwrap();
        id
    }

    fn readers(s: &MetaStore, doc: DocId) -> Vec<String> {
        s.document_readers(doc).unwrap().unwrap()
    }

    /// Restricting, narrowing and removing rules changes the documents' readers in SQLite,
    /// queues exactly the changed documents, is audited, and refuses bad input clearly.
    #[test]
    fn rules_change_readers_queue_updates_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("zhiku.sqlite")).unwrap();
        let kb = s.create_kb("hr").unwrap();
        let a = s.create_group("A").unwrap();
        let b = s.create_group("B").unwrap();
        let pay = add_doc(&s, kb, "政策/薪酬/2026.txt");
        let ceo = add_doc(&s, kb, "政策/薪酬/ceo.txt");
        let open = add_doc(&s, kb, "政策/休假.txt");
        assert_eq!(readers(&s, pay), vec!["*"]);
        assert!(s.pending_access_updates().unwrap().is_empty());

        let c = s
            .set_rule(kb, "政策/薪酬/", &["A".into()], "root", Some("127.0.0.1"))
            .unwrap();
        assert_eq!(
            (c.kind, c.path.as_str(), c.documents),
            (RuleKind::Folder, "政策/薪酬", 2)
        );
        assert_eq!(readers(&s, pay), vec![group_principal(a)]);
        assert_eq!(readers(&s, ceo), vec![group_principal(a)]);
        assert_eq!(readers(&s, open), vec!["*"]);
        let c = s
            .set_rule(
                kb,
                "政策/薪酬/ceo.txt",
                &["B".into(), "B".into()],
                "root",
                None,
            )
            .unwrap();
        assert_eq!(
            (c.kind, c.documents, c.groups.clone()),
            (RuleKind::Document, 1, vec!["B".to_string()])
        );
        assert_eq!(
            readers(&s, ceo),
            vec![group_principal(b)],
            "the document rule is nearer"
        );
        let pending: Vec<DocId> = s
            .pending_access_updates()
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(pending, vec![pay, ceo]);
        // A new document inherits the folder's rule at once.
        let new = add_doc(&s, kb, "政策/薪酬/2027.txt");
        assert_eq!(readers(&s, new), vec![group_principal(a)]);

        // An update in flight does not clear a newer change of the same document.
        let snapshot = s.pending_access_updates().unwrap();
        s.set_rule(
            kb,
            "政策/薪酬/ceo.txt",
            &["A".into(), "B".into()],
            "root",
            None,
        )
        .unwrap();
        s.clear_pending_access_updates(&snapshot).unwrap();
        let left: Vec<DocId> = s
            .pending_access_updates()
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(left, vec![ceo]);

        // Bad input: unknown group, path outside the knowledge base, removing no rule.
        let e = s
            .set_rule(kb, "政策/薪酬", &["C".into()], "root", None)
            .unwrap_err();
        assert!(
            matches!(e, MetaError::NoSuchGroup(ref g) if g == "C"),
            "{e}"
        );
        let e = s
            .set_rule(kb, "政策/薪", &["A".into()], "root", None)
            .unwrap_err();
        assert!(
            e.to_string().contains("neither a document nor a folder"),
            "{e}"
        );
        let e = s.set_rule(kb, "政策", &[], "root", None).unwrap_err();
        assert!(e.to_string().contains("has no rule"), "{e}");
        assert!(
            readers(&s, pay) == vec![group_principal(a)],
            "a refused change changes nothing"
        );

        let c = s.set_rule(kb, "政策/薪酬", &[], "root", None).unwrap();
        assert_eq!(
            c.documents, 2,
            "2026 and 2027 are open again; ceo keeps its own rule"
        );
        assert_eq!(readers(&s, pay), vec!["*"]);
        let mut both = vec![group_principal(a), group_principal(b)];
        both.sort();
        assert_eq!(readers(&s, ceo), both);

        let rules = s.rules(kb).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].groups, vec!["A", "B"]);
        let access = s.document_access(kb).unwrap();
        let ceo_access = access.iter().find(|d| d.id == ceo).unwrap();
        assert_eq!(ceo_access.groups, vec!["A", "B"]);
        assert_eq!(ceo_access.rule.as_deref(), Some("政策/薪酬/ceo.txt"));

        let log = s.audit_log(10, 0).unwrap();
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            vec!["kb.unrestrict", "kb.restrict", "kb.restrict", "kb.restrict"]
        );
        assert_eq!(log[3].target, "hr/政策/薪酬");
        assert_eq!(log[3].ip.as_deref(), Some("127.0.0.1"));
        assert!(log[3].detail.contains("readable by A"), "{}", log[3].detail);

        // Readers of users.
        let member = s
            .create_user("m", None, super::super::Role::Member)
            .unwrap();
        s.add_to_group(member, b).unwrap();
        let m = s.user(member).unwrap().unwrap();
        assert_eq!(
            s.reader_of(&m).unwrap(),
            Reader::Principals(vec!["*".into(), group_principal(b)])
        );
        assert!(s.reader_of(&m).unwrap().allows(&readers(&s, ceo)));
        assert!(
            s.reader_of(&m).unwrap().allows(&readers(&s, new)),
            "the folder is open again"
        );
        assert!(!Reader::groups([a]).allows(&[group_principal(b)]));
    }

    /// A database made before rules gains the readers column (everything readable, as it
    /// was) and queues every document, since the derived indexes lack the readers.
    #[test]
    fn old_database_gains_readers_and_queues_every_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zhiku.sqlite");
        {
            let s = MetaStore::open(&path).unwrap();
            let kb = s.create_kb("kb").unwrap();
            add_doc(&s, kb, "a.txt");
            add_doc(&s, kb, "b/c.txt");
        }
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "ALTER TABLE documents DROP COLUMN readers;
                 DROP TABLE pending_access_updates;
                 DROP TABLE access_rule_groups;
                 DROP TABLE access_rules;
                 DROP TABLE kb_editors;
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let s = MetaStore::open(&path).unwrap();
        assert_eq!(s.pending_access_updates().unwrap().len(), 2);
        for (doc, _, _) in s.ready_documents().unwrap() {
            assert_eq!(readers(&s, doc), vec!["*"]);
        }
        drop(s);
        let s = MetaStore::open(&path).unwrap();
        assert_eq!(
            s.pending_access_updates().unwrap().len(),
            2,
            "opening again adds nothing"
        );
    }

    #[test]
    fn paths_are_normalised_and_checked() {
        assert_eq!(normalise_path(" 政策/薪酬/ ").unwrap(), "政策/薪酬");
        assert!(normalise_path("  /").is_err());
        assert!(normalise_path("").is_err());
        assert_eq!(like_escape("a_b%c"), "a\\_b\\%c");
    }
}
