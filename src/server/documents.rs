//! Documents: a knowledge base's list (searchable), delete, re-index, download of the
//! original, and one passage by id for the citation viewer.
//!
//! Readers of a knowledge base may list, download and view passages of the documents their
//! groups may read (folder and document rules); admins delete and re-index. A document or
//! passage the caller may not read (its knowledge base, or a restricted folder or document)
//! answers 404, the same as a missing one, so ids reveal nothing, title included. Downloads, deletes and re-indexes are
//! written to the audit log.

use std::io::Read;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::ReceiverStream;

use zhiku_core::index::{self, originals};
use zhiku_core::store::meta::{DocumentRecord, JobKind, NewJobFile};
use zhiku_core::store::{ChunkId, DocId, KbId};

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;

/// Documents listed when the caller does not say, and most in one page.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// Bytes per piece of a download.
const DOWNLOAD_PIECE: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// A document of a knowledge base.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentInfo {
    pub id: DocId,
    pub title: String,
    /// The file's path relative to its upload (`政策/休假制度.txt`); for files ingested from
    /// the server's disk by `zhiku ingest`, the file name.
    pub name: String,
    /// The format's name (`pdf`, `docx`, `txt`, `markdown`, `html`, `sheet`, …).
    pub format: String,
    pub pages: u32,
    /// Pages indexed from their text layer (null: ingested before this was recorded).
    pub text_pages: Option<u32>,
    /// Pages indexed from OCR (scans), 1-based.
    pub ocr_pages: Vec<u32>,
    /// Pages not indexed (no text layer and no OCR, garbled, OCR failed), 1-based; the
    /// warnings say why.
    pub failed_pages: Vec<u32>,
    pub chunks: u64,
    /// Bytes.
    pub size: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Problems that did not stop the file (a garbled page, …).
    pub warnings: Vec<String>,
    /// The file changed after its chunks were edited: the edits no longer apply and wait
    /// for an admin's review (`GET /api/documents/{id}/chunks`).
    pub edits_need_review: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentList {
    /// Documents that match, over all pages.
    pub total: u64,
    pub documents: Vec<DocumentInfo>,
}

/// A re-index job (poll `GET /api/jobs/{job}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobRef {
    pub job: i64,
}

/// One passage, for the citation viewer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChunkView {
    pub id: ChunkId,
    pub document_id: DocId,
    /// The document's title.
    pub title: String,
    /// The document's name (as in the document list).
    pub name: String,
    /// 1-based page (1 for formats without pages).
    pub page: u32,
    /// Headings above the passage, outermost first.
    pub heading_path: Vec<String>,
    pub text: String,
    /// Character offsets of the passage in its page's text.
    pub char_start: u32,
    pub char_end: u32,
    /// Knowledge base name.
    pub kb: String,
}

/// How a document is named to users: relative to its upload, never a server path.
pub(crate) fn display_name(source: &str) -> String {
    if std::path::Path::new(source).is_absolute() {
        originals::file_name(source).to_string()
    } else {
        source.to_string()
    }
}

/// The knowledge base `name` when the caller may read it; 404 otherwise (missing or not).
fn readable_kb(state: &AppState, caller: &Caller, name: &str) -> Result<KbId, ApiError> {
    let readable = caller.readable_kbs(state)?;
    match state.engine.meta.kb_id(name)? {
        Some(id) if readable.contains(&id) => Ok(id),
        _ => Err(ApiError::NotFound(format!(
            "no knowledge base `{name}` that you may read"
        ))),
    }
}

/// Document `id` when the caller may read its knowledge base and the document itself (its
/// readers in SQLite); 404 otherwise.
fn readable_document(
    state: &AppState,
    caller: &Caller,
    id: DocId,
) -> Result<DocumentRecord, ApiError> {
    let missing = || ApiError::NotFound(format!("no document {id}"));
    let meta = &state.engine.meta;
    let doc = meta.document(id)?.ok_or_else(missing)?;
    if !caller.readable_kbs(state)?.contains(&doc.kb) {
        return Err(missing());
    }
    let readers = meta.document_readers(id)?.unwrap_or_default();
    if !meta.reader_of(&caller.user)?.allows(&readers) {
        return Err(missing());
    }
    Ok(doc)
}

pub(crate) fn kb_name(state: &AppState, kb: KbId) -> Result<String, ApiError> {
    Ok(state.engine.meta.kb_name(kb)?.unwrap_or_default())
}

/// A knowledge base's documents, by name; `q` searches titles and names.
#[utoipa::path(get, path = "/api/kbs/{kb}/documents", tag = "documents",
    params(("kb" = String, Path),
        ("q" = Option<String>, Query, description = "part of a title or name"),
        ("offset" = Option<usize>, Query),
        ("limit" = Option<usize>, Query, description = "default 50, at most 500")),
    responses((status = 200, body = DocumentList), (status = 400), (status = 404)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(kb): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DocumentList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let kb = readable_kb(&state, &caller, &kb)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let reader = state.engine.meta.reader_of(&caller.user)?;
    let (total, docs) = state
        .engine
        .meta
        .readable_document_page(kb, &q.q, &reader, q.offset, limit)?;
    let review = state.engine.meta.documents_to_review(kb)?;
    let documents = docs
        .into_iter()
        .map(|d| DocumentInfo {
            name: display_name(&d.source),
            id: d.id,
            title: d.title,
            format: d.format,
            pages: d.pages,
            text_pages: d.reading.as_ref().map(|r| r.text_pages),
            ocr_pages: d
                .reading
                .as_ref()
                .map(|r| r.ocr_pages.clone())
                .unwrap_or_default(),
            failed_pages: d
                .reading
                .as_ref()
                .map(|r| r.failed_pages.clone())
                .unwrap_or_default(),
            chunks: d.chunks,
            size: d.size,
            created_at: d.created_at,
            warnings: d.warnings,
            edits_need_review: review.contains(&d.id),
        })
        .collect();
    Ok(Json(DocumentList { total, documents }))
}

/// Delete a document from all three stores, with its stored original (admins and editors
/// of its knowledge base).
#[utoipa::path(delete, path = "/api/documents/{id}", tag = "documents",
    params(("id" = i64, Path)), responses((status = 204), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    admin: Caller,
    Path(id): Path<DocId>,
) -> Result<StatusCode, ApiError> {
    let doc = readable_document(&state, &admin, id)?;
    super::rules::require_manager(&state, &admin, doc.kb)?;
    let engine = state.engine.clone();
    let (kb, hash) = (doc.kb, doc.content_hash.clone());
    tokio::task::spawn_blocking(move || {
        index::delete_documents(&engine, &[id])?;
        originals::release(&engine, kb, &hash);
        Ok::<_, index::IndexError>(())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(index_error)?;
    let target = format!("{}/{}", kb_name(&state, doc.kb)?, display_name(&doc.source));
    admin.audit(
        &state,
        "document.delete",
        &target,
        &format!("document {id}"),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Extract a document again from its stored original, as a job (admins and editors of its
/// knowledge base).
#[utoipa::path(post, path = "/api/documents/{id}/reindex", tag = "documents",
    params(("id" = i64, Path)),
    responses((status = 202, body = JobRef), (status = 403), (status = 404),
        (status = 409, description = "the original is not stored on the server")))]
pub async fn reindex(
    State(state): State<AppState>,
    admin: Caller,
    Path(id): Path<DocId>,
) -> Result<(StatusCode, Json<JobRef>), ApiError> {
    let doc = readable_document(&state, &admin, id)?;
    super::rules::require_manager(&state, &admin, doc.kb)?;
    let name = display_name(&doc.source);
    if originals::of_document(state.engine.data_dir(), &doc).is_none() {
        return Err(ApiError::Conflict(format!(
            "the original of `{name}` is not stored on the server; upload it again instead"
        )));
    }
    let uploaded = !std::path::Path::new(&doc.source).is_absolute();
    let job = {
        let _held = originals::lock();
        state.engine.meta.create_upload_job(
            doc.kb,
            JobKind::Reindex,
            &admin.user.name,
            &[NewJobFile {
                name: &doc.source,
                blob: uploaded.then_some(doc.content_hash.as_str()),
                size: doc.size,
                refused: None,
                document_id: Some(doc.id),
            }],
        )?
    };
    state.ingest.notify();
    let target = format!("{}/{name}", kb_name(&state, doc.kb)?);
    admin.audit(&state, "document.reindex", &target, &format!("job {job}"));
    Ok((StatusCode::ACCEPTED, Json(JobRef { job })))
}

/// The content type of a download, by the file's extension (then its format).
fn content_type(name: &str, format: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match (ext.as_str(), format) {
        ("pdf", _) | (_, "pdf") => "application/pdf",
        ("docx", _) | (_, "docx") => {
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        }
        ("csv", _) => "text/csv",
        ("md" | "markdown", _) | (_, "markdown") => "text/markdown",
        ("html" | "htm", _) | (_, "html") => "text/html",
        ("txt" | "text" | "log", _) | (_, "txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

/// `attachment` with the name in RFC 5987 form (Chinese names survive) and an ASCII
/// fallback for old clients.
fn attachment(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Download a document's original file (readers of its knowledge base).
#[utoipa::path(get, path = "/api/documents/{id}/file", tag = "documents",
    params(("id" = i64, Path)),
    responses((status = 200, description = "the file, as an attachment", content_type = "application/octet-stream"),
        (status = 404, description = "no such document, one you may not read, or no stored original")))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<DocId>,
) -> Result<Response, ApiError> {
    let doc = readable_document(&state, &caller, id)?;
    let Some(path) = originals::of_document(state.engine.data_dir(), &doc) else {
        return Err(ApiError::NotFound(format!(
            "the original file of document {id} is not stored on the server"
        )));
    };
    let file = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        Ok::<_, std::io::Error>((f, len))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let (mut file, len) = file;
    // Read on a blocking thread, piece by piece: a large file never sits in memory, and a
    // client that goes away stops the reading.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; DOWNLOAD_PIECE];
            let piece = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = piece.is_err();
            if tx.blocking_send(piece).is_err() || failed {
                break;
            }
        }
    });
    let name = originals::file_name(&doc.source).to_string();
    let target = format!("{}/{}", kb_name(&state, doc.kb)?, display_name(&doc.source));
    caller.audit(
        &state,
        "document.download",
        &target,
        &format!("document {id}"),
    );
    let mut res = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name, &doc.format)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&attachment(&name)).map_err(ApiError::internal)?,
    );
    // An uploaded HTML page must never run as part of this site.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    Ok(res)
}

/// One passage by id (readers of its knowledge base), for the citation viewer.
#[utoipa::path(get, path = "/api/chunks/{id}", tag = "documents",
    params(("id" = u64, Path)), responses((status = 200, body = ChunkView), (status = 404)))]
pub async fn chunk(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<ChunkId>,
) -> Result<Json<ChunkView>, ApiError> {
    let missing = || ApiError::NotFound(format!("no passage {id}"));
    let meta = &state.engine.meta;
    let c = meta.chunks(&[id])?.pop().ok_or_else(missing)?;
    if !caller.readable_kbs(&state)?.contains(&c.kb) {
        return Err(missing());
    }
    if !meta.reader_of(&caller.user)?.allows(&c.readers) {
        return Err(missing());
    }
    Ok(Json(ChunkView {
        kb: kb_name(&state, c.kb)?,
        id: c.id,
        document_id: c.document_id,
        title: c.title,
        name: display_name(&c.document),
        page: c.page,
        heading_path: c.heading_path,
        text: c.text,
        char_start: c.char_start,
        char_end: c.char_end,
    }))
}

pub(crate) fn index_error(e: index::IndexError) -> ApiError {
    match e {
        index::IndexError::Engine(e) => e.into(),
        other => ApiError::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_names_survive_content_disposition() {
        assert_eq!(
            attachment("休假制度.txt"),
            "attachment; filename=\"____.txt\"; filename*=UTF-8''%E4%BC%91%E5%81%87%E5%88%B6%E5%BA%A6.txt"
        );
        assert_eq!(
            attachment("a \"b\".pdf"),
            "attachment; filename=\"a _b_.pdf\"; filename*=UTF-8''a%20%22b%22.pdf"
        );
        assert!(HeaderValue::from_str(&attachment("x\u{7f}y;.txt")).is_ok());
    }

    #[test]
    fn content_types_and_names() {
        assert_eq!(content_type("a.PDF", "pdf"), "application/pdf");
        assert_eq!(content_type("a.csv", "txt"), "text/csv");
        assert_eq!(content_type("a.htm", "html"), "text/html");
        assert_eq!(content_type("noext", "txt"), "text/plain");
        assert_eq!(display_name("/srv/docs/手册.pdf"), "手册.pdf");
        assert_eq!(display_name("政策/休假制度.txt"), "政策/休假制度.txt");
    }
}
