//! One module per subcommand; each parses its own flags (clap `Args`/`Subcommand`) and
//! prints its report. The work itself is the library's.

pub mod accounts;
pub mod ask;
pub mod eval;
pub mod finetune;
pub mod ingest;
pub mod kb;
pub mod model;
pub mod search;
pub mod serve;
pub mod terminal;

use anyhow::bail;
use zhiku_core::engine::Engine;

/// The ids of the knowledge bases named by `--kb`; at least one is required.
pub fn kb_ids(engine: &Engine, names: &[String]) -> anyhow::Result<Vec<i64>> {
    if names.is_empty() {
        bail!("name a knowledge base with --kb (see `zhiku kb list`)");
    }
    names
        .iter()
        .map(|n| engine.meta.require_kb(n).map_err(Into::into))
        .collect()
}
