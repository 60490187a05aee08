//! `POST /api/kbs/{kb}/documents`: files, folders and zips in, a queued job out.
//!
//! Each multipart part named `files` is written to a staging folder under the data folder as
//! it arrives (an upload of hundreds of MiB never sits in memory), then checked as a whole
//! ([`super::unpack`]): safe names, zips unpacked within limits, every file typed by its
//! content. Accepted files are kept as originals ([`zhiku_core::index::originals`]) and queued in
//! one job for the ingestion worker; the reply lists each file as `queued` or `failed` with
//! the reason. The staging folder is deleted whatever happens.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;

use zhiku_core::engine::Engine;
use zhiku_core::index::originals;
use zhiku_core::store::KbId;
use zhiku_core::store::meta::{FileStatus, JobKind, NewJobFile};

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;
use zhiku_core::unpack::{self, Checked, Limits, Part, UnpackError, Verdict};

/// Bytes gathered before they are written to the staging file.
const SPOOL_BUFFER: usize = 1 << 20;
/// Refused files named in the error of an upload where nothing was accepted.
const REASONS_SHOWN: usize = 10;

/// The form of an upload (for the API document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// One part per file, each named `files`. A part's file name may be a path relative to
    /// the uploaded folder (`政策/休假制度.txt`, a browser's `webkitRelativePath`); a `.zip`
    /// part is unpacked, its entries placed in the zip's folder.
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
}

/// One file of an upload as received.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadedFile {
    /// Path relative to the upload.
    pub name: String,
    /// `queued`, or `failed` when refused (with the reason).
    pub status: FileStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An accepted upload: its job (poll `GET /api/jobs/{job}`) and its files.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadAccepted {
    pub job: i64,
    pub files: Vec<UploadedFile>,
}

/// Upload files, a folder or zips into a knowledge base (admins and its editors). Each file is typed by
/// its content; accepted files are queued for ingestion in one job.
#[utoipa::path(post, path = "/api/kbs/{kb}/documents", tag = "documents",
    params(("kb" = String, Path)),
    request_body(content = inline(UploadForm), content_type = "multipart/form-data"),
    responses(
        (status = 202, body = UploadAccepted, description = "queued; refused files are listed as failed with the reason"),
        (status = 400, description = "unsafe names, too many files, a zip bomb, or nothing to ingest"),
        (status = 403), (status = 404),
        (status = 413, description = "larger than server.max_upload_mb"),
        (status = 415, description = "no file of a supported type")))]
pub async fn upload(
    State(state): State<AppState>,
    admin: Caller,
    Path(kb): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<UploadAccepted>), ApiError> {
    let config = &state.engine.config.server;
    let max_bytes = config.max_upload_mb.saturating_mul(1 << 20);
    let kb_id = super::rules::managed_kb(&state, &admin, &kb)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(too_large(config.max_upload_mb));
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::BadRequest(format!(
            "send the files as multipart/form-data in parts named `files` ({})",
            e.body_text()
        ))
    })?;
    let limits = Limits {
        max_files: config.max_upload_files,
        max_unzipped: config.max_unzipped_mb.saturating_mul(1 << 20),
    };
    let staging = Staging::create(state.engine.data_dir()).await?;
    let mut parts = Vec::new();
    let mut plain_files = 0usize;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| read_error(e, config.max_upload_mb))?
    {
        if field.name() != Some("files") {
            return Err(ApiError::BadRequest(format!(
                "unexpected form field `{}`: send each file in a part named `files`",
                field.name().unwrap_or("")
            )));
        }
        let Some(raw) = field.file_name().map(str::to_string) else {
            return Err(ApiError::BadRequest(
                "a part named `files` has no file name".into(),
            ));
        };
        if raw.is_empty() {
            continue; // a form's file input left empty
        }
        let name = unpack::clean_name(&raw).map_err(|why| {
            ApiError::BadRequest(format!(
                "unsafe file name {raw:?}: {why}; nothing was stored"
            ))
        })?;
        if unpack::is_junk(&name) {
            continue;
        }
        if !name.to_ascii_lowercase().ends_with(".zip") {
            plain_files += 1;
            if plain_files > limits.max_files {
                return Err(UnpackError::TooManyFiles {
                    max: limits.max_files,
                }
                .into());
            }
        }
        let path = staging.path().join(format!("part-{}", parts.len()));
        spool(&mut field, &path, config.max_upload_mb).await?;
        parts.push(Part { name, path });
    }
    if parts.is_empty() {
        return Err(ApiError::BadRequest(
            "the upload holds no files: send each file in a multipart part named `files`".into(),
        ));
    }
    let engine = state.engine.clone();
    let actor = admin.user.name.clone();
    let (job, checked) = tokio::task::spawn_blocking(move || {
        intake(&engine, kb_id, &actor, staging, parts, &limits)
    })
    .await
    .map_err(ApiError::internal)??;
    state.ingest.notify();
    let queued = checked
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Accepted { .. }))
        .count();
    admin.audit(
        &state,
        "document.upload",
        &kb,
        &format!(
            "job {job}: {queued} queued, {} refused",
            checked.len() - queued
        ),
    );
    let files = checked
        .into_iter()
        .map(|c| match c.verdict {
            Verdict::Accepted { .. } => UploadedFile {
                name: c.name,
                status: FileStatus::Queued,
                message: None,
            },
            Verdict::Refused { message, .. } => UploadedFile {
                name: c.name,
                status: FileStatus::Failed,
                message: Some(message),
            },
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(UploadAccepted { job, files })))
}

fn too_large(mb: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the upload is larger than {mb} MiB (server.max_upload_mb); upload fewer files at a time"
    ))
}

fn read_error(e: MultipartError, max_mb: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(max_mb)
    } else {
        ApiError::BadRequest(format!("cannot read the upload: {}", e.body_text()))
    }
}

impl From<UnpackError> for ApiError {
    fn from(e: UnpackError) -> Self {
        if e.is_bad_upload() {
            ApiError::BadRequest(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

/// Write one part to `path` as it arrives.
async fn spool(field: &mut Field<'_>, path: &FsPath, max_mb: u64) -> Result<(), ApiError> {
    let p = path.to_path_buf();
    let mut file = Some(
        tokio::task::spawn_blocking(move || std::fs::File::create(p))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?,
    );
    let mut buf = Vec::with_capacity(SPOOL_BUFFER);
    loop {
        let chunk = field.chunk().await.map_err(|e| read_error(e, max_mb))?;
        let last = chunk.is_none();
        if let Some(c) = chunk {
            buf.extend_from_slice(&c);
        }
        if buf.len() >= SPOOL_BUFFER || (last && !buf.is_empty()) {
            let mut f = file.take().expect("the file is put back after each write");
            let data = std::mem::replace(&mut buf, Vec::with_capacity(SPOOL_BUFFER));
            file = Some(
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    f.write_all(&data).map(|_| f)
                })
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?,
            );
        }
        if last {
            return Ok(());
        }
    }
}

/// Check the parts, keep the accepted files and queue them in one job.
fn intake(
    engine: &Engine,
    kb: KbId,
    actor: &str,
    staging: Staging,
    parts: Vec<Part>,
    limits: &Limits,
) -> Result<(i64, Vec<Checked>), ApiError> {
    let checked = unpack::check_parts(parts, staging.path(), limits)?;
    let accepted = checked
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Accepted { .. }))
        .count();
    if accepted == 0 {
        return Err(nothing_accepted(&checked));
    }
    let data_dir = engine.data_dir();
    let _held = originals::lock();
    let mut files = Vec::with_capacity(checked.len());
    for c in &checked {
        files.push(match &c.verdict {
            Verdict::Accepted { staged, hash, size } => {
                originals::keep(data_dir, kb, hash, staged).map_err(ApiError::internal)?;
                NewJobFile {
                    name: &c.name,
                    blob: Some(hash),
                    size: *size,
                    refused: None,
                    document_id: None,
                }
            }
            Verdict::Refused { message, .. } => NewJobFile {
                name: &c.name,
                blob: None,
                size: 0,
                refused: Some(message),
                document_id: None,
            },
        });
    }
    let job = engine
        .meta
        .create_upload_job(kb, JobKind::Upload, actor, &files)?;
    Ok((job, checked))
}

/// 415 when every file is of a wrong type, else 400; with each file's reason.
fn nothing_accepted(checked: &[Checked]) -> ApiError {
    let mut wrong_types = true;
    let mut reasons = Vec::new();
    for c in checked {
        if let Verdict::Refused {
            message,
            wrong_type,
        } = &c.verdict
        {
            wrong_types &= *wrong_type;
            if reasons.len() < REASONS_SHOWN {
                reasons.push(format!("`{}`: {message}", c.name));
            }
        }
    }
    if checked.len() > REASONS_SHOWN {
        reasons.push(format!("and {} more", checked.len() - REASONS_SHOWN));
    }
    let message = format!("nothing to ingest: {}", reasons.join("; "));
    if wrong_types {
        ApiError::UnsupportedMediaType(message)
    } else {
        ApiError::BadRequest(message)
    }
}

/// A request's staging folder, deleted when dropped.
struct Staging(PathBuf);

impl Staging {
    async fn create(data_dir: &FsPath) -> Result<Self, ApiError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = originals::staging_root(data_dir).join(format!(
            "{nanos:x}-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let d = dir.clone();
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(d))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        Ok(Self(dir))
    }

    fn path(&self) -> &FsPath {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot delete a staging folder");
        }
    }
}
