//! The garble check: is a page's text real text, or mojibake from a broken font map?
//!
//! Checking only for replacement characters is not enough: Chromium-printed Type 3 fonts
//! read through lopdf give plain ASCII nonsense (`y1%'fi595yY2D&jTPˆ”<.r„d…`). Each page is
//! scored on
//! - `expected`: the share of characters in expected scripts (Han and other CJK, Latin,
//!   digits, common punctuation, Cyrillic/Greek letters);
//! - `unreadable`: the share of private-use, replacement and control characters;
//! - `mixed`: among adjacent letter/digit pairs, the share that switch class in a way words
//!   and numbers rarely do (lower→upper, letter↔digit): mojibake switches at random;
//! - `known` (optional): the share of characters the embedding tokenizer knows as whole
//!   pieces, from a caller-supplied scorer (ingest does not depend on a tokenizer).
//!
//! A page below any threshold is never indexed as text.

use std::sync::Arc;

use super::pdf::is_cjk;

/// Returns the share (0–1) of the text's characters that the embedding tokenizer covers with
/// known whole pieces (not unknown tokens or byte fallbacks).
pub type KnownPieces = Arc<dyn Fn(&str) -> f32 + Send + Sync>;

/// An optional [`KnownPieces`] scorer, printable and defaulting to none.
#[derive(Clone, Default)]
pub struct KnownPiecesScorer(pub Option<KnownPieces>);

impl std::fmt::Debug for KnownPiecesScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "KnownPiecesScorer(Some)"
        } else {
            "KnownPiecesScorer(None)"
        })
    }
}

/// How a page's text looks.
#[derive(Debug, Clone, PartialEq)]
pub enum Quality {
    Good,
    Empty,
    Garbled(String),
}

/// A page's scores (shares in 0–1, over non-whitespace characters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GarbleScore {
    pub chars: usize,
    pub expected: f32,
    pub unreadable: f32,
    pub mixed: f32,
    /// Adjacent letter/digit pairs `mixed` was computed over.
    pub pairs: usize,
    pub known: Option<f32>,
}

/// Thresholds: below `MIN_EXPECTED` or `MIN_KNOWN`, above `MAX_UNREADABLE` or `MAX_MIXED`
/// means garbled.
/// Measured: lopdf's mojibake of a Chromium-printed Chinese PDF scores 0.79–0.84 here, real
/// Chinese/English/mixed/number/code pages 0.98–1.0.
pub const MIN_EXPECTED: f32 = 0.9;
pub const MAX_UNREADABLE: f32 = 0.1;
pub const MAX_MIXED: f32 = 0.2;
pub const MIN_KNOWN: f32 = 0.5;
/// `mixed` is judged only over this many letter/digit pairs (a short code or serial number
/// alone is not evidence).
const MIN_PAIRS: usize = 20;

fn expected_char(c: char) -> bool {
    let u = c as u32;
    c.is_ascii_graphic()
        || is_cjk(c)
        || (0x3000..=0x303F).contains(&u) // CJK punctuation
        || (0xFF00..=0xFFEF).contains(&u) // full-width forms
        || (0x2010..=0x2027).contains(&u) // dashes, quotes, ellipsis
        || (0x2030..=0x203B).contains(&u)
        || matches!(c, '·' | '°' | '±' | '×' | '÷' | '§' | '©' | '®' | '™' | '€' | '£' | '¥' | '→' | '←' | '↑' | '↓' | '√' | '≤' | '≥' | '≠' | '≈' | '∞' | '①' | '②' | '③' | '④' | '⑤' | '■' | '□' | '●' | '○' | '◆' | '★' | '✓')
        || (0x2460..=0x24FF).contains(&u) // enclosed numbers
        || (0x2500..=0x25FF).contains(&u) // box drawing, shapes
        || (c.is_alphabetic() && ((0x00C0..=0x024F).contains(&u) || (0x0370..=0x04FF).contains(&u)))
}

fn unreadable_char(c: char) -> bool {
    let u = c as u32;
    c == '\u{FFFD}'
        || (0xE000..=0xF8FF).contains(&u)
        || (0xF0000..=0x10FFFF).contains(&u)
        || c.is_control()
}

#[derive(PartialEq, Clone, Copy)]
enum Class {
    Lower,
    Upper,
    Digit,
}

fn class(c: char) -> Option<Class> {
    if c.is_ascii_lowercase() {
        Some(Class::Lower)
    } else if c.is_ascii_uppercase() {
        Some(Class::Upper)
    } else if c.is_ascii_digit() {
        Some(Class::Digit)
    } else {
        None
    }
}

/// Score a page's text.
pub fn score(text: &str, known: Option<&KnownPieces>) -> GarbleScore {
    let mut n = 0usize;
    let mut expected = 0usize;
    let mut unreadable = 0usize;
    let mut pairs = 0usize;
    let mut switches = 0usize;
    let mut prev: Option<Class> = None;
    for c in text.chars() {
        let cl = class(c);
        if let (Some(a), Some(b)) = (prev, cl) {
            pairs += 1;
            if a != b && !(a == Class::Upper && b == Class::Lower) {
                switches += 1;
            }
        }
        prev = cl;
        if c.is_whitespace() {
            continue;
        }
        n += 1;
        if unreadable_char(c) {
            unreadable += 1;
        } else if expected_char(c) {
            expected += 1;
        }
    }
    let share = |k: usize| if n == 0 { 0.0 } else { k as f32 / n as f32 };
    let known = if n == 0 {
        None
    } else {
        known.map(|f| f(text).clamp(0.0, 1.0))
    };
    GarbleScore {
        chars: n,
        expected: share(expected),
        unreadable: share(unreadable),
        mixed: if pairs == 0 {
            0.0
        } else {
            switches as f32 / pairs as f32
        },
        pairs,
        known,
    }
}

impl GarbleScore {
    pub fn verdict(&self) -> Quality {
        let pct = |v: f32| (v * 100.0).round() as u32;
        if self.chars == 0 {
            return Quality::Empty;
        }
        if self.unreadable > MAX_UNREADABLE {
            return Quality::Garbled(format!("{}% unreadable characters", pct(self.unreadable)));
        }
        if self.expected < MIN_EXPECTED {
            return Quality::Garbled(format!(
                "only {}% of characters in expected scripts",
                pct(self.expected)
            ));
        }
        if self.pairs >= MIN_PAIRS && self.mixed > MAX_MIXED {
            return Quality::Garbled(format!(
                "{}% of letter/digit pairs switch case or class at random",
                pct(self.mixed)
            ));
        }
        if let Some(k) = self.known
            && k < MIN_KNOWN
        {
            return Quality::Garbled(format!(
                "only {}% of characters are known to the tokenizer",
                pct(k)
            ));
        }
        Quality::Good
    }
}

/// Score and judge in one step.
pub fn quality(text: &str, known: Option<&KnownPieces>) -> Quality {
    score(text, known).verdict()
}
