//! One instruction example and the JSONL files that hold them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FinetuneError, Result};
use crate::generate::ChatMessage;

/// Most malformed lines listed in one error.
const MAX_LISTED: usize = 20;

/// An instruction example in the Alpaca layout.
///
/// As a chat: with an `input`, the `instruction` is the system message (the task) and the
/// `input` the user message; without one, the `instruction` is the user message. The
/// `output` is the assistant's reply, the only part the training loss counts. Knowledge-base
/// examples in RAG form put zhiku's answer system prompt in `instruction` and the rendered
/// sources + question in `input`, so training sees exactly the prompt answers are asked with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub instruction: String,
    #[serde(default)]
    pub input: String,
    pub output: String,
}

impl Record {
    /// The prompt messages (without the reply).
    pub fn prompt(&self) -> Vec<ChatMessage> {
        if self.input.trim().is_empty() {
            vec![ChatMessage::user(self.instruction.clone())]
        } else {
            vec![
                ChatMessage::system(self.instruction.clone()),
                ChatMessage::user(self.input.clone()),
            ]
        }
    }

    /// The whole conversation: the prompt, then the reply.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let mut m = self.prompt();
        m.push(ChatMessage::assistant(self.output.clone()));
        m
    }
}

/// The held-out split written beside a training file: `train.jsonl` → `train.heldout.jsonl`.
pub fn heldout_path(train: &Path) -> PathBuf {
    let stem = train
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    train.with_file_name(format!("{stem}.heldout.jsonl"))
}

/// Read a JSONL file of records. Blank lines are skipped; a line that is not a record (bad
/// JSON, a missing field, an empty `instruction` or `output`) fails the whole read with
/// every such line number, so nothing is silently dropped.
pub fn read_jsonl(path: &Path) -> Result<Vec<Record>> {
    let file = std::fs::File::open(path).map_err(|source| FinetuneError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut records = Vec::new();
    let mut bad = Vec::new();
    let mut count = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| FinetuneError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let problem = match serde_json::from_str::<Record>(&line) {
            Ok(r) if r.instruction.trim().is_empty() => Some("empty `instruction`".to_string()),
            Ok(r) if r.output.trim().is_empty() => Some("empty `output`".to_string()),
            Ok(r) => {
                records.push(r);
                None
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(p) = problem {
            count += 1;
            if bad.len() < MAX_LISTED {
                bad.push((i + 1, p));
            }
        }
    }
    if count > 0 {
        return Err(FinetuneError::Malformed {
            path: path.to_path_buf(),
            count,
            lines: bad,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::Role;

    #[test]
    fn input_makes_the_instruction_a_system_message() {
        let r = Record {
            instruction: "只根据资料回答。".into(),
            input: "资料：…\n\n问题：年假几天？".into(),
            output: "5 天 [1]。".into(),
        };
        let roles: Vec<Role> = r.messages().iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::System, Role::User, Role::Assistant]);
        let plain = Record {
            input: " ".into(),
            ..r
        };
        let roles: Vec<Role> = plain.messages().iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant]);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            "{\"instruction\":\"a\",\"output\":\"b\"}\n\n{oops\n{\"instruction\":\"a\"}\n{\"instruction\":\"a\",\"output\":\" \"}\n",
        )
        .unwrap();
        let err = read_jsonl(&path).unwrap_err();
        let FinetuneError::Malformed { count, lines, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*count, 3);
        let numbers: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [3, 4, 5]);
        assert!(
            err.to_string().contains("line 4: missing field `output`"),
            "{err}"
        );
    }

    #[test]
    fn heldout_file_sits_beside_the_training_file() {
        assert_eq!(
            heldout_path(Path::new("/d/train.jsonl")),
            PathBuf::from("/d/train.heldout.jsonl")
        );
    }
}
