//! Uploaded originals: every file admins upload is kept under
//! `<data_dir>/uploads/<kb id>/<blake3 of its content>`, so its document can be downloaded
//! and extracted again later.
//!
//! Named by content rather than by the uploaded path, for three reasons: a new version of
//! `政策/休假制度.txt` waits beside the old one until it is indexed and replaces it, so a
//! document and its download always match, even when the new version fails; names sent by
//! a browser never become paths on the server; and the same file uploaded twice is stored
//! once. The hash is the document's `content_hash`, so a document needs no other link to
//! its file.
//!
//! An original is deleted when nothing needs it any more: no document of its knowledge
//! base has that content, and no queued file waits for it ([`release`]). Storing files and
//! queueing them happen under [`lock`], as do releases, so a file is never deleted between
//! being stored and being queued.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::engine::Engine;
use crate::store::KbId;
use crate::store::meta::DocumentRecord;

static LOCK: Mutex<()> = Mutex::new(());

/// Held while storing originals and queueing them, and while releasing one.
pub fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `<data_dir>/uploads`.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("uploads")
}

/// Where uploads wait while a request is read and checked (emptied at start-up).
pub fn staging_root(data_dir: &Path) -> PathBuf {
    root(data_dir).join(".staging")
}

/// The folder of one knowledge base's originals.
pub fn kb_dir(data_dir: &Path, kb: KbId) -> PathBuf {
    root(data_dir).join(kb.to_string())
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The stored original with content hash `hash` (None for anything but a hash).
pub fn path(data_dir: &Path, kb: KbId, hash: &str) -> Option<PathBuf> {
    is_hash(hash).then(|| kb_dir(data_dir, kb).join(hash))
}

/// Move a checked file from staging into the store (dropping it when the same content is
/// already there). Call under [`lock`].
pub fn keep(data_dir: &Path, kb: KbId, hash: &str, staged: &Path) -> std::io::Result<()> {
    let target = path(data_dir, kb, hash).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a content hash")
    })?;
    if target.exists() {
        return std::fs::remove_file(staged);
    }
    std::fs::create_dir_all(kb_dir(data_dir, kb))?;
    std::fs::rename(staged, &target)
}

/// Delete the original with content hash `hash` unless a document or a waiting file still
/// needs it. Failures are logged: a leftover file costs disk space, nothing else.
pub fn release(engine: &Engine, kb: KbId, hash: &str) {
    let Some(p) = path(engine.data_dir(), kb, hash) else {
        return;
    };
    let _held = lock();
    match engine.meta.blob_in_use(kb, hash) {
        Ok(false) => match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "cannot delete an original"),
        },
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, "cannot tell whether an original is still needed"),
    }
}

/// Delete a knowledge base's originals (after the knowledge base itself).
pub fn remove_kb(data_dir: &Path, kb: KbId) {
    let dir = kb_dir(data_dir, kb);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %dir.display(), error = %e, "cannot delete originals"),
    }
}

/// Delete what no document and no queued file needs: originals left by a process that
/// stopped between storing an upload and queueing it (or whose release failed), and the
/// folders of knowledge bases that no longer exist. Run at start-up, before the queue.
/// Returns the number of files and folders removed.
pub fn sweep(engine: &Engine) -> crate::store::meta::Result<usize> {
    let root = root(engine.data_dir());
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    let _held = lock();
    let kbs: Vec<KbId> = engine
        .meta
        .kb_names()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kb) = name.parse::<KbId>() else {
            continue; // `.staging` and anything not ours
        };
        if !kbs.contains(&kb) {
            remove_kb(engine.data_dir(), kb);
            removed += 1;
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for file in files.flatten() {
            let hash = file.file_name().to_string_lossy().into_owned();
            if is_hash(&hash) && !engine.meta.blob_in_use(kb, &hash)? {
                match std::fs::remove_file(file.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::warn!(path = %file.path().display(), error = %e,
                        "cannot delete an unneeded original"),
                }
            }
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "deleted uploaded originals that nothing needed any more"
        );
    }
    Ok(removed)
}

/// Where a document's original is: the stored upload for documents uploaded to the server
/// (their source is the path relative to the upload), the file itself for documents
/// ingested from a path on the server with `zhiku ingest`. None when there is no file.
pub fn of_document(data_dir: &Path, doc: &DocumentRecord) -> Option<PathBuf> {
    let source = Path::new(&doc.source);
    let p = if source.is_absolute() {
        source.to_path_buf()
    } else {
        path(data_dir, doc.kb, &doc.content_hash)?
    };
    p.is_file().then_some(p)
}

/// The file name to offer for a document's download: the last part of its source.
pub fn file_name(source: &str) -> &str {
    source
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_content_hashes_only() {
        let d = Path::new("/data");
        let h = "a".repeat(64);
        assert_eq!(
            path(d, 3, &h).unwrap(),
            Path::new("/data/uploads/3").join(&h)
        );
        assert!(path(d, 3, "../../etc/passwd").is_none());
        assert!(path(d, 3, &"g".repeat(64)).is_none());
        assert_eq!(file_name("政策/休假制度.txt"), "休假制度.txt");
        assert_eq!(file_name("/srv/docs/a.pdf"), "a.pdf");
        assert_eq!(file_name("a.pdf"), "a.pdf");
    }
}
