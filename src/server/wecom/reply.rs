//! An answer as WeCom messages: the text, then its sources as a short numbered list of
//! document names (with the page, and a link that opens the passage in the web chat when
//! `server.public_url` is set), cut into messages of at most 2048 bytes (WeCom's limit for a
//! text or markdown message) at sentence ends.

use zhiku_core::config::WecomMessageType;
use zhiku_core::rag::{Answer, Lang};

/// WeCom's limit for one text or markdown message, bytes of UTF-8.
pub const MAX_BYTES: usize = 2048;

/// The messages that carry `answer` to WeCom, in order.
pub fn answer_messages(
    answer: &Answer,
    public_url: Option<&str>,
    kind: WecomMessageType,
) -> Vec<String> {
    let mut body = String::new();
    if let Some(notice) = answer.notice.as_deref().filter(|n| !n.trim().is_empty()) {
        body.push_str(notice.trim());
        body.push_str("\n\n");
    }
    body.push_str(answer.answer.trim());
    compose(&body, &sources(answer, public_url, kind), MAX_BYTES)
}

/// The numbered list of an answer's sources; empty without citations.
pub fn sources(answer: &Answer, public_url: Option<&str>, kind: WecomMessageType) -> String {
    if answer.citations.is_empty() {
        return String::new();
    }
    let zh = answer.lang == Lang::Zh;
    let mut s = String::from(match (zh, kind) {
        (true, WecomMessageType::Markdown) => "**来源**",
        (false, WecomMessageType::Markdown) => "**Sources**",
        (true, WecomMessageType::Text) => "来源：",
        (false, WecomMessageType::Text) => "Sources:",
    });
    let base = public_url.map(|u| u.trim().trim_end_matches('/'));
    for c in &answer.citations {
        let name = if c.title.trim().is_empty() {
            c.document.rsplit(['/', '\\']).next().unwrap_or(&c.document)
        } else {
            c.title.trim()
        };
        let page = match c.place.label(answer.lang) {
            l if l.is_empty() => l,
            l if zh => format!("（{l}）"),
            l => format!(" ({l})"),
        };
        let link = base
            .filter(|b| !b.is_empty())
            .map(|b| format!("{b}/?chunk={}&n={}", c.chunk, c.index));
        s.push('\n');
        match (kind, link) {
            (WecomMessageType::Markdown, Some(link)) => {
                s.push_str(&format!("{}. [{name}]({link}){page}", c.index))
            }
            (WecomMessageType::Text, Some(link)) => {
                s.push_str(&format!("[{}] {name}{page} {link}", c.index))
            }
            (WecomMessageType::Markdown, None) => s.push_str(&format!("{}. {name}{page}", c.index)),
            (WecomMessageType::Text, None) => s.push_str(&format!("[{}] {name}{page}", c.index)),
        }
    }
    s
}

/// `body` cut into messages of at most `max` bytes, with `sources` added to the last one when
/// it fits and sent after it otherwise.
pub fn compose(body: &str, sources: &str, max: usize) -> Vec<String> {
    let mut parts = split(body, max);
    if sources.is_empty() {
        return parts;
    }
    match parts.last_mut() {
        Some(last) if last.len() + 2 + sources.len() <= max => {
            last.push_str("\n\n");
            last.push_str(sources);
        }
        _ => parts.extend(split(sources, max)),
    }
    parts
}

/// `text` cut into pieces of at most `max` bytes at sentence ends (。！？!?；; or a line
/// end, and `.` before a space); a sentence longer than `max` is cut at its last space that
/// fits, else at a character boundary.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4);
    let mut parts = Vec::new();
    let mut current = String::new();
    for sentence in sentences(text) {
        if current.len() + sentence.len() <= max {
            current.push_str(sentence);
            continue;
        }
        push_trimmed(&mut parts, std::mem::take(&mut current));
        let mut rest = sentence;
        while rest.len() > max {
            let mut cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(space) = rest[..cut].rfind(char::is_whitespace).filter(|&i| i > 0) {
                cut = space;
            }
            push_trimmed(&mut parts, rest[..cut].to_string());
            rest = &rest[cut..];
        }
        current.push_str(rest);
    }
    push_trimmed(&mut parts, current);
    parts
}

fn push_trimmed(parts: &mut Vec<String>, s: String) {
    let t = s.trim();
    if !t.is_empty() {
        parts.push(t.to_string());
    }
}

/// `text` as consecutive sentences (terminators and following spaces included).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let ends = matches!(c, '。' | '！' | '？' | '!' | '?' | '；' | ';' | '\n')
            || (c == '.' && next.is_none_or(char::is_whitespace));
        if ends {
            let mut end = i + c.len_utf8();
            while let Some(&(j, n)) = chars.peek() {
                if n == ' ' || n == '\n' {
                    end = j + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(&text[start..end]);
            start = end;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(
            split("年假五天。病假另计。", 2048),
            vec!["年假五天。病假另计。"]
        );
        assert!(split("  \n ", 2048).is_empty());
    }

    #[test]
    fn long_text_is_cut_at_sentence_ends_within_the_limit() {
        let sentence = "员工入职满一年后享有五天带薪年假，需提前三天在系统中申请。";
        let text = sentence.repeat(60);
        let parts = split(&text, MAX_BYTES);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.len() <= MAX_BYTES, "{} bytes", p.len());
            assert!(
                p.ends_with('。'),
                "cut inside a sentence: …{}",
                &p[p.len() - 12..]
            );
        }
        assert_eq!(parts.concat(), text, "nothing lost");
        let english = "The VPN client needs the company certificate. ".repeat(100);
        let parts = split(&english, MAX_BYTES);
        for p in &parts {
            assert!(p.len() <= MAX_BYTES && p.ends_with('.'), "{p}");
        }
        assert_eq!(parts.join(" "), english.trim());
    }

    #[test]
    fn a_sentence_longer_than_the_limit_is_cut_at_char_boundaries() {
        let text = "长".repeat(1000); // 3000 bytes, no sentence end
        let parts = split(&text, MAX_BYTES);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= MAX_BYTES));
        assert_eq!(parts.concat(), text);
        let words = "word ".repeat(600);
        let parts = split(&words, 100);
        assert!(parts.iter().all(|p| p.len() <= 100 && !p.contains("wor d")));
    }

    #[test]
    fn sources_join_the_last_message_when_they_fit() {
        assert_eq!(
            compose("答案。", "来源：\n[1] 手册", 2048),
            vec!["答案。\n\n来源：\n[1] 手册"]
        );
        let body = "句子。".repeat(227); // 2043 bytes
        let parts = compose(&body, "来源：\n[1] 手册", 2048);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], "来源：\n[1] 手册");
    }
}
