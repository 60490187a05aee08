//! What the command draws on the terminal: progress bars, streamed text, bold, Ctrl-C.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr when it is a terminal, else nothing.
pub fn progress_bar() -> Bar {
    if !std::io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden(), Default::default());
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    Bar(pb, Default::default())
}

/// The library's progress reports, drawn by indicatif; the second field is the current
/// step's message (a file name), which per-page reports extend.
pub struct Bar(ProgressBar, std::sync::Mutex<String>);

/// What the bar says while page `page` of `pages` of the current step (`file 3/40 ·
/// 报告.pdf`, from the job) is read: `file 3/40 · 报告.pdf · page 17/230 · OCR`.
pub fn page_message(step: &str, page: u32, pages: u32, ocr: bool) -> String {
    let mut m = format!("{step} · page {page}");
    if pages > 0 {
        m.push_str(&format!("/{pages}"));
    }
    if ocr {
        m.push_str(" · OCR");
    }
    m
}

impl zhiku_core::progress::Progress for Bar {
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn set_message(&self, message: &str) {
        *self.1.lock().unwrap() = message.to_string();
        self.0.set_message(message.to_string());
    }
    fn set_page(&self, page: u32, pages: u32, ocr: bool) {
        let step = self.1.lock().unwrap().clone();
        self.0.set_message(page_message(&step, page, pages, ocr));
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Ctrl-C while an answer is being generated stops that answer (the part written so far and
/// its citations are kept); a second Ctrl-C before the next question quits. Installed only
/// when a generator runs: extractive answers are instant.
pub fn interrupts() -> &'static std::sync::atomic::AtomicBool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FLAG: std::sync::OnceLock<&'static AtomicBool> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let installed = std::thread::Builder::new()
            .name("ctrl-c".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    while tokio::signal::ctrl_c().await.is_ok() {
                        if flag.swap(true, Ordering::SeqCst) {
                            std::process::exit(130);
                        }
                        eprintln!("\n(stopped; Ctrl-C again to quit)");
                    }
                });
            });
        if let Err(e) = installed {
            tracing::warn!("Ctrl-C handler not installed: {e}");
        }
        flag
    })
}

/// Streams answer pieces to `out`; `Break` once Ctrl-C was pressed.
pub fn stream_to(out: &mut impl Write, streaming: bool, piece: &str) -> std::ops::ControlFlow<()> {
    if streaming {
        if interrupts().load(std::sync::atomic::Ordering::SeqCst) {
            return std::ops::ControlFlow::Break(());
        }
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
    }
    std::ops::ControlFlow::Continue(())
}

/// `**bold**` as terminal bold when stdout is a terminal, as is otherwise.
pub fn terminal_bold(text: &str) -> String {
    if !std::io::stdout().is_terminal() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split("**").enumerate() {
        if i > 0 {
            out.push_str(if i % 2 == 1 { "\x1b[1m" } else { "\x1b[0m" });
        }
        out.push_str(part);
    }
    if text.matches("**").count() % 2 == 1 {
        out.push_str("\x1b[0m");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_messages() {
        assert_eq!(
            super::page_message("file 3/40 · 报告.pdf", 17, 230, true),
            "file 3/40 · 报告.pdf · page 17/230 · OCR"
        );
        assert_eq!(
            super::page_message("file 1/1 · scan.tif", 2, 0, false),
            "file 1/1 · scan.tif · page 2"
        );
    }
}
