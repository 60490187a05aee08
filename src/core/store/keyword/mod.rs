//! BM25 keyword search over chunks (tantivy), with a Chinese analyzer (jieba, search mode,
//! traditional → simplified folding) shared by indexing and querying.
//!
//! The index is derived from SQLite: it holds ids and the inverted index of `title` and
//! `text`, not the text itself. Knowledge-base and reader filtering happen inside the
//! tantivy query, so chunks outside the caller's knowledge bases, or restricted to groups the
//! caller is not in, are never scored or returned.

mod tokenizer;

pub(crate) use tokenizer::fold_char;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::directory::error::LockError;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{
    Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument, TantivyError,
    Term,
};

use self::tokenizer::{ZhTokenizer, jieba_for};
use super::{ChunkId, DocId, KbId, Reader, ScoredChunk};

/// Name under which the analyzer is registered in the index's tokenizer manager.
const TOKENIZER: &str = "zh";
/// Heap of the single index writer, split among its indexing threads.
const WRITER_HEAP_BYTES: usize = 50_000_000;
/// Weight of a title match relative to a text match.
const TITLE_BOOST: f32 = 0.5;

/// One chunk to index.
#[derive(Debug, Clone, Copy)]
pub struct KeywordDoc<'a> {
    pub chunk: ChunkId,
    pub kb: KbId,
    pub doc: DocId,
    pub title: &'a str,
    pub text: &'a str,
    /// Who may read the chunk: [`super::EVERYONE`] or group principals.
    pub readers: &'a [String],
}

/// Errors of the keyword index; each names the index directory or dictionary file.
#[derive(Debug, thiserror::Error)]
pub enum KeywordError {
    #[error("cannot create the keyword index directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the keyword index at {path}: {source}; if it is damaged, delete that \
         directory and run `zhiku reindex`"
    )]
    Open { path: PathBuf, source: TantivyError },
    #[error(
        "the keyword index at {path} was built with a different layout (another zhiku \
         version); delete that directory and run `zhiku reindex`"
    )]
    IncompatibleSchema { path: PathBuf },
    #[error(
        "the keyword index at {path} is locked by another zhiku process (a running server or \
         indexing job); stop that process or let it do the writing, then retry"
    )]
    Locked { path: PathBuf },
    #[error("cannot read the jieba user dictionary {path}: {source}")]
    UserDictIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("jieba user dictionary {path}, line {line}: {message}")]
    UserDict {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("keyword index at {path}: {op} failed: {source}")]
    Tantivy {
        path: PathBuf,
        op: &'static str,
        source: TantivyError,
    },
}

/// A malformed line of a jieba user dictionary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DictLineError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// Check the text of a jieba user dictionary line by line, as loading it would; returns
/// the number of words.
pub fn check_user_dict(text: &str) -> Result<usize, DictLineError> {
    let mut words = 0;
    for (i, line) in text.lines().enumerate() {
        match tokenizer::parse_dict_line(line) {
            Ok(Some(_)) => words += 1,
            Ok(None) => {}
            Err(message) => {
                return Err(DictLineError {
                    line: i + 1,
                    message,
                });
            }
        }
    }
    Ok(words)
}

#[derive(Clone, Copy)]
struct Fields {
    chunk: Field,
    kb: Field,
    doc: Field,
    title: Field,
    text: Field,
    readers: Field,
}

fn schema() -> (Schema, Fields) {
    schema_of(true)
}

/// The layout, with or without the `readers` field that zhiku versions before folder and
/// document rules lacked (such an index is rebuilt from SQLite, see [`KeywordIndex::open`]).
fn schema_of(with_readers: bool) -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        chunk: builder.add_u64_field("chunk", INDEXED | FAST | STORED),
        kb: builder.add_i64_field("kb", INDEXED | FAST),
        doc: builder.add_i64_field("doc", INDEXED),
        title: builder.add_text_field("title", text_options.clone()),
        text: builder.add_text_field("text", text_options),
        readers: if with_readers {
            builder.add_text_field("readers", STRING)
        } else {
            Field::from_field_id(u32::MAX)
        },
    };
    (builder.build(), fields)
}

/// The tantivy keyword index. `Send + Sync`: share it behind an `Arc`; writes are
/// serialised on one internal writer, searches run concurrently.
pub struct KeywordIndex {
    path: PathBuf,
    index: Index,
    reader: IndexReader,
    /// Opened on the first write, so that read-only users (a CLI `ask` beside a running
    /// server) do not need the directory's writer lock.
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    fields: Fields,
    /// The query-side analyzer; replaced (with the index's registered one) when the user
    /// dictionary changes.
    analyzer: Mutex<ZhTokenizer>,
    /// The index on disk had the layout before reader filters and was recreated empty: the
    /// caller re-adds every chunk from SQLite.
    rebuilt: bool,
}

impl KeywordIndex {
    /// Open or create the index in `dir`; `user_dict` is an optional jieba user dictionary file (lines "word [freq] [tag]"), so admins add company terms like 上海交通大学 that jieba would otherwise split.
    ///
    /// The index's writer lock is taken on the first write (`add`, `delete_documents`,
    /// `clear`), which fails with [`KeywordError::Locked`] while another process writes.
    pub fn open(dir: &Path, user_dict: Option<&Path>) -> Result<Self, KeywordError> {
        let path = dir.to_path_buf();
        let jieba = jieba_for(user_dict)?;
        std::fs::create_dir_all(dir).map_err(|source| KeywordError::CreateDir {
            path: path.clone(),
            source,
        })?;
        let open_err = |source| KeywordError::Open {
            path: path.clone(),
            source,
        };
        let directory = MmapDirectory::open(dir).map_err(|e| open_err(e.into()))?;
        let (schema, fields) = schema();
        let exists = Index::exists(&directory).map_err(|e| open_err(e.into()))?;
        let mut rebuilt = false;
        let index = if exists {
            let index = Index::open(directory).map_err(open_err)?;
            if index.schema() == schema {
                index
            } else if index.schema() == schema_of(false).0 {
                // Derived data of an older zhiku: start again empty; the engine queues every
                // document, whose chunks are re-added from SQLite with their readers.
                drop(index);
                tracing::warn!(
                    path = %path.display(),
                    "the keyword index predates reader filters; recreating it (its chunks are \
                     re-added from SQLite in the background)"
                );
                recreate(dir).map_err(|source| KeywordError::CreateDir {
                    path: path.clone(),
                    source,
                })?;
                rebuilt = true;
                let directory = MmapDirectory::open(dir).map_err(|e| open_err(e.into()))?;
                Index::create(directory, schema, IndexSettings::default()).map_err(open_err)?
            } else {
                return Err(KeywordError::IncompatibleSchema { path });
            }
        } else {
            Index::create(directory, schema, IndexSettings::default()).map_err(open_err)?
        };
        let analyzer = ZhTokenizer::new(jieba);
        index.tokenizers().register(TOKENIZER, analyzer.clone());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(open_err)?;
        Ok(Self {
            path,
            index,
            reader,
            writer: Mutex::new(None),
            fields,
            analyzer: Mutex::new(analyzer),
            rebuilt,
        })
    }

    /// Whether [`open`](Self::open) found an index of the layout before reader filters and
    /// recreated it empty (every chunk must be added again).
    pub fn rebuilt(&self) -> bool {
        self.rebuilt
    }

    fn err(&self, op: &'static str) -> impl FnOnce(TantivyError) -> KeywordError + '_ {
        move |source| KeywordError::Tantivy {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// The writer, opened on first use.
    fn writer(&self) -> Result<MutexGuard<'_, Option<IndexWriter<TantivyDocument>>>, KeywordError> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            let writer = self.index.writer(WRITER_HEAP_BYTES).map_err(|e| match e {
                TantivyError::LockFailure(LockError::LockBusy, _) => KeywordError::Locked {
                    path: self.path.clone(),
                },
                source => KeywordError::Tantivy {
                    path: self.path.clone(),
                    op: "opening the index writer",
                    source,
                },
            })?;
            *guard = Some(writer);
        }
        Ok(guard)
    }

    /// Buffers chunks in the writer; visible to searches after [`commit`](Self::commit).
    /// A chunk id already in the index is replaced, not duplicated.
    pub fn add(&self, docs: &[KeywordDoc<'_>]) -> Result<(), KeywordError> {
        if docs.is_empty() {
            return Ok(());
        }
        let f = self.fields;
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened");
        for d in docs {
            writer.delete_term(Term::from_field_u64(f.chunk, d.chunk));
            let mut doc = TantivyDocument::new();
            doc.add_u64(f.chunk, d.chunk);
            doc.add_i64(f.kb, d.kb);
            doc.add_i64(f.doc, d.doc);
            doc.add_text(f.title, d.title);
            doc.add_text(f.text, d.text);
            for r in d.readers {
                doc.add_text(f.readers, r);
            }
            writer
                .add_document(doc)
                .map_err(self.err("adding a chunk"))?;
        }
        Ok(())
    }

    /// Buffers the removal of every chunk of these documents.
    pub fn delete_documents(&self, docs: &[DocId]) -> Result<(), KeywordError> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened");
        for &doc in docs {
            writer.delete_term(Term::from_field_i64(self.fields.doc, doc));
        }
        Ok(())
    }

    /// Buffers the removal of these chunks (a disabled chunk).
    pub fn delete_chunks(&self, chunks: &[ChunkId]) -> Result<(), KeywordError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut guard = self.writer()?;
        let writer = guard.as_mut().expect("writer opened");
        for &chunk in chunks {
            writer.delete_term(Term::from_field_u64(self.fields.chunk, chunk));
        }
        Ok(())
    }

    /// Makes buffered changes durable and visible to searches at once. Without buffered
    /// changes in this process it only reloads the reader (picking up other processes'
    /// commits).
    pub fn commit(&self) -> Result<(), KeywordError> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = guard.as_mut() {
            writer.commit().map_err(self.err("committing"))?;
        }
        self.reader
            .reload()
            .map_err(self.err("reloading the reader"))
    }

    /// BM25 search, best first, restricted to chunks of `kbs` (empty `kbs` → no result).
    /// The query goes through the same analyzer as the text; any term may match (OR).
    pub fn search(
        &self,
        query: &str,
        kbs: &[KbId],
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KeywordError> {
        self.search_as(query, kbs, &Reader::All, limit)
    }

    /// [`search`](Self::search) with `reader`'s rights: only chunks whose readers hold one
    /// of its principals, filtered inside the tantivy query.
    pub fn search_as(
        &self,
        query: &str,
        kbs: &[KbId],
        reader: &Reader,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>, KeywordError> {
        if kbs.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut terms = self.analyze(query);
        terms.sort_unstable();
        terms.dedup();
        // Question words and particles say nothing about the topic; keep them only when the
        // query has nothing else.
        if terms.iter().any(|t| !tokenizer::is_query_stopword(t)) {
            terms.retain(|t| !tokenizer::is_query_stopword(t));
        }
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len() * 2);
        for term in &terms {
            should.push((
                Occur::Should,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.text, term),
                    IndexRecordOption::WithFreqs,
                )),
            ));
            should.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(TermQuery::new(
                        Term::from_field_text(f.title, term),
                        IndexRecordOption::WithFreqs,
                    )),
                    TITLE_BOOST,
                )),
            ));
        }
        let kb_filter = TermSetQuery::new(kbs.iter().map(|&kb| Term::from_field_i64(f.kb, kb)));
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, Box::new(BooleanQuery::new(should))),
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(kb_filter), 0.0)),
            ),
        ];
        if let Some(principals) = reader.principals() {
            let readers = TermSetQuery::new(
                principals
                    .iter()
                    .map(|p| Term::from_field_text(f.readers, p)),
            );
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(readers), 0.0)),
            ));
        }
        let query = BooleanQuery::new(clauses);

        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())
            .map_err(self.err("searching"))?;
        let mut columns = vec![None; searcher.segment_readers().len()];
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let seg = addr.segment_ord as usize;
            if columns[seg].is_none() {
                let column = searcher
                    .segment_reader(addr.segment_ord)
                    .fast_fields()
                    .u64("chunk")
                    .map_err(self.err("reading chunk ids"))?;
                columns[seg] = Some(column);
            }
            if let Some(chunk) = columns[seg].as_ref().and_then(|c| c.first(addr.doc_id)) {
                hits.push(ScoredChunk { chunk, score });
            }
        }
        Ok(hits)
    }

    /// Number of chunks visible to searches (as of the last commit or reload).
    pub fn count(&self) -> Result<usize, KeywordError> {
        Ok(self.reader.searcher().num_docs() as usize)
    }

    /// Deletes every chunk and commits.
    pub fn clear(&self) -> Result<(), KeywordError> {
        {
            let mut guard = self.writer()?;
            let writer = guard.as_mut().expect("writer opened");
            writer
                .delete_all_documents()
                .map_err(self.err("deleting all chunks"))?;
        }
        self.commit()
    }

    /// The analyzer's terms for a text (for tests, debugging and `zhiku` tools)
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut analyzer = self
            .analyzer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        analyzer.terms(text)
    }

    /// Segment with another jieba user dictionary from now on (`None`: jieba's own only).
    /// Queries use it at once, and so does text indexed after the next commit; chunks
    /// already indexed keep their old terms until they are added again (a re-index).
    pub fn set_user_dict(&self, user_dict: Option<&Path>) -> Result<(), KeywordError> {
        let analyzer = ZhTokenizer::new(jieba_for(user_dict)?);
        // New segment writers look the tokenizer up by name when they are created.
        self.index
            .tokenizers()
            .register(TOKENIZER, analyzer.clone());
        *self.analyzer.lock().unwrap_or_else(PoisonError::into_inner) = analyzer;
        Ok(())
    }

    /// Number of indexed chunks whose text holds `term` (an analyzed term, e.g. from
    /// [`analyze`](Self::analyze)), as of the last commit: shows whether a dictionary word
    /// has reached the index.
    pub fn chunks_with_term(&self, term: &str) -> Result<u64, KeywordError> {
        self.reader
            .searcher()
            .doc_freq(&Term::from_field_text(self.fields.text, term))
            .map_err(self.err("counting a term"))
    }

    /// The index directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Empty `dir` (a keyword index of an older layout; derived data).
fn recreate(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(dir)?;
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests;
