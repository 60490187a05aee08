//! Ingestion throughput on a generated corpus (default 1,000 documents): Chinese and English
//! multi-page PDFs (CID font with the predefined `UniGB-UCS2-H` CMap, like reportlab's
//! STSong-Light, and Helvetica), UTF-8 and GBK text, Markdown. Measures
//! (a) extract + clean + mask + chunk alone (`zhiku_ingest::process`, no embedding),
//! (b) end to end (`index::ingest_paths` with the real embedding model),
//! (c) peak resident memory.
//!
//! `cargo bench --bench ingest`; env `ZHIKU_BENCH_DOCS` (corpus size, default 1000),
//! `ZHIKU_BENCH_E2E_DOCS` (how many of them, from the first, the end-to-end part ingests:
//! default 200, which keeps it near a minute and a half on two cores; the mix repeats every
//! ten documents),
//! `ZHIKU_BENCH_MODEL` (default `models/multilingual-e5-small`).

#[path = "common/mod.rs"]
mod common;
#[path = "common/rng.rs"]
mod rng;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, Stream, StringFormat, dictionary};
use zhiku_core::embed::{self, Embedder};
use zhiku_core::index::{self, IngestOptions};
use zhiku_core::progress::Silent;
use zhiku_ingest::Options;

use common::{Table, f};
use rng::Rng;

// ---------------------------------------------------------------------------------------
// Generated text: policy-like sentences.

const ZH_SUBJECTS: &[&str] = &[
    "员工",
    "新入职员工",
    "部门负责人",
    "项目经理",
    "财务人员",
    "外包人员",
    "实习生",
    "各分公司",
    "行政部",
    "采购专员",
    "驻外人员",
    "销售人员",
];
const ZH_ACTIONS: &[&str] = &[
    "应当在{n}个工作日内提交",
    "须经{dept}审批后方可办理",
    "可以按规定申请",
    "不得擅自变更",
    "应于每月{n}日前完成",
    "须填写《{form}》并报{dept}备案",
    "应当妥善保管",
    "须在系统中登记",
];
const ZH_OBJECTS: &[&str] = &[
    "年假申请",
    "差旅报销单",
    "采购申请",
    "加班记录",
    "合同审批材料",
    "出差计划",
    "培训费用",
    "办公用品领用单",
    "固定资产盘点表",
    "绩效自评表",
    "保密协议",
    "用车申请",
];
const ZH_CONDITIONS: &[&str] = &[
    "如遇特殊情况，可延长至{n}日",
    "逾期未提交的视为自动放弃",
    "超出标准部分由个人承担",
    "金额超过{m}元的须由总经理签字",
    "连续工作满{k}年的每年增加{k}天",
    "具体标准见附件{k}",
    "住宿标准为每晚不超过{m}元",
    "未经批准不得报销",
    "相关记录保存不少于{k}年",
];
const ZH_DEPTS: &[&str] = &[
    "人力资源部",
    "财务部",
    "行政部",
    "法务部",
    "信息技术部",
    "审计部",
];
const ZH_FORMS: &[&str] = &["费用报销单", "请假审批表", "出差申请表", "用印申请表"];
const ZH_TOPICS: &[&str] = &[
    "总则",
    "休假管理",
    "差旅管理",
    "报销流程",
    "采购管理",
    "信息安全",
    "考勤制度",
    "绩效考核",
    "培训发展",
    "附则",
];
const ZH_TITLES: &[&str] = &[
    "员工手册",
    "差旅费管理办法",
    "年休假管理规定",
    "采购管理制度",
    "信息安全管理规范",
    "费用报销实施细则",
    "考勤管理办法",
    "合同管理规定",
];
const COMPANIES: &[&str] = &[
    "华东分公司",
    "研发中心",
    "集团总部",
    "华南分公司",
    "知库科技",
];

const EN_SUBJECTS: &[&str] = &[
    "Employees",
    "New hires",
    "Department heads",
    "Project managers",
    "Contractors",
    "Interns",
    "Sales staff",
];
const EN_ACTIONS: &[&str] = &[
    "must submit",
    "should keep a copy of",
    "may apply for",
    "must not change",
    "are required to file",
    "must obtain approval for",
];
const EN_OBJECTS: &[&str] = &[
    "the leave request",
    "the travel expense report",
    "the purchase order",
    "the overtime record",
    "the contract review form",
    "the training budget",
    "the asset inventory",
];
const EN_CONDITIONS: &[&str] = &[
    "within {n} working days",
    "before the {n}th of each month",
    "when the amount exceeds {m} yuan",
    "after {k} years of continuous service",
    "as described in appendix {k}",
    "unless the finance department agrees otherwise",
];
const EN_TITLES: &[&str] = &[
    "Employee Handbook",
    "Travel Policy",
    "Annual Leave Rules",
    "Procurement Guidelines",
    "Information Security Standard",
];

fn fill(template: &str, rng: &mut Rng) -> String {
    template
        .replace("{n}", &rng.range(3, 31).to_string())
        .replace("{m}", &(rng.range(2, 60) * 100).to_string())
        .replace("{k}", &rng.range(1, 10).to_string())
        .replace("{dept}", rng.pick::<&str>(ZH_DEPTS))
        .replace("{form}", rng.pick::<&str>(ZH_FORMS))
}

fn zh_sentence(rng: &mut Rng) -> String {
    let s = format!(
        "{}{}{}，{}。",
        rng.pick(ZH_SUBJECTS),
        rng.pick(ZH_ACTIONS),
        rng.pick(ZH_OBJECTS),
        rng.pick(ZH_CONDITIONS)
    );
    fill(&s, rng)
}

fn en_sentence(rng: &mut Rng) -> String {
    let s = format!(
        "{} {} {} {}.",
        rng.pick(EN_SUBJECTS),
        rng.pick(EN_ACTIONS),
        rng.pick(EN_OBJECTS),
        rng.pick(EN_CONDITIONS)
    );
    fill(&s, rng)
}

/// A sentence with personal data that the pipeline masks (not checked word for word).
fn contact_sentence(rng: &mut Rng, zh: bool) -> String {
    let phone = format!("1{}{:09}", rng.range(3, 10), rng.next_u64() % 1_000_000_000);
    if zh {
        format!("如有疑问请联系{}，电话{phone}。", rng.pick(ZH_DEPTS))
    } else {
        format!("Questions go to the help desk, phone {phone}.")
    }
}

fn is_contact(sentence: &str) -> bool {
    sentence.contains("电话") || sentence.contains("phone")
}

// ---------------------------------------------------------------------------------------
// Documents.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PdfZh,
    PdfEn,
    TxtUtf8,
    TxtGbk,
    MarkdownZh,
    TxtEn,
}

impl Kind {
    /// The mix: 30 % Chinese PDF, 10 % English PDF, 20 % UTF-8 text, 10 % GBK text, 20 %
    /// Markdown, 10 % English text.
    fn of(i: usize) -> Self {
        match i % 10 {
            0..=2 => Self::PdfZh,
            3 => Self::PdfEn,
            4 | 5 => Self::TxtUtf8,
            6 => Self::TxtGbk,
            7 | 8 => Self::MarkdownZh,
            _ => Self::TxtEn,
        }
    }

    const ALL: [Kind; 6] = [
        Self::PdfZh,
        Self::PdfEn,
        Self::TxtUtf8,
        Self::TxtGbk,
        Self::MarkdownZh,
        Self::TxtEn,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::PdfZh => "PDF, Chinese (CID font, UniGB-UCS2-H)",
            Self::PdfEn => "PDF, English (Helvetica)",
            Self::TxtUtf8 => "TXT, Chinese, UTF-8",
            Self::TxtGbk => "TXT, Chinese, GBK",
            Self::MarkdownZh => "Markdown, Chinese",
            Self::TxtEn => "TXT, English",
        }
    }

    fn is_pdf(self) -> bool {
        matches!(self, Self::PdfZh | Self::PdfEn)
    }
}

/// A generated document: its file and the sentences each page must give back.
struct Generated {
    path: PathBuf,
    kind: Kind,
    pages: Vec<Vec<String>>,
}

/// Paragraphs of 2–4 sentences; about one in three documents holds a phone number.
fn paragraphs(rng: &mut Rng, zh: bool, sentences: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut left = sentences;
    while left > 0 {
        let n = rng.range(2, 5).min(left);
        left -= n;
        out.push(
            (0..n)
                .map(|_| {
                    if zh {
                        zh_sentence(rng)
                    } else {
                        en_sentence(rng)
                    }
                })
                .collect(),
        );
    }
    if rng.range(0, 3) == 0 {
        out.push(vec![contact_sentence(rng, zh)]);
    }
    out
}

fn generate(i: usize, dir: &Path) -> Generated {
    let kind = Kind::of(i);
    let mut rng = Rng::from_text(&format!("zhiku bench document {i}"));
    let zh = !matches!(kind, Kind::PdfEn | Kind::TxtEn);
    let title = if zh {
        format!("{}{}（{}）", rng.pick(COMPANIES), rng.pick(ZH_TITLES), i)
    } else {
        format!("{} ({i})", rng.pick(EN_TITLES))
    };
    let (name, bytes, pages) = match kind {
        Kind::PdfZh | Kind::PdfEn => {
            let n = rng.range(2, 5);
            let pages: Vec<Vec<Vec<String>>> = (0..n)
                .map(|_| {
                    let sentences = rng.range(12, 21);
                    paragraphs(&mut rng, zh, sentences)
                })
                .collect();
            let header = if zh {
                format!("{}内部资料 仅限内部使用", rng.pick(COMPANIES))
            } else {
                "Internal use only".to_string()
            };
            let bytes = pdf(&title, &header, &pages, zh);
            let flat = pages.into_iter().map(|p| p.concat()).collect();
            (format!("doc{i:05}.pdf"), bytes, flat)
        }
        Kind::TxtUtf8 | Kind::TxtGbk | Kind::TxtEn => {
            let sentences = rng.range(6, 18);
            let paras = paragraphs(&mut rng, zh, sentences);
            let sep = if zh { "" } else { " " };
            let mut text = format!("{title}\n\n");
            for p in &paras {
                text.push_str(&p.join(sep));
                text.push_str("\n\n");
            }
            let bytes = if kind == Kind::TxtGbk {
                let (b, _, unmappable) = encoding_rs::GBK.encode(&text);
                assert!(!unmappable, "generated text must be GBK-encodable");
                b.into_owned()
            } else {
                text.into_bytes()
            };
            (format!("doc{i:05}.txt"), bytes, vec![paras.concat()])
        }
        Kind::MarkdownZh => {
            let sections = rng.range(2, 5);
            let mut text = format!("# {title}\n\n");
            let mut all = Vec::new();
            for s in 0..sections {
                text.push_str(&format!("## 第{}章 {}\n\n", s + 1, rng.pick(ZH_TOPICS)));
                let sentences = rng.range(3, 7);
                for p in paragraphs(&mut rng, true, sentences) {
                    text.push_str(&p.concat());
                    text.push_str("\n\n");
                    all.extend(p);
                }
            }
            (format!("doc{i:05}.md"), text.into_bytes(), vec![all])
        }
    };
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write corpus file");
    Generated { path, kind, pages }
}

/// UTF-16BE code units, the codes of the `UniGB-UCS2-H` CMap (BMP text only).
fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

/// Wrap text into lines of at most `width` columns (CJK characters count 2).
fn wrap(text: &str, width: usize, zh: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut cols = 0;
    if zh {
        for c in text.chars() {
            let w = if c.is_ascii() { 1 } else { 2 };
            if cols + w > width {
                lines.push(std::mem::take(&mut line));
                cols = 0;
            }
            line.push(c);
            cols += w;
        }
    } else {
        for word in text.split(' ') {
            if cols > 0 && cols + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
                cols = 0;
            }
            if cols > 0 {
                line.push(' ');
                cols += 1;
            }
            line.push_str(word);
            cols += word.len();
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// An A4 PDF: a running header and a page footer on every page, the title on the first,
/// paragraphs wrapped into lines, one text object per line (as reportlab writes them).
fn pdf(title: &str, header: &str, pages: &[Vec<Vec<String>>], zh: bool) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = if zh {
        let descriptor = doc.add_object(dictionary! {
            "Type" => "FontDescriptor",
            "FontName" => "STSong-Light",
            "Flags" => 6,
            "FontBBox" => vec![(-25).into(), (-254).into(), 1000.into(), 880.into()],
            "ItalicAngle" => 0,
            "Ascent" => 880,
            "Descent" => -120,
            "CapHeight" => 880,
            "StemV" => 93,
        });
        let cid_font = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType0",
            "BaseFont" => "STSong-Light",
            "CIDSystemInfo" => dictionary! {
                "Registry" => Object::string_literal("Adobe"),
                "Ordering" => Object::string_literal("GB1"),
                "Supplement" => 2,
            },
            "FontDescriptor" => descriptor,
            "DW" => 1000,
        });
        doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type0",
            "BaseFont" => "STSong-Light-UniGB-UCS2-H",
            "Encoding" => "UniGB-UCS2-H",
            "DescendantFonts" => vec![cid_font.into()],
        })
    } else {
        doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding",
        })
    };
    let text = |s: &str| {
        if zh {
            Object::String(ucs2(s), StringFormat::Hexadecimal)
        } else {
            Object::string_literal(s)
        }
    };
    let (size, width) = if zh { (11, 76) } else { (10, 95) };
    let mut kids = Vec::new();
    for (p, paras) in pages.iter().enumerate() {
        let mut ops = Vec::new();
        let mut show = |s: &str, x: i64, y: i64, size: i64| {
            ops.push(Operation::new("BT", vec![]));
            ops.push(Operation::new("Tf", vec!["F1".into(), size.into()]));
            ops.push(Operation::new("Td", vec![x.into(), y.into()]));
            ops.push(Operation::new("Tj", vec![text(s)]));
            ops.push(Operation::new("ET", vec![]));
        };
        show(header, 60, 800, 9);
        let mut y = 760;
        if p == 0 {
            show(title, 60, y, 16);
            y -= 30;
        }
        for para in paras {
            let joined = para.join(if zh { "" } else { " " });
            for line in wrap(&joined, width, zh) {
                show(&line, 60, y, size);
                y -= size + 5;
            }
            y -= 8;
        }
        let footer = if zh {
            format!("第 {} 页 共 {} 页", p + 1, pages.len())
        } else {
            format!("Page {} of {}", p + 1, pages.len())
        };
        show(&footer, 280, 40, 9);
        let content = Content { operations: ops }
            .encode()
            .expect("encode page content");
        let mut stream = Stream::new(dictionary! {}, content);
        stream.compress().expect("compress page content");
        let content_id = doc.add_object(stream);
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    let mut title_bytes = vec![0xFE, 0xFF];
    title_bytes.extend(ucs2(title));
    let info = doc.add_object(dictionary! {
        "Title" => Object::String(title_bytes, StringFormat::Hexadecimal),
        "Producer" => Object::string_literal("zhiku bench"),
    });
    doc.trailer.set("Root", catalog);
    doc.trailer.set("Info", info);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("write PDF");
    out
}

// ---------------------------------------------------------------------------------------
// Checks and measurement.

/// Letters, digits and ideographs only, lower case: layout, width folding and line joining
/// do not matter.
fn norm(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every generated sentence must come back on its own page.
fn check(doc: &Generated, p: &zhiku_ingest::Processed) -> Result<(), String> {
    if p.pages != doc.pages.len() {
        return Err(format!("{} pages, expected {}", p.pages, doc.pages.len()));
    }
    if !p.warnings.is_empty() {
        return Err(format!("warnings: {:?}", p.warnings));
    }
    for (i, sentences) in doc.pages.iter().enumerate() {
        let page = i as u32 + 1;
        let text: String = p
            .chunks
            .iter()
            .filter(|c| c.page == page)
            .map(|c| norm(&c.text))
            .collect();
        if let Some(s) = sentences
            .iter()
            .find(|s| !is_contact(s) && !text.contains(&norm(s)))
        {
            return Err(format!("page {page} lacks {s:?}"));
        }
    }
    Ok(())
}

/// The embedder, timing its passage embedding.
struct Timed {
    inner: Arc<dyn Embedder>,
    nanos: AtomicU64,
}

impl Embedder for Timed {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn max_tokens(&self) -> usize {
        self.inner.max_tokens()
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }
    fn embed_passages(&self, texts: &[&str]) -> embed::Result<Vec<Vec<f32>>> {
        let t = Instant::now();
        let r = self.inner.embed_passages(texts);
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn embed_query(&self, text: &str) -> embed::Result<Vec<f32>> {
        self.inner.embed_query(text)
    }
}

#[derive(Default)]
struct Tally {
    docs: usize,
    pages: usize,
    chunks: usize,
    bytes: u64,
    time: Duration,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.docs += other.docs;
        self.pages += other.pages;
        self.chunks += other.chunks;
        self.bytes += other.bytes;
        self.time += other.time;
    }

    fn row(&self, label: &str) -> Vec<String> {
        let s = self.time.as_secs_f64().max(1e-9);
        vec![
            label.to_string(),
            self.docs.to_string(),
            self.pages.to_string(),
            self.chunks.to_string(),
            f(self.bytes as f64 / 1048576.0, 1),
            f(s, 2),
            f(self.docs as f64 / s, 0),
            f(self.pages as f64 / s, 0),
            f(self.chunks as f64 / s, 0),
        ]
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
        Err(_) => default,
    }
}

fn main() {
    let model = common::model_dir();
    let n_docs = env_usize("ZHIKU_BENCH_DOCS", 1000);
    let n_e2e = env_usize("ZHIKU_BENCH_E2E_DOCS", 200).min(n_docs);
    println!("## Ingestion: generated corpus of {n_docs} documents");
    println!();
    println!("machine: {}", common::machine());

    let corpus = tempfile::tempdir().expect("temporary folder");
    let t = Instant::now();
    let docs: Vec<Generated> = (0..n_docs).map(|i| generate(i, corpus.path())).collect();
    let corpus_bytes: u64 = docs
        .iter()
        .map(|d| std::fs::metadata(&d.path).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "corpus: {} files, {:.1} MiB, generated in {:.1} s",
        docs.len(),
        corpus_bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );

    let embedder = common::load_embedder(&model);
    let count_tokens = |t: &str| embedder.count_tokens(t);
    let options = Options::default();

    // (a) extract + clean + mask + chunk, one thread, no embedding.
    let mut tallies: Vec<(Kind, Tally)> =
        Kind::ALL.iter().map(|k| (*k, Tally::default())).collect();
    let mut extract_only = Tally::default();
    let mut bad = Vec::new();
    for doc in &docs {
        let bytes = std::fs::read(&doc.path).expect("read corpus file");
        let name = doc.path.file_name().unwrap().to_string_lossy().into_owned();
        let t = Instant::now();
        let processed = zhiku_ingest::process(&bytes, &name, &options, &count_tokens);
        let elapsed = t.elapsed();
        let processed = processed.unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(why) = check(doc, &processed) {
            bad.push(format!("{name}: {why}"));
        }
        let tally = &mut tallies.iter_mut().find(|(k, _)| *k == doc.kind).unwrap().1;
        tally.docs += 1;
        tally.pages += processed.pages;
        tally.chunks += processed.chunks.len();
        tally.bytes += bytes.len() as u64;
        tally.time += elapsed;
        if doc.kind.is_pdf() {
            let t = Instant::now();
            let extracted = zhiku_ingest::extract::extract(&bytes, &name).expect("extract");
            extract_only.time += t.elapsed();
            extract_only.docs += 1;
            extract_only.pages += extracted.pages.len();
            extract_only.bytes += bytes.len() as u64;
        }
    }
    assert!(
        bad.is_empty(),
        "{} documents did not come back right, e.g. {}",
        bad.len(),
        bad[0]
    );
    let rss_a = common::peak_rss_mib();
    println!(
        "text check: every generated sentence of all {} documents came back on its page",
        docs.len()
    );
    println!();
    println!(
        "### (a) extract + clean + mask + chunk (`zhiku_ingest::process`, 1 thread, token counts with the e5 tokenizer, no embedding)"
    );
    println!();
    let mut table = Table::new(&[
        "format", "docs", "pages", "chunks", "MiB", "s", "docs/s", "pages/s", "chunks/s",
    ]);
    let mut total = Tally::default();
    let mut pdf = Tally::default();
    for (kind, tally) in &tallies {
        table.row(tally.row(kind.label()));
        total.add(tally);
        if kind.is_pdf() {
            pdf.add(tally);
        }
    }
    table.row(pdf.row("**all PDFs**"));
    table.row(extract_only.row("all PDFs, text extraction alone (no chunks)"));
    table.row(total.row("**all documents**"));
    table.print();

    // (b) end to end: files → SQLite, embeddings, vector and keyword indexes.
    let subset = &docs[..n_e2e];
    let paths: Vec<PathBuf> = subset.iter().map(|d| d.path.clone()).collect();
    let pdf_pages: usize = subset
        .iter()
        .filter(|d| d.kind.is_pdf())
        .map(|d| d.pages.len())
        .sum();
    let timed = Arc::new(Timed {
        inner: embedder.clone(),
        nanos: AtomicU64::new(0),
    });
    let data = tempfile::tempdir().expect("temporary folder");
    let engine = common::open_engine(data.path(), &model, timed.clone());
    let t = Instant::now();
    let report = index::ingest_paths(&engine, "bench", &paths, &IngestOptions::default(), &Silent)
        .expect("ingest");
    let wall = t.elapsed().as_secs_f64();
    let embed_s = timed.nanos.load(Ordering::Relaxed) as f64 / 1e9;
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    let chunks = report.counts.chunks as f64;
    println!(
        "### (b) end to end (`index::ingest_paths`, {} with e5-small, {} threads)",
        if subset.len() == docs.len() {
            "the whole corpus".to_string()
        } else {
            format!("the first {} documents (same mix)", subset.len())
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!();
    let mut table = Table::new(&[
        "docs",
        "PDF pages",
        "chunks",
        "wall s",
        "docs/s",
        "PDF pages/s",
        "chunks embedded/s",
        "embedding share",
        "index MiB",
    ]);
    table.row(vec![
        report.counts.added.to_string(),
        pdf_pages.to_string(),
        report.counts.chunks.to_string(),
        f(wall, 1),
        f(report.counts.added as f64 / wall, 1),
        f(pdf_pages as f64 / wall, 1),
        f(chunks / wall, 1),
        format!("{:.0} %", 100.0 * embed_s / wall),
        f(common::dir_size_mib(data.path()), 1),
    ]);
    table.print();
    println!(
        "embedding alone: {:.1} chunks/s; peak RSS: {:.0} MiB after (a), {:.0} MiB after (b)",
        chunks / embed_s.max(1e-9),
        rss_a,
        common::peak_rss_mib()
    );
    println!("machine after: {}", common::machine());
}
