//! Versioned schema migrations, counted in SQLite's `PRAGMA user_version`.
//!
//! Each [`STEPS`] entry brings the database from `version - 1` to `version`, in one
//! transaction that also writes the new version, so a crash or a second process opening the
//! same folder at the same moment leaves the database at one step or the next, never between.
//! Opening runs the steps a database has not had yet; a database written by a newer zhiku
//! (a version above [`LATEST`]) is refused untouched, with a message that says so.
//!
//! Step 1 is the schema as it stood when versioning began (the `SCHEMA` constants of this
//! folder's modules and their in-place upgrades). Databases made before then read version 0;
//! their tables all exist with `CREATE … IF NOT EXISTS`, and the upgrades add what they lack,
//! so step 1 brings every earlier zhiku database to the same schema as a new one.
//!
//! **Rules for a schema change:** never edit step 1 or its `SCHEMA` constants (a database at
//! version 1 would never see the edit); add a step at the end instead. The test
//! `tests/upgrade.rs` opens a data folder made by the release before versioning and checks
//! that it reaches the same tables, columns and indexes as a new database.

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// One numbered migration.
pub(super) struct Step {
    pub version: u32,
    pub what: &'static str,
    pub run: fn(&Transaction<'_>) -> rusqlite::Result<()>,
}

/// Every migration, oldest first; `STEPS[i].version == i + 1`.
pub(super) const STEPS: &[Step] = &[
    Step {
        version: 1,
        what: "the schema when versioning began (knowledge bases, documents with page readings, \
           chunks, jobs, settings, accounts, audit, directory accounts, activity, uploads, \
           WeCom messages with the expired state, chunk edits)",
        run: baseline,
    },
    Step {
        version: 2,
        what: "OIDC sign-in: pending logins (state, nonce, PKCE verifier), used nonces, provider sessions",
        run: oidc,
    },
    Step {
        version: 3,
        what: "folder and document rules: access rules and their groups, KB editors, \
               documents' readers, pending access updates",
        run: readers,
    },
];

/// The schema version this build writes.
pub const LATEST: u32 = STEPS.len() as u32;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the data folder's database is at schema version {found}, newer than this zhiku knows \
         ({known}): it was written by a newer release. Run that release (or newer); nothing was changed"
    )]
    Newer { found: u32, known: u32 },
    #[error("schema step {version} ({what}) failed: {source}")]
    Step {
        version: u32,
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map(|v| v.clamp(0, u32::MAX as i64) as u32)
}

/// Bring the database to [`LATEST`]; returns the version it was at before.
///
/// The version is read again inside each step's write transaction (`BEGIN IMMEDIATE`), so two
/// processes opening an old folder at once apply every step exactly once.
pub(super) fn migrate(conn: &mut Connection) -> Result<u32, MigrateError> {
    let before = version(conn)?;
    if before > LATEST {
        return Err(MigrateError::Newer {
            found: before,
            known: LATEST,
        });
    }
    for step in STEPS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = version(&tx)?;
        if now > LATEST {
            return Err(MigrateError::Newer {
                found: now,
                known: LATEST,
            });
        }
        if now >= step.version {
            continue;
        }
        debug_assert_eq!(now + 1, step.version, "steps are numbered 1, 2, 3, …");
        (step.run)(&tx).map_err(|source| MigrateError::Step {
            version: step.version,
            what: step.what,
            source,
        })?;
        tx.pragma_update(None, "user_version", step.version)?;
        tx.commit()?;
        if before < step.version {
            tracing::info!(version = step.version, what = step.what, "schema upgraded");
        }
    }
    Ok(before)
}

fn baseline(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    for schema in [
        super::SCHEMA,
        super::accounts::SCHEMA,
        super::audit::SCHEMA,
        super::directory::SCHEMA,
        super::activity::SCHEMA,
        super::uploads::SCHEMA,
        super::wecom::SCHEMA,
        super::edits::SCHEMA,
    ] {
        tx.execute_batch(schema)?;
    }
    super::wecom::upgrade(tx)?;
    super::upgrade_documents(tx)
}

fn oidc(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(super::oidc::SCHEMA)
}

fn readers(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    super::add_readers(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps_are_numbered_in_order() -> bool {
        STEPS
            .iter()
            .enumerate()
            .all(|(i, s)| s.version as usize == i + 1)
    }

    #[test]
    fn steps_count_up_from_one() {
        assert!(steps_are_numbered_in_order());
        assert_eq!(LATEST as usize, STEPS.len());
    }

    #[test]
    fn a_new_database_gets_every_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("m.sqlite")).unwrap();
        assert_eq!(migrate(&mut c).unwrap(), 0);
        assert_eq!(version(&c).unwrap(), LATEST);
        // Again: nothing to do, nothing changes.
        assert_eq!(migrate(&mut c).unwrap(), LATEST);
        assert_eq!(version(&c).unwrap(), LATEST);
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let mut c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE future (x INTEGER); PRAGMA user_version = 999;")
            .unwrap();
        let e = migrate(&mut c).unwrap_err();
        assert!(matches!(e, MigrateError::Newer { found: 999, .. }), "{e}");
        assert!(e.to_string().contains("newer release"), "{e}");
        let tables: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "nothing was created");
    }

    #[test]
    fn a_failing_step_leaves_the_version_where_it_was() {
        // A database whose `documents` table is not zhiku's: step 1's index on
        // documents(kb_id, source) cannot be made, and the version stays 0.
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("m.sqlite")).unwrap();
        c.execute_batch("CREATE TABLE documents (x INTEGER);")
            .unwrap();
        let e = migrate(&mut c).unwrap_err();
        assert!(matches!(e, MigrateError::Step { version: 1, .. }), "{e}");
        assert_eq!(version(&c).unwrap(), 0);
        let tables: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "the step's tables were rolled back with it");
    }
}
