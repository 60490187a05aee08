//! Files as handed in (upload parts, or zips given to `zhiku ingest`) → checked files: names
//! made safe, zips unpacked with zip-bomb defences, every file typed by its content
//! ([`zhiku_ingest::sniff`]). The server's uploads and the command line share this code.
//!
//! An attack refuses the whole set and nothing is kept (the caller deletes the staging
//! folder): a name that is absolute, has a drive letter, climbs out with `..` (also spelt
//! with backslashes) or holds NUL or control characters, in a part or in a zip entry; more
//! files than `server.max_upload_files`; a zip that unpacks to more than
//! `server.max_unzipped_mb`, or whose entry expands more than [`MAX_RATIO`]:1. Sizes are
//! counted while the bytes stream out of the decompressor, never taken from the zip's
//! headers. A file that is merely wrong (unsupported type, content not matching its name,
//! a symbolic link, a corrupt entry) is refused alone and the others go through.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use zhiku_ingest::sniff;

/// Most expansion of one zip entry (deflate cannot exceed about 1032:1; documents and text
/// stay far below 200:1)…
pub const MAX_RATIO: u64 = 200;
/// …checked once the entry has produced this many bytes (tiny files compress oddly).
const RATIO_FLOOR: u64 = 1 << 20;
/// Longest accepted name, in bytes, and longest part of one.
const MAX_NAME: usize = 1024;
const MAX_NAME_PART: usize = 255;

/// What one upload (or one zip given to `zhiku ingest`) may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Files, after unpacking zips.
    pub max_files: usize,
    /// Bytes unpacked from all the upload's zips together.
    pub max_unzipped: u64,
}

/// A part as received: its checked name and where it was written.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub path: PathBuf,
}

/// A file of the upload after the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Path relative to the upload (`政策/休假制度.txt`; a zip's entries sit in the zip's
    /// folder).
    pub name: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// To be stored and queued.
    Accepted {
        staged: PathBuf,
        hash: String,
        size: u64,
    },
    /// Not ingested, with the reason; `wrong_type` when the type is the problem.
    Refused { message: String, wrong_type: bool },
}

/// Why a whole upload is refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unsafe file name {name:?}: {why}; nothing was stored")]
    UnsafeName { name: String, why: &'static str },
    #[error(
        "the upload holds more than {max} files (server.max_upload_files); nothing was stored, upload fewer at a time"
    )]
    TooManyFiles { max: usize },
    #[error(
        "`{zip}` unpacks to more than {max_mb} MiB (server.max_unzipped_mb); nothing was stored"
    )]
    TooLarge { zip: String, max_mb: u64 },
    #[error(
        "`{zip}` looks like a zip bomb: `{entry}` expands more than {ratio}:1; nothing was stored",
        ratio = MAX_RATIO
    )]
    Bomb { zip: String, entry: String },
    #[error("cannot store the upload: {0}")]
    Io(#[from] std::io::Error),
}

impl UnpackError {
    /// The upload is at fault (400), not the server (500).
    pub fn is_bad_upload(&self) -> bool {
        !matches!(self, Self::Io(_))
    }
}

/// Check an uploaded file's relative path (a part's file name or a zip entry's name) and
/// return it normalised: `/` between parts, no empty or `.` parts.
pub fn clean_name(raw: &str) -> Result<String, &'static str> {
    if raw.chars().any(|c| c.is_control()) {
        return Err("it contains a NUL or control character");
    }
    let s = raw.replace('\\', "/");
    if s.starts_with('/') {
        return Err("it is an absolute path");
    }
    let b = s.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err("it starts with a drive letter");
    }
    let mut parts = Vec::new();
    for part in s.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it climbs out of its folder with `..`"),
            p if p.len() > MAX_NAME_PART => return Err("a part of it is longer than 255 bytes"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("it has no file name");
    }
    let name = parts.join("/");
    if name.len() > MAX_NAME {
        return Err("it is longer than 1024 bytes");
    }
    Ok(name)
}

/// Files that folder uploads and zips carry along but nobody means to upload: hidden files
/// (`.DS_Store`, macOS `._` forks), `__MACOSX/`, Office lock files (`~$…`), `Thumbs.db`.
pub fn is_junk(name: &str) -> bool {
    let mut parts = name.split('/');
    let file = name.rsplit('/').next().unwrap_or(name);
    parts.any(|p| p.starts_with('.') || p == "__MACOSX")
        || file.starts_with("~$")
        || file.eq_ignore_ascii_case("thumbs.db")
        || file.eq_ignore_ascii_case("desktop.ini")
}

/// A zip entry's name: UTF-8 when it is (the zip's UTF-8 flag or Info-ZIP's Unicode field),
/// else GB18030, which is what Chinese Windows writes without saying so; `fallback` (the zip
/// crate's CP437 reading) when neither decodes.
fn entry_name(raw: &[u8], fallback: &str) -> String {
    if let Ok(s) = std::str::from_utf8(raw) {
        return s.to_string();
    }
    let (text, _, had_errors) = encoding_rs::GB18030.decode(raw);
    if had_errors {
        fallback.to_string()
    } else {
        text.into_owned()
    }
}

impl Limits {
    /// `server.max_upload_files` and `server.max_unzipped_mb`.
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            max_files: server.max_upload_files,
            max_unzipped: server.max_unzipped_mb.saturating_mul(1 << 20),
        }
    }
}

/// Whether a name ends in `.zip` (any case).
pub fn is_zip(name: &str) -> bool {
    name.len() > 4
        && name.is_char_boundary(name.len() - 4)
        && name[name.len() - 4..].eq_ignore_ascii_case(".zip")
}

/// Check every part (unpacking zips into `staging`), in order.
pub fn check_parts(
    parts: Vec<Part>,
    staging: &Path,
    limits: &Limits,
) -> Result<Vec<Checked>, UnpackError> {
    let mut run = Run {
        staging,
        limits,
        out: Vec::new(),
        files: 0,
        unzipped: 0,
    };
    for (i, part) in parts.into_iter().enumerate() {
        if is_zip(&part.name) {
            run.unzip(i, &part)?;
        } else {
            run.count()?;
            let verdict = check_file(&part.name, &part.path)?;
            run.out.push(Checked {
                name: part.name,
                verdict,
            });
        }
    }
    // The same name twice in one upload: the first one counts.
    let mut seen = HashSet::new();
    for c in &mut run.out {
        if !seen.insert(c.name.clone()) {
            c.verdict = Verdict::Refused {
                message: "the same name appears more than once in this upload".into(),
                wrong_type: false,
            };
        }
    }
    Ok(run.out)
}

/// Type a file by content and hash it.
fn check_file(name: &str, path: &Path) -> Result<Verdict, UnpackError> {
    let mut file = File::open(path)?;
    if let Err(e) = sniff::check(name, BufReader::new(&mut file)) {
        return Ok(Verdict::Refused {
            message: e.to_string(),
            wrong_type: e.is_wrong_type(),
        });
    }
    let mut hasher = blake3::Hasher::new();
    let size = std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(Verdict::Accepted {
        staged: path.to_path_buf(),
        hash: hasher.finalize().to_hex().to_string(),
        size,
    })
}

struct Run<'a> {
    staging: &'a Path,
    limits: &'a Limits,
    out: Vec<Checked>,
    files: usize,
    unzipped: u64,
}

/// How copying one entry out of a zip ended badly.
enum EntryError {
    /// The upload's unpacking budget is spent.
    Budget,
    /// The entry expands too much.
    Bomb,
    /// The entry cannot be decompressed (corrupt, wrong checksum, unsupported method).
    Corrupt(std::io::Error),
    /// Writing the staged file failed.
    Io(std::io::Error),
}

impl Run<'_> {
    fn count(&mut self) -> Result<(), UnpackError> {
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(UnpackError::TooManyFiles {
                max: self.limits.max_files,
            });
        }
        Ok(())
    }

    fn refuse(&mut self, name: String, message: impl Into<String>, wrong_type: bool) {
        self.out.push(Checked {
            name,
            verdict: Verdict::Refused {
                message: message.into(),
                wrong_type,
            },
        });
    }

    fn unzip(&mut self, index: usize, part: &Part) -> Result<(), UnpackError> {
        let file = File::open(&part.path)?;
        let mut zip = match zip::ZipArchive::new(BufReader::new(file)) {
            Ok(z) => z,
            Err(e) => {
                let found = sniff::describe(&head(&part.path)?)
                    .map(|what| format!("the content is {what}"))
                    .unwrap_or_else(|| format!("it cannot be read ({e})"));
                self.refuse(
                    part.name.clone(),
                    format!("not a zip archive: {found}"),
                    true,
                );
                return Ok(());
            }
        };
        // The folder the zip was uploaded in holds its entries.
        let folder = part.name.rsplit_once('/').map(|(f, _)| f);
        for i in 0..zip.len() {
            let mut entry = match zip.by_index(i) {
                Ok(e) => e,
                Err(e) => {
                    self.refuse(
                        format!("{} (entry {})", part.name, i + 1),
                        format!("cannot unpack: {e}"),
                        false,
                    );
                    continue;
                }
            };
            let raw = entry_name(entry.name_raw(), entry.name());
            let inner = clean_name(&raw).map_err(|why| UnpackError::UnsafeName {
                name: format!("{}: {raw}", part.name),
                why,
            })?;
            if entry.is_dir() {
                continue;
            }
            let name = match folder {
                Some(f) => format!("{f}/{inner}"),
                None => inner,
            };
            if is_junk(&name) {
                continue;
            }
            self.count()?;
            if entry.is_symlink() {
                self.refuse(name, "a symbolic link in the zip: skipped", false);
                continue;
            }
            if is_zip(&name) {
                self.refuse(
                    name,
                    "a zip inside a zip is not unpacked: unpack it and upload its files",
                    true,
                );
                continue;
            }
            if let Err(e) = sniff::format_of(&name) {
                self.refuse(name, e.to_string(), true);
                continue;
            }
            let staged = self.staging.join(format!("zip{index}-{i}"));
            let budget = self.limits.max_unzipped.saturating_sub(self.unzipped);
            let compressed = entry.compressed_size();
            match copy_entry(&mut entry, compressed, &staged, budget) {
                Ok((hash, size)) => {
                    self.unzipped += size;
                    let verdict = match check_file(&name, &staged)? {
                        Verdict::Accepted { .. } => Verdict::Accepted { staged, hash, size },
                        refused => refused,
                    };
                    self.out.push(Checked { name, verdict });
                }
                Err(EntryError::Budget) => {
                    return Err(UnpackError::TooLarge {
                        zip: part.name.clone(),
                        max_mb: self.limits.max_unzipped >> 20,
                    });
                }
                Err(EntryError::Bomb) => {
                    return Err(UnpackError::Bomb {
                        zip: part.name.clone(),
                        entry: name,
                    });
                }
                Err(EntryError::Corrupt(e)) => {
                    let _ = std::fs::remove_file(&staged);
                    self.refuse(name, format!("cannot unpack: {e}"), false);
                }
                Err(EntryError::Io(e)) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The first bytes of a file.
fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    File::open(path)?.take(64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Copy one entry out, counting what the decompressor actually produces: at most `budget`
/// bytes, and at most [`MAX_RATIO`] times its compressed size (past [`RATIO_FLOOR`]).
/// Returns the content hash and size.
fn copy_entry(
    entry: &mut impl Read,
    compressed: u64,
    staged: &Path,
    budget: u64,
) -> Result<(String, u64), EntryError> {
    let mut out = File::create(staged).map_err(EntryError::Io)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryError::Corrupt(e)),
        };
        size += n as u64;
        if size > budget {
            return Err(EntryError::Budget);
        }
        if size > RATIO_FLOOR && size > compressed.max(1).saturating_mul(MAX_RATIO) {
            return Err(EntryError::Bomb);
        }
        out.write_all(&buf[..n]).map_err(EntryError::Io)?;
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().to_hex().to_string(), size))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use zip::write::SimpleFileOptions;

    use super::*;

    #[test]
    fn names_are_normalised_or_refused() {
        assert_eq!(
            clean_name("政策/休假制度.txt").unwrap(),
            "政策/休假制度.txt"
        );
        assert_eq!(clean_name("./a//b/./c.txt").unwrap(), "a/b/c.txt");
        assert_eq!(clean_name("政策\\年假.txt").unwrap(), "政策/年假.txt");
        assert_eq!(clean_name("a/...txt").unwrap(), "a/...txt");
        for (bad, why) in [
            ("../x.txt", "`..`"),
            ("a/../../x.txt", "`..`"),
            ("a\\..\\..\\x.txt", "`..`"),
            ("/etc/passwd", "absolute"),
            ("\\\\server\\share\\x.txt", "absolute"),
            ("\\x.txt", "absolute"),
            ("C:\\Windows\\x.txt", "drive letter"),
            ("c:x.txt", "drive letter"),
            ("a\0b.txt", "NUL"),
            ("a\nb.txt", "control"),
            ("", "no file name"),
            ("./", "no file name"),
        ] {
            let e = clean_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(
            clean_name(&"长".repeat(100)).is_err(),
            "a part over 255 bytes"
        );
        assert!(
            clean_name(&["目录"; 200].join("/")).is_err(),
            "over 1024 bytes"
        );
    }

    #[test]
    fn junk_and_zip_names() {
        for junk in [
            ".DS_Store",
            "a/.DS_Store",
            "__MACOSX/a/._x.txt",
            "a/~$报告.docx",
            "Thumbs.db",
            ".git/config",
        ] {
            assert!(is_junk(junk), "{junk}");
        }
        assert!(!is_junk("政策/休假制度.txt"));
        assert!(is_zip("a/B.ZIP") && !is_zip(".zip") && !is_zip("zip"));
    }

    #[test]
    fn entry_names_in_gbk_are_read() {
        let gbk = encoding_rs::GBK.encode("政策/休假制度.txt").0;
        assert_eq!(entry_name(&gbk, "cp437"), "政策/休假制度.txt");
        assert_eq!(entry_name("年假.txt".as_bytes(), "x"), "年假.txt");
        assert_eq!(entry_name(b"\xff\xff\xff", "fallback"), "fallback");
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = SimpleFileOptions::default();
            for (name, data) in entries {
                z.start_file(*name, o).unwrap();
                z.write_all(data).unwrap();
            }
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    fn run(parts: &[(&str, Vec<u8>)], limits: Limits) -> Result<Vec<Checked>, UnpackError> {
        let dir = tempfile::tempdir().unwrap();
        let parts = parts
            .iter()
            .enumerate()
            .map(|(i, (name, data))| {
                let path = dir.path().join(format!("part-{i}"));
                std::fs::write(&path, data).unwrap();
                Part {
                    name: name.to_string(),
                    path,
                }
            })
            .collect();
        let out = check_parts(parts, dir.path(), &limits);
        // What a refused upload leaves in staging never exceeds the budget.
        let staged: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(staged < 64 << 20, "{staged} bytes staged");
        out
    }

    const LIMITS: Limits = Limits {
        max_files: 10,
        max_unzipped: 8 << 20,
    };

    fn verdicts(out: &[Checked]) -> Vec<(&str, bool)> {
        out.iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    matches!(c.verdict, Verdict::Accepted { .. }),
                )
            })
            .collect()
    }

    #[test]
    fn zips_unpack_into_their_folder_and_each_file_is_typed() {
        let zip = zip_of(&[
            ("IT/帮助.txt", "重置密码请联系服务台。".as_bytes()),
            ("IT/", b""),
            ("__MACOSX/IT/._帮助.txt", b"\0\0junk"),
            ("IT/setup.pdf", b"MZ\x90\0program"),
            ("IT/inner.zip", b"PK\x03\x04"),
            ("IT/photo.gif", b"GIF89a\x01\0\x01\0"),
        ]);
        let out = run(
            &[
                ("资料/it.zip", zip),
                ("政策/年假.txt", "年休假五天。".as_bytes().to_vec()),
                ("政策/年假.txt", "又一份".as_bytes().to_vec()),
            ],
            LIMITS,
        )
        .unwrap();
        assert_eq!(
            verdicts(&out),
            [
                ("资料/IT/帮助.txt", true),
                ("资料/IT/setup.pdf", false),
                ("资料/IT/inner.zip", false),
                ("资料/IT/photo.gif", false),
                ("政策/年假.txt", true),
                ("政策/年假.txt", false),
            ]
        );
        let Verdict::Refused {
            message,
            wrong_type,
        } = &out[1].verdict
        else {
            unreachable!()
        };
        assert!(
            message.contains("Windows program") && *wrong_type,
            "{message}"
        );
        let Verdict::Accepted { hash, size, .. } = &out[0].verdict else {
            unreachable!()
        };
        let content = "重置密码请联系服务台。".as_bytes();
        assert_eq!(*size, content.len() as u64);
        assert_eq!(*hash, blake3::hash(content).to_hex().to_string());
        let Verdict::Refused { message, .. } = &out[5].verdict else {
            unreachable!()
        };
        assert!(message.contains("more than once"), "{message}");
    }

    #[test]
    fn traversal_in_a_zip_refuses_the_upload() {
        for evil in [
            "../evil.txt",
            "/abs.txt",
            "a/../../evil.txt",
            "..\\evil.txt",
            "C:/x.txt",
        ] {
            let zip = zip_of(&[("ok.txt", b"fine"), (evil, b"evil")]);
            let e = run(&[("a.zip", zip)], LIMITS).unwrap_err();
            assert!(
                matches!(e, UnpackError::UnsafeName { .. }) && e.is_bad_upload(),
                "{evil}: {e}"
            );
        }
    }

    #[test]
    fn too_many_files_counts_zip_entries() {
        let entries: Vec<(String, Vec<u8>)> = (0..6)
            .map(|i| (format!("{i}.txt"), format!("文件{i}").into_bytes()))
            .collect();
        let refs: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let limits = Limits {
            max_files: 5,
            ..LIMITS
        };
        let e = run(&[("a.zip", zip_of(&refs))], limits).unwrap_err();
        assert!(matches!(e, UnpackError::TooManyFiles { max: 5 }), "{e}");
        assert!(run(&[("a.zip", zip_of(&refs[..5]))], limits).is_ok());
    }

    #[test]
    fn zip_bombs_are_stopped_while_streaming() {
        // High ratio: 3 MiB of zeros compress to a few KiB.
        let zeros = vec![0u8; 3 << 20];
        let e = run(&[("bomb.zip", zip_of(&[("a.txt", &zeros)]))], LIMITS).unwrap_err();
        assert!(matches!(e, UnpackError::Bomb { .. }), "{e}");
        assert!(e.to_string().contains("200:1"), "{e}");
        // Over the budget at an ordinary ratio.
        let text: String = (0..400_000).map(|i| format!("第{i}行\n")).collect();
        let limits = Limits {
            max_unzipped: 1 << 20,
            ..LIMITS
        };
        let e = run(
            &[("big.zip", zip_of(&[("big.txt", text.as_bytes())]))],
            limits,
        )
        .unwrap_err();
        assert!(matches!(e, UnpackError::TooLarge { max_mb: 1, .. }), "{e}");
        // The budget covers all zips of the upload together.
        let half: String = (0..70_000).map(|i| format!("第{i}行\n")).collect();
        let z = zip_of(&[("half.txt", half.as_bytes())]);
        let e = run(&[("a.zip", z.clone()), ("b/b.zip", z)], limits).unwrap_err();
        assert!(matches!(e, UnpackError::TooLarge { .. }), "{e}");
    }

    /// A zip whose headers claim a tiny size: the real size is what counts.
    #[test]
    fn lying_headers_are_not_trusted() {
        let zeros = vec![b'a'; 3 << 20];
        let mut zip = zip_of(&[("a.txt", &zeros)]);
        let real = (3u32 << 20).to_le_bytes();
        let mut patched = 0;
        // The uncompressed size sits in the local header and the central directory.
        for i in 0..zip.len().saturating_sub(4) {
            if zip[i..i + 4] == real {
                zip[i..i + 4].copy_from_slice(&10u32.to_le_bytes());
                patched += 1;
            }
        }
        assert_eq!(patched, 2);
        // Stopped as a bomb, or refused as corrupt; never accepted at its claimed size.
        match run(&[("liar.zip", zip)], LIMITS) {
            Err(UnpackError::Bomb { .. }) => {}
            Ok(out) => assert!(
                matches!(&out[0].verdict, Verdict::Refused { .. }),
                "{out:?}"
            ),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn symlinks_are_skipped_and_not_zips_refused() {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = SimpleFileOptions::default();
            z.add_symlink("link.txt", "/etc/passwd", o).unwrap();
            z.start_file("real.txt", o).unwrap();
            z.write_all("真实文件".as_bytes()).unwrap();
            z.finish().unwrap();
        }
        let out = run(&[("l.zip", buf.into_inner())], LIMITS).unwrap();
        assert_eq!(verdicts(&out), [("link.txt", false), ("real.txt", true)]);
        let out = run(&[("fake.zip", b"MZ\x90\0".to_vec())], LIMITS).unwrap();
        let Verdict::Refused {
            message,
            wrong_type,
        } = &out[0].verdict
        else {
            unreachable!()
        };
        assert!(message.contains("not a zip") && *wrong_type, "{message}");
    }
}
