//! The QA file the benchmarks ask questions from (CMRC 2018 trial, SQuAD layout).

use std::path::PathBuf;

use zhiku_core::eval::QaSet;

/// The QA file: the first command-line argument that is not a flag (`cargo bench --bench
/// NAME -- FILE`), else env `ZHIKU_BENCH_QA`, else `../shared/data/cmrc2018_trial.json`.
/// Skips the benchmark when it is missing.
pub fn load() -> (PathBuf, QaSet) {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("ZHIKU_BENCH_QA").ok())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/cmrc2018_trial.json"));
    if !path.exists() {
        crate::common::skip(&format!(
            "QA file {} not found (pass a path or set ZHIKU_BENCH_QA)",
            path.display()
        ));
    }
    match QaSet::load(&path) {
        Ok(set) => (path, set),
        Err(e) => panic!("QA file {}: {e}", path.display()),
    }
}
