//! A data folder made by an older release opens in this one and is upgraded in place, losing
//! nothing, to exactly the schema a new folder gets.
//!
//! `tests/fixtures/before-versioning/zhiku.sqlite` was written by the release just before
//! schema versioning (commit f864607, `PRAGMA user_version` 0): the sample documents ingested
//! into knowledge base `handbook`, a user `alice` in group `staff`, which may read `handbook`
//! (how it was made: tests/fixtures/before-versioning/README.md). Only the SQLite file is kept:
//! it is the truth, and `zhiku reindex` rebuilds the vector and keyword indexes from it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use zhiku_core::store::meta::{MetaStore, SCHEMA_VERSION};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/before-versioning/zhiku.sqlite")
}

/// A copy of the old folder (the fixture itself must stay as the old release wrote it).
fn old_folder() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(fixture(), data.join("zhiku.sqlite")).unwrap();
    (dir, data)
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// Every table's columns (name, type, not null, default, primary key), every index's columns
/// and uniqueness, and every foreign key: what the code relies on, without the `CREATE`
/// text, which differs where a column was added by `ALTER TABLE`.
fn shape(path: &Path) -> BTreeMap<String, Vec<String>> {
    let c = Connection::open(path).unwrap();
    let names: Vec<(String, String)> = c
        .prepare(
            "SELECT type, name FROM sqlite_master
             WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows = |sql: &str, name: &str| -> Vec<String> {
        let mut st = c.prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([name], |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i)
                        .map(|v| format!("{v:?}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.join(" "))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let mut out = BTreeMap::new();
    for (kind, name) in names {
        let mut v = Vec::new();
        if kind == "table" {
            v.extend(rows(
                "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY name",
                &name,
            ));
            v.extend(rows(
                "SELECT \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1) ORDER BY \"from\"",
                &name,
            ));
        } else {
            v.extend(rows(
                "SELECT seqno, name FROM pragma_index_info(?1) ORDER BY seqno",
                &name,
            ));
            let unique: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master m, pragma_index_list(m.name) l
                     WHERE m.type = 'table' AND l.name = ?1 AND l.\"unique\" = 1",
                    [&name],
                    |r| r.get(0),
                )
                .unwrap();
            v.push(format!("unique {unique}"));
        }
        out.insert(format!("{kind} {name}"), v);
    }
    out
}

#[test]
fn the_fixture_is_from_before_versioning() {
    assert_eq!(
        user_version(&fixture()),
        0,
        "the fixture must stay as the old release wrote it"
    );
}

#[test]
fn an_old_folder_is_upgraded_in_place_and_loses_nothing() {
    let (_dir, data) = old_folder();
    let db = data.join("zhiku.sqlite");
    let meta = MetaStore::open(&db).unwrap();

    let kbs = meta.kb_names().unwrap();
    let (kb, _) = kbs
        .iter()
        .find(|(_, n)| n == "handbook")
        .expect("the knowledge base survives");
    let docs = meta.documents(*kb).unwrap();
    assert_eq!(docs.len(), 5, "the five sample documents survive: {docs:?}");
    let travel = docs
        .iter()
        .find(|d| d.source.ends_with("差旅费报销管理办法.pdf"))
        .expect("the travel policy survives");
    let chunks = meta.document_chunks(travel.id).unwrap();
    assert!(
        chunks.iter().any(|(_, t)| t.contains("住宿")),
        "its chunks and their text survive"
    );
    let alice = meta
        .user_by_name("alice")
        .unwrap()
        .expect("user alice survives");
    assert!(
        meta.readable_kbs(&alice).unwrap().contains(kb),
        "alice may still read handbook through group staff"
    );
    drop(meta);

    assert_eq!(user_version(&db), i64::from(SCHEMA_VERSION));
    // Opening again is a no-op.
    drop(MetaStore::open(&db).unwrap());
    assert_eq!(user_version(&db), i64::from(SCHEMA_VERSION));
}

#[test]
fn an_upgraded_folder_has_the_schema_of_a_new_one() {
    let (_dir, data) = old_folder();
    let old = data.join("zhiku.sqlite");
    drop(MetaStore::open(&old).unwrap());
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = fresh_dir.path().join("zhiku.sqlite");
    drop(MetaStore::open(&fresh).unwrap());
    let (a, b) = (shape(&old), shape(&fresh));
    for key in a.keys().chain(b.keys()) {
        assert_eq!(
            a.get(key),
            b.get(key),
            "{key}: upgraded (left) and new (right) differ"
        );
    }
}

/// The real end to end: the upgraded folder is reindexed from SQLite by the binary and
/// answers a search.
#[test]
fn an_upgraded_folder_reindexes_and_searches() {
    let Some(model) = common::e5_model() else {
        return;
    };
    let (_dir, data) = old_folder();
    let out = common::zhiku(&data, &model, &["reindex"]);
    assert!(
        out.status.success(),
        "reindex: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = common::zhiku(
        &data,
        &model,
        &["search", "出差住宿标准", "--kb", "handbook"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "search: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("差旅费报销管理办法"),
        "the travel policy is found after the upgrade: {text}"
    );
}
