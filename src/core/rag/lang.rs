//! The question's language, which chooses the prompt templates and the wording of fixed
//! replies.

use serde::Serialize;

/// Language of a question: Chinese or English (everything that is not Chinese).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// Chinese when Han characters weigh at least a third of the letters (a Han character
    /// counts three): "VPN怎么连接" is Chinese, "What does 年假 mean?" is English.
    pub fn detect(text: &str) -> Lang {
        let han = text.chars().filter(|&c| is_han(c)).count();
        let letters = text
            .chars()
            .filter(|c| c.is_alphabetic() && !is_han(*c))
            .count();
        if han > 0 && han * 3 >= letters {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// `zh` or `en`, the suffix of the template files.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }
}

/// A CJK unified ideograph (basic block, extension A and B, compatibility ideographs).
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_language() {
        assert_eq!(Lang::detect("年假怎么计算？"), Lang::Zh);
        assert_eq!(Lang::detect("VPN怎么连接"), Lang::Zh);
        assert_eq!(Lang::detect("How long must a password be?"), Lang::En);
        assert_eq!(Lang::detect("What does 年假 mean?"), Lang::En);
        assert_eq!(Lang::detect("123?"), Lang::En);
    }
}
