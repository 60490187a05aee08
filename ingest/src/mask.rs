//! Personal-data masking: mainland mobile numbers, 18-digit resident ID numbers (checksum and
//! birth date validated), emails and bank card numbers (Luhn validated).

use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskConfig {
    /// Mask personal data before anything is stored. Default true.
    pub enabled: bool,
    /// Typed masks (`<PHONE>`, `<ID>`, `<EMAIL>`, `<CARD>`) instead of `<MASK>`. Default false.
    pub typed: bool,
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            typed: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Phone,
    Id,
    Email,
    Card,
}

impl Kind {
    fn mask(self, typed: bool) -> &'static str {
        if !typed {
            return "<MASK>";
        }
        match self {
            Kind::Phone => "<PHONE>",
            Kind::Id => "<ID>",
            Kind::Email => "<EMAIL>",
            Kind::Card => "<CARD>",
        }
    }
}

// The regex crate has no look-around: each pattern captures the character before and after
// (group `pre`/`post`) to check that the number is not part of a longer one, and masking
// repeats until nothing changes so adjacent numbers are all found.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}").unwrap()
});
static ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?P<pre>^|[^0-9A-Za-z])(?P<n>\d{17}[0-9Xx])(?P<post>[^0-9A-Za-z]|$)").unwrap()
});
static CARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?P<pre>^|[^0-9])(?P<n>\d{4}(?:[ \-]?\d{4}){3}(?:[ \-]?\d{1,3})?)(?P<post>[^0-9]|$)",
    )
    .unwrap()
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?P<pre>^|[^0-9+])(?P<n>(?:(?:\+|00)?86[ \-]?)?1[3-9]\d(?:\d{8}|[ \-]\d{4}[ \-]\d{4}))(?P<post>[^0-9]|$)").unwrap()
});

/// ISO 7064 MOD 11-2 check of an 18-character ID number, plus a plausible birth date.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(d, w)| (d - b'0') as u32 * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    if b[17].to_ascii_uppercase() != check {
        return false;
    }
    let num = |r: std::ops::Range<usize>| id[r].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (num(6..10), num(10..12), num(12..14));
    (1900..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// Luhn check of a card number's digits.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return false;
        }
        let mut d = (c - b'0') as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn mask_pass(re: &Regex, text: &str, kind: Kind, typed: bool, count: &mut usize) -> String {
    re.replace_all(text, |c: &Captures<'_>| {
        let whole = c.get(0).map_or("", |m| m.as_str());
        let n = c.name("n").map_or("", |m| m.as_str());
        let digits: String = n.chars().filter(|ch| ch.is_ascii_alphanumeric()).collect();
        let ok = match kind {
            Kind::Id => valid_id(&digits),
            Kind::Card => (16..=19).contains(&digits.len()) && luhn(&digits),
            Kind::Phone | Kind::Email => true,
        };
        if !ok {
            return whole.to_string();
        }
        *count += 1;
        format!(
            "{}{}{}",
            c.name("pre").map_or("", |m| m.as_str()),
            kind.mask(typed),
            c.name("post").map_or("", |m| m.as_str())
        )
    })
    .into_owned()
}

/// Mask personal data in `text`. Returns the masked text and how many items were masked.
pub fn mask(text: &str, config: &MaskConfig) -> (String, usize) {
    if !config.enabled {
        return (text.to_string(), 0);
    }
    let mut count = 0;
    let mut out = EMAIL
        .replace_all(text, |_: &Captures<'_>| {
            count += 1;
            Kind::Email.mask(config.typed)
        })
        .into_owned();
    for (re, kind) in [
        (&*ID, Kind::Id),
        (&*CARD, Kind::Card),
        (&*PHONE, Kind::Phone),
    ] {
        // Adjacent matches share a boundary character; repeat until stable (bounded).
        for _ in 0..4 {
            let before = count;
            out = mask_pass(re, &out, kind, config.typed, &mut count);
            if count == before {
                break;
            }
        }
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid ID number for a birth date, with the right check character.
    fn make_id(prefix17: &str) -> String {
        const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = prefix17
            .bytes()
            .zip(W)
            .map(|(d, w)| (d - b'0') as u32 * w)
            .sum();
        format!("{prefix17}{}", b"10X98765432"[(sum % 11) as usize] as char)
    }

    fn m(t: &str) -> String {
        mask(t, &MaskConfig::default()).0
    }

    #[test]
    fn id_numbers_valid_and_invalid() {
        let id = make_id("11010519491231002");
        assert!(valid_id(&id));
        assert_eq!(
            m(&format!("身份证号{id}，已登记。")),
            "身份证号<MASK>，已登记。"
        );
        // Wrong check digit: not an ID, left alone.
        let mut bad = id.clone();
        let last = if bad.ends_with('0') { '1' } else { '0' };
        bad.pop();
        bad.push(last);
        assert!(!valid_id(&bad));
        assert_eq!(m(&format!("编号{bad}")), format!("编号{bad}"));
        // Impossible birth date with a correct checksum.
        let bad_date = make_id("11010519491331002");
        assert!(!valid_id(&bad_date));
        // X check character.
        let x = (0..1000)
            .map(|i| make_id(&format!("44030419850101{i:03}")))
            .find(|s| s.ends_with('X'))
            .unwrap();
        assert_eq!(m(&format!("ID:{}", x.to_lowercase())), "ID:<MASK>");
    }

    #[test]
    fn phones_emails_cards() {
        assert_eq!(m("电话13812345678。"), "电话<MASK>。");
        assert_eq!(m("call +86 138-1234-5678 now"), "call <MASK> now");
        assert_eq!(m("138 1234 5678,13912345678"), "<MASK>,<MASK>");
        assert_eq!(
            m("订单号 213812345678 不是手机号"),
            "订单号 213812345678 不是手机号"
        );
        assert_eq!(m("12345678901"), "12345678901", "not a mobile prefix");
        assert_eq!(
            m("邮箱 wang.min+hr@example.com.cn 联系"),
            "邮箱 <MASK> 联系"
        );
        assert_eq!(
            m("卡号 6222 0200 1234 5678 901 请核对"),
            "卡号 6222 0200 1234 5678 901 请核对",
            "Luhn fails"
        );
        assert_eq!(m("卡号 4111 1111 1111 1111 请核对"), "卡号 <MASK> 请核对");
        assert_eq!(m("卡号4111111111111112"), "卡号4111111111111112");
        let (t, n) = mask(
            "a@b.co 13812345678 4111111111111111",
            &MaskConfig {
                enabled: true,
                typed: true,
            },
        );
        assert_eq!((t.as_str(), n), ("<EMAIL> <PHONE> <CARD>", 3));
        let (t, n) = mask(
            "13812345678",
            &MaskConfig {
                enabled: false,
                typed: false,
            },
        );
        assert_eq!((t.as_str(), n), ("13812345678", 0));
    }
}
