//! Helpers shared by every benchmark in `bench/` (included with `#[path]`, not a crate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zhiku_core::config::{Config, EmbedConfig};
use zhiku_core::embed::Embedder;
use zhiku_core::engine::Engine;

/// Print why the benchmark cannot run and exit successfully (CI builds the benches but has
/// no data for them).
pub fn skip(why: &str) -> ! {
    println!("skipped: {why}");
    std::process::exit(0)
}

/// The embedding model folder: env `ZHIKU_BENCH_MODEL`, else `models/multilingual-e5-small`
/// (written by `scripts/fetch-models.sh`). Skips the benchmark when it is missing.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("ZHIKU_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models/multilingual-e5-small"));
    if !dir.join("config.json").exists() {
        skip(&format!(
            "no embedding model in {} (run scripts/fetch-models.sh or set ZHIKU_BENCH_MODEL)",
            dir.display()
        ));
    }
    dir
}

/// The default configuration with its data folder in `data_dir` and the model `model`,
/// extraction in workers of the `zhiku` binary cargo built for the benchmarks.
pub fn config(data_dir: &Path, model: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        embed: EmbedConfig {
            model: model.to_path_buf(),
            ..Default::default()
        },
        ..Default::default()
    };
    c.ingest.worker_binary = Some(env!("CARGO_BIN_EXE_zhiku").into());
    c
}

/// Load the embedding model the way the CLI does (through an engine on a scratch folder), so
/// benchmarks can share it between engines and wrap it.
pub fn load_embedder(model: &Path) -> Arc<dyn Embedder> {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let engine = Engine::open(config(scratch.path(), model)).expect("open scratch engine");
    engine.embedder().expect("load the embedding model")
}

/// Open an engine on `data_dir` using `embedder` (loaded from `model`).
pub fn open_engine(data_dir: &Path, model: &Path, embedder: Arc<dyn Embedder>) -> Engine {
    Engine::open(config(data_dir, model))
        .expect("open engine")
        .with_embedder(embedder)
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Disk space taken by the files under `path` (allocated blocks: sparse and preallocated
/// files count what they use), in MiB.
pub fn dir_size_mib(path: &Path) -> f64 {
    use std::os::unix::fs::MetadataExt;
    fn walk(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        }
    }
    walk(path) as f64 / (1024.0 * 1024.0)
}

/// A line describing the machine and its load, printed above every table: figures taken
/// while something else runs (a build) are not comparable.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!("{cores} cores, load average {load}")
}

/// A markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "table row width");
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
        println!("{}", line(&self.header));
        let rule: Vec<String> = self
            .header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---".into() } else { "---:".into() })
            .collect();
        println!("{}", line(&rule));
        for r in &self.rows {
            println!("{}", line(r));
        }
        println!();
    }
}

/// Format a number with `digits` decimals.
pub fn f(value: f64, digits: usize) -> String {
    format!("{value:.digits$}")
}
