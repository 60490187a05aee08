//! Legacy Office files (.doc, .ppt): converted to .docx/.pptx by LibreOffice
//! (`soffice --headless --convert-to`) when it is installed, in a temporary folder with its
//! own LibreOffice profile (so concurrent conversions do not wait on one profile lock) and a
//! time limit; without LibreOffice, a per-file error that says how to convert.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ExtractError;

/// `[ingest.office]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OfficeOptions {
    /// The LibreOffice program; `None`: `soffice` (then `libreoffice`) on PATH.
    pub soffice: Option<PathBuf>,
    /// Time limit for one conversion (default 120 s); the converter is killed after it.
    pub convert_timeout_secs: u64,
}

impl Default for OfficeOptions {
    fn default() -> Self {
        Self {
            soffice: None,
            convert_timeout_secs: 120,
        }
    }
}

/// The modern format a legacy extension converts to.
pub(crate) fn target(ext: &str) -> Option<&'static str> {
    match ext {
        "doc" => Some("docx"),
        "ppt" => Some("pptx"),
        _ => None,
    }
}

pub(crate) fn not_converted(ext: &str, to: &'static str, why: String) -> ExtractError {
    ExtractError::Legacy {
        extension: ext.to_string(),
        to,
        why,
    }
}

/// The LibreOffice program: the configured one, else `soffice`/`libreoffice` on PATH.
pub fn find_soffice(options: &OfficeOptions) -> Option<PathBuf> {
    if let Some(p) = &options.soffice {
        return p.is_file().then(|| p.clone());
    }
    let path = std::env::var_os("PATH")?;
    for name in ["soffice", "libreoffice"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Convert a .doc/.ppt to .docx/.pptx bytes. `Err` is the per-file error (it names the
/// manual conversion when LibreOffice is missing, and why the conversion failed otherwise).
pub(crate) fn convert(
    bytes: &[u8],
    ext: &str,
    options: &OfficeOptions,
) -> Result<Vec<u8>, ExtractError> {
    let to = target(ext).expect("a legacy extension");
    let Some(soffice) = find_soffice(options) else {
        return Err(not_converted(ext, to, String::new()));
    };
    let fail = |why: String| not_converted(ext, to, format!(" (the conversion failed: {why})"));
    let dir = tempfile::tempdir().map_err(|e| fail(format!("no temporary folder: {e}")))?;
    let input = dir.path().join(format!("input.{ext}"));
    std::fs::write(&input, bytes).map_err(|e| fail(format!("cannot write {input:?}: {e}")))?;
    let out_dir = dir.path().join("out");
    let profile = dir.path().join("profile");
    let _span = tracing::info_span!("soffice_convert", ext, bytes = bytes.len()).entered();
    let started = Instant::now();
    let mut child = Command::new(&soffice)
        .arg(format!("-env:UserInstallation={}", file_url(&profile)))
        .args(["--headless", "--norestore", "--nologo", "--convert-to", to])
        .arg("--outdir")
        .arg(&out_dir)
        .arg(&input)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", soffice.display())))?;
    let limit = Duration::from_secs(options.convert_timeout_secs.max(1));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "LibreOffice took longer than {} s and was stopped",
                    limit.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    let output = out_dir.join(format!("input.{to}"));
    match std::fs::read(&output) {
        Ok(b) if status.success() && !b.is_empty() => {
            tracing::info!(ms = started.elapsed().as_millis() as u64, "converted");
            Ok(b)
        }
        _ => Err(fail(format!(
            "{} exited with {status} and wrote no .{to}{}",
            soffice.display(),
            match stderr.trim() {
                "" => String::new(),
                s => format!(": {}", s.lines().take(3).collect::<Vec<_>>().join(" ")),
            }
        ))),
    }
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}
