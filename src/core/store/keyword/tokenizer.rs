//! The "zh" analyzer: width and case folding, traditional → simplified folding, jieba
//! search-mode segmentation, punctuation/whitespace removal, English words stemmed (Snowball).
//!
//! Indexed text and queries go through the same analyzer, so 繁體 passages match 简体
//! queries (and the reverse), full-width `ＡＢＣ１２３` matches `abc123`, and `Rust`
//! matches `rust`.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use jieba_rs::Jieba;
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use super::KeywordError;

/// Tokens longer than this (in bytes) are dropped: base64 blobs and the like are never
/// searched for and only bloat the term dictionary.
const MAX_TOKEN_BYTES: usize = 256;

/// Folds `text` into `out` for segmentation: traditional → simplified Chinese (fast2s),
/// full-width ASCII → half-width, ideographic space → space, lowercase.
///
/// `offsets[i]` is the byte offset in `text` of the character that produced byte `i` of
/// `out`; `offsets[out.len()] == text.len()`. Both buffers are cleared first.
pub(crate) fn fold(text: &str, out: &mut String, offsets: &mut Vec<usize>) {
    out.clear();
    offsets.clear();
    if text.is_empty() {
        offsets.push(0);
        return;
    }
    // fast2s maps one char to exactly one char (it only rewrites 3-byte chars, using their
    // neighbours as context), so the two char sequences can be zipped.
    let simplified = fast2s::convert(text);
    out.reserve(text.len());
    offsets.reserve(text.len() + 1);
    for ((pos, _), c) in text.char_indices().zip(simplified.chars()) {
        let folded = fold_char(c);
        let before = out.len();
        out.push(folded);
        offsets.extend(std::iter::repeat_n(pos, out.len() - before));
    }
    offsets.push(text.len());
}

/// Folds one character for matching: lowercase, full-width ASCII → ASCII, U+3000 → space.
pub(crate) fn fold_char(c: char) -> char {
    match c {
        'A'..='Z' => c.to_ascii_lowercase(),
        c if c.is_ascii() => c,
        // Full-width ASCII variants ！..～ → ! .. ~ (then lowercase).
        '\u{FF01}'..='\u{FF5E}' => {
            char::from_u32(c as u32 - 0xFEE0).map_or(c, |c| c.to_ascii_lowercase())
        }
        '\u{3000}' => ' ',
        c if c.is_uppercase() => {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        }
        c => c,
    }
}

/// The Snowball English stemmer (stateless, built once).
fn english_stemmer() -> &'static frostem::Stemmer {
    static STEMMER: OnceLock<frostem::Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| frostem::Stemmer::new(frostem::Algorithm::English))
}

/// Whether a segment is worth indexing: it has a letter, digit or ideograph.
fn is_term(word: &str) -> bool {
    word.len() <= MAX_TOKEN_BYTES && word.chars().any(char::is_alphanumeric)
}

/// Words that carry no topic in a question: Chinese particles, pronouns and question words,
/// English function words. They are dropped from queries only (the index keeps every term, so
/// a query made only of them still finds something), because in a small knowledge base their
/// IDF is not low enough to stop "怎么" in "年假怎么计算" from ranking an FAQ full of
/// "怎么办" first.
const QUERY_STOPWORDS: &[&str] = &[
    "的",
    "了",
    "吗",
    "呢",
    "吧",
    "啊",
    "呀",
    "嘛",
    "么",
    "是",
    "在",
    "有",
    "和",
    "与",
    "及",
    "或",
    "或者",
    "还是",
    "就",
    "都",
    "也",
    "又",
    "被",
    "把",
    "给",
    "对",
    "从",
    "由",
    "向",
    "为",
    "以",
    "于",
    "之",
    "其",
    "而",
    "并",
    "则",
    "等",
    "个",
    "什么",
    "怎么",
    "怎样",
    "怎么样",
    "如何",
    "哪",
    "哪些",
    "哪个",
    "哪里",
    "哪儿",
    "为什么",
    "为何",
    "多少",
    "几",
    "谁",
    "请问",
    "请",
    "一下",
    "可以",
    "能",
    "能否",
    "能不能",
    "是否",
    "是不是",
    "会",
    "要",
    "需要",
    "应该",
    "我",
    "我们",
    "你",
    "你们",
    "您",
    "他",
    "她",
    "它",
    "他们",
    "这",
    "那",
    "这个",
    "那个",
    "这些",
    "那些",
    "a",
    "an",
    "the",
    "of",
    "to",
    "in",
    "on",
    "at",
    "by",
    "for",
    "with",
    "from",
    "and",
    "or",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "do",
    "does",
    "did",
    "can",
    "could",
    "should",
    "would",
    "will",
    "shall",
    "may",
    "might",
    "i",
    "me",
    "my",
    "we",
    "our",
    "you",
    "your",
    "he",
    "she",
    "it",
    "its",
    "they",
    "their",
    "this",
    "that",
    "these",
    "those",
    "what",
    "which",
    "who",
    "whom",
    "when",
    "where",
    "why",
    "how",
    "please",
    "there",
    "if",
    "as",
];

/// Whether a query term should be dropped (see [`QUERY_STOPWORDS`]).
pub(crate) fn is_query_stopword(term: &str) -> bool {
    QUERY_STOPWORDS.contains(&term)
}

/// The tantivy tokenizer registered as "zh". Cloning is cheap (the dictionary is shared).
#[derive(Clone)]
pub(crate) struct ZhTokenizer {
    jieba: Arc<Jieba>,
    folded: String,
    offsets: Vec<usize>,
    /// Reused token buffers; only the first `len` are live.
    tokens: Vec<Token>,
}

impl ZhTokenizer {
    pub(crate) fn new(jieba: Arc<Jieba>) -> Self {
        Self {
            jieba,
            folded: String::new(),
            offsets: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Runs the analyzer over `text`, leaving the tokens in `self.tokens[..n]`; returns `n`.
    fn analyze_into_buffer(&mut self, text: &str) -> usize {
        fold(text, &mut self.folded, &mut self.offsets);
        let mut n = 0;
        for word in self.jieba.cut_for_search(&self.folded, true) {
            if !is_term(word.word) {
                continue;
            }
            if n == self.tokens.len() {
                self.tokens.push(Token::default());
            }
            let token = &mut self.tokens[n];
            token.text.clear();
            if word.word.bytes().all(|b| b.is_ascii_alphabetic()) {
                // English words by their stem: "laptops" finds "laptop", "reported" "report".
                token.text.push_str(&english_stemmer().stem(word.word));
            } else {
                token.text.push_str(word.word);
            }
            token.offset_from = self.offsets[word.byte_start];
            token.offset_to = self.offsets[word.byte_end];
            token.position = n;
            token.position_length = 1;
            n += 1;
        }
        n
    }

    /// The terms of `text`, in order, with repeats.
    pub(crate) fn terms(&mut self, text: &str) -> Vec<String> {
        let n = self.analyze_into_buffer(text);
        self.tokens[..n].iter().map(|t| t.text.clone()).collect()
    }
}

impl Tokenizer for ZhTokenizer {
    type TokenStream<'a> = ZhTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ZhTokenStream<'a> {
        let n = self.analyze_into_buffer(text);
        ZhTokenStream {
            tokens: &mut self.tokens[..n],
            index: usize::MAX,
        }
    }
}

pub(crate) struct ZhTokenStream<'a> {
    tokens: &'a mut [Token],
    /// Index of the current token; `usize::MAX` before the first `advance`.
    index: usize,
}

impl TokenStream for ZhTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.index = self.index.wrapping_add(1);
        self.index < self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.index]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.index]
    }
}

/// Identifies a user dictionary version: the path plus its modification time and size, so
/// an edited dictionary is reloaded by the next `open`.
type DictKey = Option<(PathBuf, Option<SystemTime>, u64)>;

/// The jieba instance for a user dictionary (or none), built once per process and shared:
/// loading the default dictionary takes 100+ ms.
pub(crate) fn jieba_for(user_dict: Option<&Path>) -> Result<Arc<Jieba>, KeywordError> {
    static CACHE: OnceLock<Mutex<HashMap<DictKey, Arc<Jieba>>>> = OnceLock::new();

    let key: DictKey = match user_dict {
        None => None,
        Some(path) => {
            let meta = std::fs::metadata(path).map_err(|source| KeywordError::UserDictIo {
                path: path.to_path_buf(),
                source,
            })?;
            Some((path.to_path_buf(), meta.modified().ok(), meta.len()))
        }
    };
    let cache = CACHE.get_or_init(Default::default);
    // Held while building so that concurrent opens build each dictionary once.
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(jieba) = cache.get(&key) {
        return Ok(Arc::clone(jieba));
    }
    let base = match cache.get(&None) {
        Some(base) => Arc::clone(base),
        None => {
            let base = Arc::new(Jieba::new());
            cache.insert(None, Arc::clone(&base));
            base
        }
    };
    let Some(path) = user_dict else {
        return Ok(base);
    };
    let mut jieba = Jieba::clone(&base);
    load_user_dict(&mut jieba, path)?;
    let jieba = Arc::new(jieba);
    cache.insert(key, Arc::clone(&jieba));
    Ok(jieba)
}

/// Adds the words of a user dictionary: UTF-8 lines `word [freq] [tag]`, blank lines and
/// `#` comments ignored. Words are folded like indexed text (so a traditional or upper-case
/// entry works too). Without a frequency, jieba's suggested frequency is used, which keeps
/// the word whole; an explicit low frequency may still let jieba split it.
fn load_user_dict(jieba: &mut Jieba, path: &Path) -> Result<(), KeywordError> {
    let io_err = |source| KeywordError::UserDictIo {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let reader = std::io::BufReader::new(file);
    let (mut folded, mut offsets) = (String::new(), Vec::new());
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => KeywordError::UserDict {
                path: path.to_path_buf(),
                line: i + 1,
                message: "not valid UTF-8 (save the file as UTF-8)".into(),
            },
            _ => io_err(source),
        })?;
        let entry = parse_dict_line(&line).map_err(|message| KeywordError::UserDict {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        })?;
        let Some(entry) = entry else { continue };
        fold(entry.word, &mut folded, &mut offsets);
        jieba.add_word(&folded, entry.freq, entry.tag);
    }
    Ok(())
}

/// One word of a user dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DictEntry<'a> {
    pub word: &'a str,
    pub freq: Option<usize>,
    pub tag: Option<&'a str>,
}

/// One line of a user dictionary: `word [freq] [tag]`; `None` for blank lines and `#`
/// comments; the reason when the line is malformed.
pub(crate) fn parse_dict_line(line: &str) -> Result<Option<DictEntry<'_>>, String> {
    let line = line.trim_start_matches('\u{feff}').trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_whitespace();
    let Some(word) = fields.next() else {
        return Ok(None);
    };
    let (mut freq, mut tag) = (None, None);
    if let Some(second) = fields.next() {
        match second.parse::<usize>() {
            Ok(f) => {
                freq = Some(f);
                tag = fields.next();
            }
            Err(_) if second.chars().all(|c| c.is_ascii_alphabetic()) => tag = Some(second),
            Err(_) => {
                return Err(format!(
                    "`{second}` is neither a frequency (a whole number) nor a part-of-speech tag; \
                     expected `word [freq] [tag]`"
                ));
            }
        }
    }
    if let Some(extra) = fields.next() {
        return Err(format!(
            "unexpected `{extra}` after the word, frequency and tag; expected `word [freq] [tag]` \
             (a word cannot contain spaces)"
        ));
    }
    Ok(Some(DictEntry { word, freq, tag }))
}
