//! Accounts that come from a company directory (LDAP / Active Directory): which local user
//! is backed by which directory entry, whether the directory has disabled it, and which of
//! the user's group memberships the directory gave (so that a refresh removes only those,
//! never groups an admin added by hand).
//!
//! A disabled account is locked out at once: its sessions are deleted, its API tokens
//! revoked, and [`MetaStore::session`] / [`MetaStore::token_user`] refuse it even so.

use rusqlite::{OptionalExtension, params};

use super::{GroupId, MetaStore, Result, UserId, now};

/// Part of schema step 1 (`migrate.rs`): frozen; a schema change is a new step there.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS directory_accounts (
    user_id       INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    source        TEXT NOT NULL,
    dn            TEXT NOT NULL,
    display_name  TEXT,
    mail          TEXT,
    disabled_at   INTEGER,
    synced_at     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS directory_groups (
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
"#;

/// SQL condition: user `col` is not a disabled directory account.
pub(super) const NOT_DISABLED: &str = "NOT EXISTS (SELECT 1 FROM directory_accounts d WHERE d.user_id = {col} AND d.disabled_at IS NOT NULL)";

/// A local user backed by a directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryAccount {
    pub user_id: UserId,
    pub name: String,
    /// Where it comes from, e.g. `ldap`.
    pub source: String,
    pub dn: String,
    pub display_name: Option<String>,
    pub mail: Option<String>,
    /// When the directory disabled it (or it disappeared from it), Unix seconds.
    pub disabled_at: Option<i64>,
    pub synced_at: i64,
}

/// What a refresh of a user's directory groups changed (group names, sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl GroupChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl MetaStore {
    /// The directory entry behind `user`, if any.
    pub fn directory_account(&self, user: UserId) -> Result<Option<DirectoryAccount>> {
        self.with(|c| {
            c.query_row(
                "SELECT d.user_id, u.name, d.source, d.dn, d.display_name, d.mail,
                        d.disabled_at, d.synced_at
                 FROM directory_accounts d JOIN users u ON u.id = d.user_id
                 WHERE d.user_id = ?1",
                [user],
                account_row,
            )
            .optional()
        })
    }

    /// Every directory-backed account of `source`, by name.
    pub fn directory_accounts(&self, source: &str) -> Result<Vec<DirectoryAccount>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT d.user_id, u.name, d.source, d.dn, d.display_name, d.mail,
                        d.disabled_at, d.synced_at
                 FROM directory_accounts d JOIN users u ON u.id = d.user_id
                 WHERE d.source = ?1 ORDER BY u.name",
            )?;
            let rows = stmt.query_map([source], account_row)?;
            rows.collect()
        })
    }

    /// Mark `user` as backed by the directory entry `dn` (active), with its current display
    /// name and mail.
    pub fn upsert_directory_account(
        &self,
        user: UserId,
        source: &str,
        dn: &str,
        display_name: Option<&str>,
        mail: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO directory_accounts(user_id, source, dn, display_name, mail, synced_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(user_id) DO UPDATE SET source = excluded.source, dn = excluded.dn,
                   display_name = excluded.display_name, mail = excluded.mail,
                   disabled_at = NULL, synced_at = excluded.synced_at",
                params![user, source, dn, display_name, mail, now()],
            )
            .map(|_| ())
        })
    }

    /// Lock a directory account out: disabled from now on, its sessions deleted and its API
    /// tokens revoked. False when it was disabled already (nothing changed).
    pub fn disable_directory_account(&self, user: UserId) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let changed = tx
            .execute(
                "UPDATE directory_accounts SET disabled_at = ?2, synced_at = ?2
                 WHERE user_id = ?1 AND disabled_at IS NULL",
                params![user, now()],
            )
            .map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user])
            .map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
            params![user, now()],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(changed > 0)
    }

    /// Record that the directory still has `user` as it is (a sync found nothing to change).
    pub fn touch_directory_account(&self, user: UserId) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE directory_accounts SET synced_at = ?2 WHERE user_id = ?1",
                params![user, now()],
            )
            .map(|_| ())
        })
    }

    /// Make `user`'s directory-given groups exactly `groups` (created when missing):
    /// memberships the directory gave earlier and no longer gives are removed; memberships an
    /// admin added by hand stay whatever the directory says.
    pub fn set_directory_groups(&self, user: UserId, groups: &[String]) -> Result<GroupChanges> {
        let wanted = groups
            .iter()
            .map(|g| Ok((self.ensure_group(g)?, g.clone())))
            .collect::<Result<Vec<(GroupId, String)>>>()?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let run = || -> rusqlite::Result<GroupChanges> {
            let given: Vec<(GroupId, String)> = {
                let mut stmt = tx.prepare(
                    "SELECT dg.group_id, g.name FROM directory_groups dg
                     JOIN groups g ON g.id = dg.group_id WHERE dg.user_id = ?1",
                )?;
                stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut changes = GroupChanges::default();
            for (id, name) in &given {
                if !wanted.iter().any(|(w, _)| w == id) {
                    tx.execute(
                        "DELETE FROM user_groups WHERE user_id = ?1 AND group_id = ?2",
                        [user, *id],
                    )?;
                    tx.execute(
                        "DELETE FROM directory_groups WHERE user_id = ?1 AND group_id = ?2",
                        [user, *id],
                    )?;
                    changes.removed.push(name.clone());
                }
            }
            for (id, name) in &wanted {
                let added = tx.execute(
                    "INSERT OR IGNORE INTO user_groups(user_id, group_id) VALUES (?1, ?2)",
                    [user, *id],
                )?;
                if given.iter().any(|(g, _)| g == id) {
                    // The directory's own group, taken away by hand meanwhile: the
                    // directory decides, so it is back.
                    if added > 0 {
                        changes.added.push(name.clone());
                    }
                    continue;
                }
                // A membership an admin gave by hand stays theirs (not marked as the
                // directory's), so the directory never takes it away.
                if added > 0 {
                    tx.execute(
                        "INSERT OR IGNORE INTO directory_groups(user_id, group_id) VALUES (?1, ?2)",
                        [user, *id],
                    )?;
                    changes.added.push(name.clone());
                }
            }
            changes.added.sort();
            changes.removed.sort();
            Ok(changes)
        };
        let changes = run().map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(changes)
    }
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DirectoryAccount> {
    Ok(DirectoryAccount {
        user_id: r.get(0)?,
        name: r.get(1)?,
        source: r.get(2)?,
        dn: r.get(3)?,
        display_name: r.get(4)?,
        mail: r.get(5)?,
        disabled_at: r.get(6)?,
        synced_at: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Role;
    use super::*;

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = MetaStore::open(&dir.path().join("zhiku.sqlite")).unwrap();
        (dir, s)
    }

    #[test]
    fn directory_groups_refresh_without_touching_manual_ones() {
        let (_d, s) = store();
        let u = s.create_user("alice", None, Role::Member).unwrap();
        s.upsert_directory_account(u, "ldap", "uid=alice,dc=x", Some("Alice"), None)
            .unwrap();
        let manual = s.create_group("manual").unwrap();
        s.add_to_group(u, manual).unwrap();
        let c = s
            .set_directory_groups(u, &["staff".into(), "ops".into(), "manual".into()])
            .unwrap();
        assert_eq!(c.added, vec!["ops", "staff"]);
        assert!(c.removed.is_empty());
        assert_eq!(
            s.require_user("alice").unwrap().groups,
            vec!["manual", "ops", "staff"]
        );
        // The directory drops ops and manual: ops goes, the hand-given manual stays.
        let c = s.set_directory_groups(u, &["staff".into()]).unwrap();
        assert_eq!(c.removed, vec!["ops"]);
        assert!(c.added.is_empty());
        assert_eq!(
            s.require_user("alice").unwrap().groups,
            vec!["manual", "staff"]
        );
        assert!(
            s.set_directory_groups(u, &["staff".into()])
                .unwrap()
                .is_empty()
        );
        let a = s.directory_account(u).unwrap().unwrap();
        assert_eq!(
            (a.name.as_str(), a.dn.as_str()),
            ("alice", "uid=alice,dc=x")
        );
        assert!(a.disabled_at.is_none());
        assert_eq!(s.directory_accounts("ldap").unwrap().len(), 1);
        assert!(s.directory_accounts("oidc").unwrap().is_empty());
    }

    #[test]
    fn disabling_ends_sessions_and_tokens_at_once() {
        let (_d, s) = store();
        let u = s.create_user("bob", None, Role::Member).unwrap();
        s.upsert_directory_account(u, "ldap", "uid=bob,dc=x", None, None)
            .unwrap();
        s.create_session("sess", u, "csrf", now() + 3600).unwrap();
        let t = s.create_token(u, "ci", "tokhash", "zk_1").unwrap();
        assert!(s.session("sess").unwrap().is_some());
        assert!(s.token_user("tokhash").unwrap().is_some());
        assert!(s.disable_directory_account(u).unwrap());
        assert!(!s.disable_directory_account(u).unwrap(), "already disabled");
        assert!(s.session("sess").unwrap().is_none());
        assert!(s.token_user("tokhash").unwrap().is_none());
        assert!(s.list_tokens(Some(u)).unwrap()[0].revoked);
        let user = s.require_user("bob").unwrap();
        assert!(user.disabled && user.directory.as_deref() == Some("ldap"));
        // A session made while disabled (a race with a login) is refused all the same.
        s.create_session("late", u, "csrf", now() + 3600).unwrap();
        assert!(s.session("late").unwrap().is_none());
        // Enabled again by a later login: new sessions work, the revoked token stays revoked.
        s.upsert_directory_account(u, "ldap", "uid=bob,dc=x", None, None)
            .unwrap();
        assert!(s.session("late").unwrap().is_some());
        assert!(s.token_user("tokhash").unwrap().is_none());
        assert!(!s.revoke_token(t).unwrap());
    }
}
