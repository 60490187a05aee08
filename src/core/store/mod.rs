//! The three stores. SQLite ([`meta`]) holds the truth of which documents and chunks exist,
//! with chunk text; the vector store ([`vector`]) and the keyword index ([`keyword`]) are
//! derived indexes that `zhiku reindex` rebuilds from it.

pub mod keyword;
pub mod meta;
pub mod vector;

/// Identifier of a chunk: SQLite's rowid of the `chunks` table, shared by all three stores.
pub type ChunkId = u64;
/// Identifier of a document (SQLite rowid of `documents`).
pub type DocId = i64;
/// Identifier of a knowledge base (SQLite rowid of `knowledge_bases`).
pub type KbId = i64;

/// One hit from a derived index: a chunk id and that index's own score (higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredChunk {
    pub chunk: ChunkId,
    pub score: f32,
}

/// The principal every reader of a knowledge base has. A chunk whose readers are
/// `["*"]` is unrestricted: anyone who may read its knowledge base may read it.
pub const EVERYONE: &str = "*";

/// The principal of a group on a restricted chunk's readers list (`g:<group id>`).
pub fn group_principal(group: i64) -> String {
    format!("g:{group}")
}

/// Whose rights a search runs with: the filter on chunks' readers that both derived
/// indexes apply inside their queries (on top of the knowledge-base filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// Site admins and local tools run by the operator: every chunk of the knowledge bases
    /// searched, restricted or not.
    All,
    /// Only chunks whose readers list holds one of these principals ([`EVERYONE`] and the
    /// caller's [`group_principal`]s).
    Principals(Vec<String>),
}

impl Reader {
    /// Someone with no group: only unrestricted chunks.
    pub fn everyone() -> Self {
        Reader::Principals(vec![EVERYONE.to_string()])
    }

    /// A member of these groups.
    pub fn groups(groups: impl IntoIterator<Item = i64>) -> Self {
        let mut p = vec![EVERYONE.to_string()];
        p.extend(groups.into_iter().map(group_principal));
        Reader::Principals(p)
    }

    /// Whether a chunk (or document) with these readers may be read.
    pub fn allows(&self, readers: &[String]) -> bool {
        match self {
            Reader::All => true,
            Reader::Principals(p) => readers.iter().any(|r| p.contains(r)),
        }
    }

    /// The principals to filter on; `None` for [`Reader::All`] (no filter).
    pub fn principals(&self) -> Option<&[String]> {
        match self {
            Reader::All => None,
            Reader::Principals(p) => Some(p),
        }
    }
}
