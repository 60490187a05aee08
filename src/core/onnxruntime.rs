//! The onnxruntime library, loaded at run time (ort's `load-dynamic`) by the OCR engine
//! (always) and the onnx embedder (cargo feature `onnx`): which file, and loading it once per
//! process. `[embed] onnxruntime`, else env `ORT_DYLIB_PATH`, else [`DEFAULT_ONNXRUNTIME`]
//! when that file exists.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Where `scripts/fetch-models.sh` puts onnxruntime, relative to the working folder.
pub const DEFAULT_ONNXRUNTIME: &str = "models/onnxruntime/libonnxruntime.so.1.31.1";

const RUNTIME_HINT: &str = "set [embed] onnxruntime (env ZHIKU_EMBED__ONNXRUNTIME) or ORT_DYLIB_PATH \
     to a libonnxruntime.so (1.24 or newer, e.g. onnxruntime/capi/libonnxruntime.so.* from the \
     PyPI onnxruntime wheel), or run scripts/fetch-models.sh to fetch \
     models/onnxruntime/libonnxruntime.so.1.31.1";

/// The onnxruntime library to load: `configured` (`[embed] onnxruntime`), else env
/// `ORT_DYLIB_PATH`, else [`DEFAULT_ONNXRUNTIME`] when it exists. The error says how to get one.
pub fn resolve_onnxruntime(configured: Option<&Path>) -> std::result::Result<PathBuf, String> {
    resolve_onnxruntime_with(
        configured,
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
    )
}

pub(crate) fn resolve_onnxruntime_with(
    configured: Option<&Path>,
    env: Option<PathBuf>,
) -> std::result::Result<PathBuf, String> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = env.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p);
    }
    let default = Path::new(DEFAULT_ONNXRUNTIME);
    if default.is_file() {
        return Ok(default.to_path_buf());
    }
    Err(format!(
        "no onnxruntime library: [embed] onnxruntime and ORT_DYLIB_PATH are unset and \
         {DEFAULT_ONNXRUNTIME} does not exist; {RUNTIME_HINT}"
    ))
}

/// The library loaded in this process (ort keeps the first one for good).
static LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Load onnxruntime from `path` once per process. A missing file, a file that is not an
/// onnxruntime library, a too old version or a second, different library is an error (ort
/// itself would panic on first use without a library).
pub fn load_onnxruntime(path: &Path) -> std::result::Result<(), String> {
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    let canonical = path.canonicalize().map_err(|e| {
        format!(
            "onnxruntime library {} cannot be opened ({e}); {RUNTIME_HINT}",
            path.display()
        )
    })?;
    if let Some(prev) = loaded.as_ref() {
        if *prev == canonical {
            return Ok(());
        }
        return Err(format!(
            "cannot load onnxruntime from {}: this process already uses {} (one onnxruntime \
             per process)",
            path.display(),
            prev.display()
        ));
    }
    if !canonical.is_file() {
        return Err(format!(
            "onnxruntime library {} is not a file; {RUNTIME_HINT}",
            path.display()
        ));
    }
    let outcome = std::panic::catch_unwind(|| ort::init_from(&canonical).map(|_builder| ()));
    match outcome {
        Ok(Ok(())) => {
            *loaded = Some(canonical);
            Ok(())
        }
        Ok(Err(e)) => Err(format!(
            "cannot load onnxruntime from {}: {e}; {RUNTIME_HINT}",
            path.display()
        )),
        Err(panic) => Err(format!(
            "cannot load onnxruntime from {}: {}; {RUNTIME_HINT}",
            path.display(),
            panic_message(&*panic)
        )),
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "onnxruntime panicked".into())
}
