//! `zhiku finetune data`: instruction examples from a knowledge base, question/answer files
//! and admin-given records, mixed with general examples, deduplicated, length-filtered and
//! split into training and held-out sets that share no passage and no question.
//!
//! **RAG form.** A knowledge-base example is made the way an answer is: the question is
//! searched with zhiku's own retrieval ([`retrieve::search`]), the hits pass the same
//! relevance gate ([`rag::judge`], `rag.sources` kept) and go through the same prompt code
//! ([`answer_prompt`]): the system message becomes `instruction`, the user message (numbered
//! `<passage>` sources + question) `input`. The `output` is the grounded answer: the
//! sentence of the first retrieved passage that contains the gold answer, with the `[n]`
//! marker of that passage before its closing punctuation (the bare answer span with its
//! marker when that sentence is over [`MAX_ANSWER_SENTENCE_CHARS`]). A question whose answer
//! is in no retrieved passage is skipped and counted: training on it would teach the model
//! to answer without its sources.
//!
//! **Questions.** From SQuAD-layout files (`--qa`, e.g. CMRC 2018) when given. Otherwise
//! they are generated from the knowledge base's own chunks without a model, from the
//! sentences that define something, the ones an employee asks about: `X是…` / `X指…` /
//! `X：…` (Chinese) and `X is/are/means …` (English) give "X是什么？" / "What is X?", with
//! the defining sentence as the answer. Titles or headings turned into questions were not
//! used: their answers are whole sections, which a grounded one-sentence reply cannot be.
//! The generated question is then retrieved like any other, so the example only exists
//! when zhiku's retrieval finds the defining passage.
//!
//! **General examples** (`--general`, the Alpaca layout) limit forgetting: they make up
//! `general_share` of the training split, exactly up to rounding; when the file has too
//! few, all are used and the statistics say which share was reached. They never go into
//! the held-out split, which measures the domain task.
//!
//! **Split.** Examples are grouped (union-find) by the passage their answer comes from and
//! by the normalised question; whole groups go to the held-out split (seeded order) until
//! it holds `heldout_share` of the domain examples, so no passage and no question is in
//! both. Passages that are only context (other retrieved sources) are not grouped on:
//! popular passages would otherwise join most examples into one group. When the share
//! rounds to fewer examples than the smallest group (10 % of three groups of three), the
//! smallest group is held out all the same as long as another group is left to train on:
//! a run without held-out data has no evaluation and no early stopping. With a single
//! group nothing can be held out; the statistics say so in a warning line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zhiku_core::progress::Progress;

use super::encode::Encoder;
use super::{FinetuneError, Record, Result, heldout_path, read_jsonl};
use zhiku_core::engine::Engine;
use zhiku_core::eval::QaSet;
use zhiku_core::rag::prompt::answer_prompt;
use zhiku_core::rag::{self, Lang, Prompts};
use zhiku_core::store::{KbId, Reader};

/// Longest sentence used as a grounded answer; longer ones give the answer span instead.
pub const MAX_ANSWER_SENTENCE_CHARS: usize = 150;

/// What `zhiku finetune data` was asked for.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// The knowledge base the RAG-form examples are retrieved from.
    pub kb: String,
    /// SQuAD-layout question/answer files; without any, questions come from the chunks.
    pub qa: Vec<PathBuf>,
    /// Admin-given records (JSONL, the Alpaca layout), used as they are.
    pub jsonl: Vec<PathBuf>,
    /// General (non-domain) records, JSONL.
    pub general: Option<PathBuf>,
    /// Share of general examples in the training split, 0 ≤ share < 1.
    pub general_share: f64,
    /// Share of the domain examples held out, 0 ≤ share < 1.
    pub heldout_share: f64,
    /// Longest example (instruction + input + output), in characters.
    pub max_chars: usize,
    /// The model to be trained (a GGUF file or a Hugging Face folder): with it, examples
    /// are also measured in its tokens, as the trainer encodes them, against `max_tokens`.
    pub base: Option<PathBuf>,
    /// Longest example in tokens of `base` (`finetune train --max-len` cuts longer ones,
    /// and drops those whose reply starts beyond it).
    pub max_tokens: usize,
    /// Shortest reply, in characters.
    pub min_output_chars: usize,
    /// Seed of the split and of the choice of general examples.
    pub seed: u64,
    /// Use at most this many questions (QA files or generated), in file order.
    pub limit: Option<usize>,
    /// Whose rights retrieval and the generated questions use (folder and document rules):
    /// by default only what everyone who may read the knowledge base may read, since the
    /// tuned model answers everyone.
    pub reader: Reader,
}

impl DataOptions {
    pub fn new(kb: impl Into<String>) -> Self {
        Self {
            kb: kb.into(),
            qa: Vec::new(),
            jsonl: Vec::new(),
            general: None,
            general_share: 0.2,
            heldout_share: 0.1,
            max_chars: 6000,
            base: None,
            max_tokens: 1024,
            min_output_chars: 2,
            seed: 42,
            limit: None,
            reader: Reader::everyone(),
        }
    }

    fn check(&self) -> Result<()> {
        for (name, v) in [
            ("--general-share", self.general_share),
            ("--heldout-share", self.heldout_share),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(FinetuneError::Invalid(format!(
                    "{name} must be at least 0 and below 1, not {v}"
                )));
            }
        }
        if self.base.is_some() && self.max_tokens == 0 {
            return Err(FinetuneError::Invalid(
                "--max-tokens must be at least 1".into(),
            ));
        }
        if self.general_share > 0.0 && self.general.is_none() {
            return Err(FinetuneError::Invalid(
                "--general-share needs a --general FILE.jsonl of general examples (or set \
                 --general-share 0)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Where an example came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A question of a QA file, answered from retrieved passages.
    Qa,
    /// A question generated from a chunk of the knowledge base.
    Chunk,
    /// An admin-given record.
    Admin,
    /// A general (non-domain) record.
    General,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::Qa => "qa",
            Origin::Chunk => "chunk",
            Origin::Admin => "admin",
            Origin::General => "general",
        }
    }
}

/// One candidate example and what ties it to others for the split.
#[derive(Debug, Clone)]
pub struct Example {
    pub record: Record,
    pub origin: Origin,
    /// `p:<chunk id>` of the answer's passage, `q:<normalised question>`, `para:…` of a QA
    /// file's paragraph: examples sharing a key land in the same split.
    pub keys: Vec<String>,
}

/// Why a candidate was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// No retrieved passage passed the relevance gate.
    NoRelevantPassage,
    /// The gold answer is in none of the passages offered.
    AnswerNotRetrieved,
    /// A QA-file question without a gold answer.
    NoGoldAnswer,
    Duplicate,
    TooLong,
    /// Over `max_tokens` tokens of the `base` model.
    TooManyTokens,
    TooShort,
}

impl DropReason {
    fn name(self) -> &'static str {
        match self {
            DropReason::NoRelevantPassage => "no relevant passage retrieved",
            DropReason::AnswerNotRetrieved => "answer not in the retrieved passages",
            DropReason::NoGoldAnswer => "no gold answer",
            DropReason::Duplicate => "duplicate",
            DropReason::TooLong => "too long",
            DropReason::TooManyTokens => "over --max-tokens",
            DropReason::TooShort => "reply too short",
        }
    }
}

/// Character lengths: smallest, median, largest.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Lengths {
    pub min: usize,
    pub median: usize,
    pub max: usize,
}

impl Lengths {
    fn of(mut v: Vec<usize>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_unstable();
        Self {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }
}

/// What the builder did, printed by the command.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataStats {
    /// Candidates per origin, before filtering.
    pub candidates: BTreeMap<&'static str, usize>,
    /// Dropped candidates per reason.
    pub dropped: BTreeMap<&'static str, usize>,
    pub train: BTreeMap<&'static str, usize>,
    pub heldout: BTreeMap<&'static str, usize>,
    /// General examples in the file (after filtering) and used.
    pub general_available: usize,
    pub general_used: usize,
    /// General share asked for and reached in the training split.
    pub general_share_asked: f64,
    pub general_share: f64,
    /// Groups (connected by passage or question) the split moved as a whole, and how
    /// many of them went to the held-out split.
    pub groups: usize,
    pub heldout_groups: usize,
    /// What the admin should know before training on this (printed as `warning:` lines).
    pub warnings: Vec<String>,
    /// Lengths in characters of the replies and of whole examples (training split).
    pub output_chars: Lengths,
    pub example_chars: Lengths,
    /// Lengths in tokens of `--base` of whole examples (training split), when given.
    pub example_tokens: Option<Lengths>,
}

impl fmt::Display for DataStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |m: &BTreeMap<&str, usize>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let total = |m: &BTreeMap<&str, usize>| m.values().sum::<usize>();
        writeln!(f, "candidates: {}", list(&self.candidates))?;
        writeln!(f, "dropped:    {}", list(&self.dropped))?;
        writeln!(
            f,
            "train:      {} ({}), {} of {} groups",
            total(&self.train),
            list(&self.train),
            self.groups - self.heldout_groups,
            self.groups
        )?;
        writeln!(
            f,
            "held out:   {} ({}), {} of {} groups (split by passage and question)",
            total(&self.heldout),
            list(&self.heldout),
            self.heldout_groups,
            self.groups
        )?;
        writeln!(
            f,
            "general:    {} of {} available, share {:.3} (asked {:.3})",
            self.general_used, self.general_available, self.general_share, self.general_share_asked
        )?;
        write!(
            f,
            "chars:      reply min/median/max {}/{}/{}, example {}/{}/{}",
            self.output_chars.min,
            self.output_chars.median,
            self.output_chars.max,
            self.example_chars.min,
            self.example_chars.median,
            self.example_chars.max
        )?;
        if let Some(t) = &self.example_tokens {
            write!(
                f,
                "\ntokens:     example min/median/max {}/{}/{} (--base)",
                t.min, t.median, t.max
            )?;
        }
        for w in &self.warnings {
            write!(f, "\nwarning:    {w}")?;
        }
        Ok(())
    }
}

/// The training and held-out records and the statistics.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub train: Vec<Record>,
    pub heldout: Vec<Record>,
    pub stats: DataStats,
}

/// Lower-case, whitespace collapsed, full-width ASCII folded: the form duplicates and
/// shared questions are found by.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        };
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// splitmix64: a seeded, version-independent sequence, so that the same `--seed` gives the
/// same split on every build (a crate's RNG may change its stream between versions).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Sentences of a passage, each with its closing punctuation.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let end = match c {
            '。' | '！' | '？' | '；' | '\n' => true,
            '.' | '!' | '?' | ';' => iter.peek().is_none_or(|(_, n)| n.is_whitespace()),
            _ => false,
        };
        if end {
            let e = i + c.len_utf8();
            let s = text[start..e].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = e;
        }
    }
    let s = text[start..].trim();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// The reply for an answer found in passage `n`: its sentence with the marker before the
/// closing punctuation, or the answer span with the marker when the sentence is long.
pub fn grounded_answer(passage: &str, answer: &str, n: usize, lang: Lang) -> String {
    let marker = format!("[{n}]");
    let sentence = sentences(passage)
        .into_iter()
        .find(|s| s.contains(answer))
        .filter(|s| s.chars().count() <= MAX_ANSWER_SENTENCE_CHARS);
    let (body, close) = match sentence {
        Some(s) => {
            let body = s.trim_end_matches(['。', '！', '？', '；', '.', '!', '?', ';', '\n']);
            let close = match &s[body.len()..] {
                "" | "；" | ";" | "\n" => default_close(lang),
                c => c,
            };
            (body.trim_end(), close)
        }
        None => (answer.trim(), default_close(lang)),
    };
    format!("{body}{marker}{close}")
}

fn default_close(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "。",
        Lang::En => ".",
    }
}

/// Questions a chunk answers by definition, with the defining sentence: see the module doc.
pub fn definition_questions(text: &str) -> Vec<(String, String)> {
    const PRONOUNS_ZH: &[&str] = &["这", "那", "它", "他", "她", "我", "你", "其", "此", "本"];
    const PRONOUNS_EN: &[&str] = &[
        "it", "this", "that", "these", "those", "there", "he", "she", "they", "we", "you", "i",
        "here", "what", "which", "who",
    ];
    let mut out = Vec::new();
    for s in sentences(text) {
        if s.chars().count() > MAX_ANSWER_SENTENCE_CHARS || s.chars().count() < 6 {
            continue;
        }
        if Lang::detect(s) == Lang::Zh {
            // The earliest of 是 / 指 / ：after a short subject without punctuation.
            let cut = ["是", "指", "：", ":"]
                .iter()
                .filter_map(|m| s.find(m).map(|i| (i, *m)))
                .min_by_key(|(i, _)| *i);
            let Some((i, m)) = cut else { continue };
            let subject = s[..i]
                .trim()
                .trim_start_matches(['-', '*', '#', ' '])
                .trim();
            let n = subject.chars().count();
            let rest = s[i + m.len()..].trim();
            if !(2..=16).contains(&n)
                || rest.chars().count() < 2
                || subject.chars().any(|c| !c.is_alphanumeric() && c != ' ')
                || PRONOUNS_ZH.iter().any(|p| subject.starts_with(p))
            {
                continue;
            }
            let verb = if m == "指" { "指什么" } else { "是什么" };
            out.push((format!("{subject}{verb}？"), s.to_string()));
        } else {
            let words: Vec<&str> = s.split_whitespace().collect();
            let Some(v) = words
                .iter()
                .position(|w| matches!(*w, "is" | "are" | "means" | "refers"))
            else {
                continue;
            };
            if v == 0 || v > 6 || words.len() < v + 3 {
                continue;
            }
            let mut subject: Vec<&str> = words[..v].to_vec();
            if subject[0].eq_ignore_ascii_case("the") || subject[0].eq_ignore_ascii_case("a") {
                subject.remove(0);
            }
            if subject.is_empty()
                || PRONOUNS_EN.contains(&subject[0].to_lowercase().as_str())
                || subject
                    .iter()
                    .any(|w| w.chars().any(|c| !c.is_alphanumeric() && c != '-'))
            {
                continue;
            }
            let subject = subject.join(" ");
            let q = match words[v] {
                "means" | "refers" => format!("What does {subject} mean?"),
                "are" => format!("What are {subject}?"),
                _ => format!("What is {subject}?"),
            };
            out.push((q, s.to_string()));
        }
    }
    out
}

/// A RAG-form example for `question`, answered by the first passage offered that contains
/// one of `answers` (see the module doc), or why there is none.
pub fn rag_example(
    engine: &Engine,
    prompts: &Prompts,
    kb: KbId,
    reader: &Reader,
    question: &str,
    answers: &[String],
) -> Result<std::result::Result<(Record, u64), DropReason>> {
    let cfg = &engine.config.rag;
    let lang = Lang::detect(question);
    let gated = rag::Gated::search(engine, question, &[kb], reader)
        .map_err(|e| FinetuneError::Invalid(format!("searching for {question:?}: {e}")))?;
    let relevant = gated.relevant(cfg.sources);
    if relevant.is_empty() {
        return Ok(Err(DropReason::NoRelevantPassage));
    }
    let found = relevant.iter().enumerate().find_map(|(i, h)| {
        answers
            .iter()
            .map(|a| a.trim())
            .find(|a| !a.is_empty() && h.text.contains(a))
            .map(|a| (i, *h, a))
    });
    let Some((i, hit, answer)) = found else {
        return Ok(Err(DropReason::AnswerNotRetrieved));
    };
    let prompt = answer_prompt(prompts, lang, question, &relevant, &[], None)
        .map_err(|e| FinetuneError::Invalid(format!("building the answer prompt: {e}")))?;
    let [system, user] = prompt.messages.as_slice() else {
        return Err(FinetuneError::Invalid(format!(
            "the answer prompt has {} messages, expected system + user",
            prompt.messages.len()
        )));
    };
    let record = Record {
        instruction: system.content.clone(),
        input: user.content.clone(),
        output: grounded_answer(&hit.text, answer, i + 1, lang),
    };
    Ok(Ok((record, hit.chunk)))
}

/// Drop duplicates (normalised instruction + input + output; the first one stays), replies
/// that are too short and examples that are too long: over `max_chars` characters, or,
/// with the base model's `tokens` encoder, over `max_tokens` of its tokens. `seen` carries
/// the keys across calls.
pub fn filter(
    examples: Vec<Example>,
    opts: &DataOptions,
    tokens: Option<&Encoder>,
    seen: &mut HashSet<String>,
    dropped: &mut BTreeMap<&'static str, usize>,
) -> Result<Vec<Example>> {
    let mut kept = Vec::with_capacity(examples.len());
    for e in examples {
        let r = &e.record;
        let chars =
            r.instruction.chars().count() + r.input.chars().count() + r.output.chars().count();
        let reason = if r.output.trim().chars().count() < opts.min_output_chars {
            Some(DropReason::TooShort)
        } else if chars > opts.max_chars {
            Some(DropReason::TooLong)
        } else if let Some(enc) = tokens
            && enc.token_count(r)? > opts.max_tokens
        {
            Some(DropReason::TooManyTokens)
        } else if !seen.insert(normalise(&format!(
            "{}\u{1}{}\u{1}{}",
            r.instruction, r.input, r.output
        ))) {
            Some(DropReason::Duplicate)
        } else {
            None
        };
        match reason {
            Some(d) => *dropped.entry(d.name()).or_default() += 1,
            None => kept.push(e),
        }
    }
    Ok(kept)
}

/// The training and held-out examples and how many groups each got.
#[derive(Debug)]
pub struct Split {
    pub train: Vec<Example>,
    pub heldout: Vec<Example>,
    pub groups: usize,
    pub heldout_groups: usize,
}

/// Split `examples` into training and held-out: whole groups of examples sharing a key, in
/// a seeded order, go to the held-out split while it stays within `share` of the total;
/// when that is none of them, the smallest group goes (first in the seeded order), if at
/// least one other group is left for training.
pub fn split(examples: Vec<Example>, share: f64, seed: u64) -> Split {
    let n = examples.len();
    // Union-find over example indices joined by shared keys.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, e) in examples.iter().enumerate() {
        for k in &e.keys {
            match owner.get(k.as_str()) {
                Some(&j) => {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
                None => {
                    owner.insert(k, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let r = root(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    let count = groups.len();
    SplitMix(seed).shuffle(&mut groups);
    let target = (share * n as f64).round() as usize;
    let mut held = vec![false; n];
    let (mut taken, mut heldout_groups) = (0, 0);
    let hold = |g: &[usize], held: &mut [bool]| {
        for &i in g {
            held[i] = true;
        }
    };
    for g in &groups {
        if taken + g.len() <= target {
            taken += g.len();
            heldout_groups += 1;
            hold(g, &mut held);
        }
        if taken == target {
            break;
        }
    }
    if share > 0.0
        && heldout_groups == 0
        && count >= 2
        && let Some(g) = groups.iter().min_by_key(|g| g.len())
    {
        heldout_groups = 1;
        hold(g, &mut held);
    }
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    for (e, h) in examples.into_iter().zip(held) {
        if h {
            heldout.push(e);
        } else {
            train.push(e);
        }
    }
    Split {
        train,
        heldout,
        groups: count,
        heldout_groups,
    }
}

/// How many general examples make them `share` of a training split with `domain` domain
/// examples: `g / (domain + g) = share`, rounded.
pub fn general_count(domain: usize, share: f64) -> usize {
    if share <= 0.0 {
        return 0;
    }
    (share * domain as f64 / (1.0 - share)).round() as usize
}

fn count(map: &mut BTreeMap<&'static str, usize>, origin: Origin) {
    *map.entry(origin.name()).or_default() += 1;
}

/// Build the data set (see the module doc). Nothing is written.
pub fn build(engine: &Engine, opts: &DataOptions, progress: &dyn Progress) -> Result<Dataset> {
    let _span = tracing::info_span!("finetune_data", kb = %opts.kb).entered();
    opts.check()?;
    let kb = engine
        .meta
        .require_kb(&opts.kb)
        .map_err(|e| FinetuneError::Invalid(format!("{e} (see `zhiku kb list`)")))?;
    let prompts = Prompts::new(Some(&engine.config.prompts_dir()));
    let mut stats = DataStats {
        general_share_asked: opts.general_share,
        ..Default::default()
    };
    // Read every input file first: a bad file fails before any retrieval.
    let mut qa_sets = Vec::new();
    for path in &opts.qa {
        let set = QaSet::load(path)
            .map_err(|e| FinetuneError::Invalid(format!("QA file {}: {e}", path.display())))?;
        qa_sets.push((path, set));
    }
    let mut admin = Vec::new();
    for path in &opts.jsonl {
        admin.extend(read_jsonl(path)?);
    }
    let general = match &opts.general {
        Some(p) => read_jsonl(p)?,
        None => Vec::new(),
    };
    let encoder = opts.base.as_deref().map(Encoder::for_path).transpose()?;

    // Questions: (origin, question, answers, extra split keys).
    let mut questions: Vec<(Origin, String, Vec<String>, Vec<String>)> = Vec::new();
    for (path, set) in &qa_sets {
        for q in &set.questions {
            questions.push((
                Origin::Qa,
                q.question.clone(),
                q.answers.clone(),
                vec![format!("para:{}:{}", path.display(), q.paragraph)],
            ));
        }
    }
    if opts.qa.is_empty() {
        let docs = engine
            .meta
            .documents(kb)
            .map_err(|e| FinetuneError::Invalid(e.to_string()))?;
        for d in docs {
            let readers = engine
                .meta
                .document_readers(d.id)
                .map_err(|e| FinetuneError::Invalid(e.to_string()))?
                .unwrap_or_default();
            if !opts.reader.allows(&readers) {
                continue;
            }
            let chunks = engine
                .meta
                .document_chunks(d.id)
                .map_err(|e| FinetuneError::Invalid(e.to_string()))?;
            for (chunk, text) in chunks {
                for (q, sentence) in definition_questions(&text) {
                    questions.push((Origin::Chunk, q, vec![sentence], vec![format!("p:{chunk}")]));
                }
            }
        }
    }
    if let Some(limit) = opts.limit {
        questions.truncate(limit);
    }

    let mut domain = Vec::new();
    progress.set_length(questions.len() as u64);
    progress.set_message("retrieving");
    for (origin, question, answers, mut keys) in questions {
        progress.inc(1);
        count(&mut stats.candidates, origin);
        if answers.iter().all(|a| a.trim().is_empty()) {
            *stats
                .dropped
                .entry(DropReason::NoGoldAnswer.name())
                .or_default() += 1;
            continue;
        }
        match rag_example(engine, &prompts, kb, &opts.reader, &question, &answers)? {
            Ok((record, chunk)) => {
                keys.push(format!("p:{chunk}"));
                keys.push(format!("q:{}", normalise(&question)));
                domain.push(Example {
                    record,
                    origin,
                    keys,
                });
            }
            Err(d) => *stats.dropped.entry(d.name()).or_default() += 1,
        }
    }
    progress.finish();
    for record in admin {
        count(&mut stats.candidates, Origin::Admin);
        let q = format!(
            "q:{}",
            normalise(&format!("{}\n{}", record.instruction, record.input))
        );
        domain.push(Example {
            record,
            origin: Origin::Admin,
            keys: vec![q],
        });
    }

    let mut seen = HashSet::new();
    let domain = filter(
        domain,
        opts,
        encoder.as_ref(),
        &mut seen,
        &mut stats.dropped,
    )?;
    let domain_count = domain.len();
    let Split {
        mut train,
        heldout,
        groups,
        heldout_groups,
    } = split(domain, opts.heldout_share, opts.seed);
    stats.groups = groups;
    stats.heldout_groups = heldout_groups;
    if opts.heldout_share > 0.0 && heldout_groups == 0 {
        stats.warnings.push(format!(
            "nothing held out: the {domain_count} domain example(s) form {groups} group(s) \
             connected by passage or question, and at least one must stay for training; \
             `finetune train` will run without evaluation or early stopping (give it an \
             --eval file, or add questions on other passages)"
        ));
    } else if heldout_groups > 0
        && heldout.len() as f64 > 2.0 * opts.heldout_share * domain_count as f64
    {
        stats.warnings.push(format!(
            "held out {} of {domain_count} domain examples ({:.0} %, asked {:.0} %): the \
             smallest of {groups} groups, the least that can be held out",
            heldout.len(),
            100.0 * heldout.len() as f64 / domain_count as f64,
            100.0 * opts.heldout_share
        ));
    }
    for w in &stats.warnings {
        tracing::warn!("{w}");
    }

    // General examples: filtered with the same rules (and against the domain examples).
    let general: Vec<Example> = general
        .into_iter()
        .map(|record| {
            count(&mut stats.candidates, Origin::General);
            Example {
                record,
                origin: Origin::General,
                keys: Vec::new(),
            }
        })
        .collect();
    let mut general = filter(
        general,
        opts,
        encoder.as_ref(),
        &mut seen,
        &mut stats.dropped,
    )?;
    stats.general_available = general.len();
    let want = general_count(train.len(), opts.general_share);
    let mut rng = SplitMix(opts.seed ^ 0x6765_6E65_7261_6C00);
    rng.shuffle(&mut general);
    general.truncate(want);
    stats.general_used = general.len();
    if general.len() < want {
        tracing::warn!(
            wanted = want,
            available = general.len(),
            "too few general examples for --general-share; all of them are used"
        );
    }
    train.extend(general);
    rng.shuffle(&mut train);
    stats.general_share = if train.is_empty() {
        0.0
    } else {
        stats.general_used as f64 / train.len() as f64
    };

    for e in &train {
        count(&mut stats.train, e.origin);
    }
    for e in &heldout {
        count(&mut stats.heldout, e.origin);
    }
    stats.output_chars = Lengths::of(
        train
            .iter()
            .map(|e| e.record.output.chars().count())
            .collect(),
    );
    stats.example_chars = Lengths::of(
        train
            .iter()
            .map(|e| {
                let r = &e.record;
                r.instruction.chars().count() + r.input.chars().count() + r.output.chars().count()
            })
            .collect(),
    );
    if let Some(enc) = &encoder {
        let mut counts = Vec::with_capacity(train.len());
        for e in &train {
            counts.push(enc.token_count(&e.record)?);
        }
        stats.example_tokens = Some(Lengths::of(counts));
    }
    if train.is_empty() {
        return Err(FinetuneError::Invalid(format!(
            "no training example was made ({})\n{stats}",
            if opts.qa.is_empty() {
                "no defining sentence in the knowledge base's chunks was found by retrieval; \
                 give question/answer files with --qa or records with --jsonl"
            } else {
                "no question's answer was found in its retrieved passages"
            }
        )));
    }
    Ok(Dataset {
        train: train.into_iter().map(|e| e.record).collect(),
        heldout: heldout.into_iter().map(|e| e.record).collect(),
        stats,
    })
}

/// Write records as JSONL through a temporary file beside `path`, so that a failure leaves
/// any earlier file as it was.
pub fn write_jsonl(path: &Path, records: &[Record]) -> Result<()> {
    let werr = |source| FinetuneError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension("jsonl.tmp");
    {
        let file = std::fs::File::create(&tmp).map_err(werr)?;
        let mut w = std::io::BufWriter::new(file);
        for r in records {
            let line = serde_json::to_string(r)
                .map_err(|e| FinetuneError::Invalid(format!("serialising a record: {e}")))?;
            writeln!(w, "{line}").map_err(werr)?;
        }
        w.flush().map_err(werr)?;
    }
    std::fs::rename(&tmp, path).map_err(werr)
}

/// Write the training split to `out` and the held-out split beside it ([`heldout_path`]).
/// Returns the held-out path.
pub fn write(dataset: &Dataset, out: &Path) -> Result<PathBuf> {
    let held = heldout_path(out);
    write_jsonl(out, &dataset.train)?;
    write_jsonl(&held, &dataset.heldout)?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(q: &str, passage: u64, out: &str) -> Example {
        Example {
            record: Record {
                instruction: "sys".into(),
                input: format!("{q} / passage {passage}"),
                output: out.into(),
            },
            origin: Origin::Qa,
            keys: vec![format!("p:{passage}"), format!("q:{}", normalise(q))],
        }
    }

    #[test]
    fn no_passage_or_question_is_in_both_splits() {
        // 200 examples over 40 passages; questions repeat across passages (the same
        // question, differently cased, on two passages joins their groups).
        let mut v = Vec::new();
        for i in 0..200u64 {
            let q = if i % 7 == 0 {
                format!("Question {}", i % 21)
            } else {
                format!("question {i}")
            };
            v.push(ex(&q, i % 40, &format!("answer {i}")));
        }
        for seed in 0..5 {
            let Split {
                train,
                heldout: held,
                groups,
                ..
            } = split(v.clone(), 0.2, seed);
            assert_eq!(train.len() + held.len(), 200);
            assert!(groups < 40, "groups {groups}");
            assert!(!held.is_empty() && held.len() <= 40, "{}", held.len());
            let keys = |s: &[Example]| -> HashSet<String> {
                s.iter().flat_map(|e| e.keys.iter().cloned()).collect()
            };
            let shared: Vec<String> = keys(&train).intersection(&keys(&held)).cloned().collect();
            assert!(shared.is_empty(), "seed {seed}: shared {shared:?}");
        }
        // Same seed, same split.
        let a: Vec<String> = split(v.clone(), 0.2, 3)
            .heldout
            .into_iter()
            .map(|e| e.record.output)
            .collect();
        let b: Vec<String> = split(v, 0.2, 3)
            .heldout
            .into_iter()
            .map(|e| e.record.output)
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn general_share_is_honoured_up_to_rounding() {
        for (domain, share) in [(80, 0.2), (90, 0.2), (7, 0.5), (100, 0.0), (33, 0.1)] {
            let g = general_count(domain, share);
            let reached = g as f64 / (domain + g) as f64;
            // Within one example of the exact share.
            assert!(
                (reached - share).abs() <= 1.0 / (domain + g) as f64,
                "{domain} {share}: {g} gives {reached}"
            );
        }
        assert_eq!(general_count(80, 0.2), 20);
        assert_eq!(general_count(100, 0.0), 0);
    }

    #[test]
    fn duplicates_and_lengths_are_filtered_with_reasons() {
        let mut opts = DataOptions::new("kb");
        opts.max_chars = 60;
        opts.min_output_chars = 2;
        let v = vec![
            ex("a", 1, "reply one"),
            // Same after normalisation (case, whitespace, full-width letters).
            Example {
                record: Record {
                    instruction: "SYS".into(),
                    input: "a  /  passage 1".into(),
                    output: "ｒｅｐｌｙ one".into(),
                },
                ..ex("a", 1, "")
            },
            ex("b", 2, "x"),
            ex("c", 3, &"long ".repeat(20)),
            ex("d", 4, "fine reply"),
        ];
        let mut dropped = BTreeMap::new();
        let kept = filter(v, &opts, None, &mut HashSet::new(), &mut dropped).unwrap();
        let outs: Vec<&str> = kept.iter().map(|e| e.record.output.as_str()).collect();
        assert_eq!(outs, ["reply one", "fine reply"]);
        assert_eq!(dropped.get("duplicate"), Some(&1));
        assert_eq!(dropped.get("reply too short"), Some(&1));
        assert_eq!(dropped.get("too long"), Some(&1));
    }

    #[test]
    fn with_a_base_model_lengths_are_counted_in_its_tokens() {
        let tmp = tempfile::tempdir().unwrap();
        crate::generate::arch::tests::write_tiny_qwen2(tmp.path(), 3);
        let enc = Encoder::for_path(tmp.path()).unwrap();
        let short = ex("a", 1, "short reply");
        let long = ex("b", 2, &"many words here ".repeat(8));
        let (n_short, n_long) = (
            enc.token_count(&short.record).unwrap(),
            enc.token_count(&long.record).unwrap(),
        );
        // What the trainer's encoder sees: the whole conversation, end-of-turn included.
        let (trained, _) = enc.encode(&long.record, usize::MAX).unwrap().unwrap();
        assert_eq!(n_long, trained.ids.len());
        assert!(n_short < n_long, "{n_short} {n_long}");
        let mut opts = DataOptions::new("kb");
        opts.max_tokens = n_long - 1;
        let mut dropped = BTreeMap::new();
        let v = vec![short, long];
        let kept = filter(
            v.clone(),
            &opts,
            Some(&enc),
            &mut HashSet::new(),
            &mut dropped,
        )
        .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].record.output, "short reply");
        assert_eq!(dropped.get("over --max-tokens"), Some(&1));
        // Without the model, characters only: both fit the default 6000.
        let kept = filter(v, &opts, None, &mut HashSet::new(), &mut BTreeMap::new()).unwrap();
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn grounded_answer_cites_the_sentence_holding_the_answer() {
        let p = "公司成立于1998年。员工每年享有5天年假；满十年享有10天。";
        assert_eq!(
            grounded_answer(p, "5天", 2, Lang::Zh),
            "员工每年享有5天年假[2]。"
        );
        assert_eq!(
            grounded_answer(p, "1998年", 1, Lang::Zh),
            "公司成立于1998年[1]。"
        );
        let e = "The VPN is called ZVPN. Use it abroad!";
        assert_eq!(
            grounded_answer(e, "ZVPN", 3, Lang::En),
            "The VPN is called ZVPN[3]."
        );
        let long = format!("{}答案{}。", "很长".repeat(80), "的句子");
        assert_eq!(grounded_answer(&long, "答案", 1, Lang::Zh), "答案[1]。");
    }

    #[test]
    fn definitions_become_questions() {
        let q = definition_questions(
            "年假是员工每年可以带薪休息的假期。这是说明。报销时限：出差结束后30天内。\n\
             ZVPN is the company's virtual private network. It is fast.",
        );
        let qs: Vec<&str> = q.iter().map(|(q, _)| q.as_str()).collect();
        assert_eq!(qs, ["年假是什么？", "报销时限是什么？", "What is ZVPN?"]);
        assert_eq!(q[1].1, "报销时限：出差结束后30天内。");
    }
}
