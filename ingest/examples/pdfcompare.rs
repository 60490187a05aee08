//! Compare PDFium and the lopdf fallback on PDFs: pages/s and garble scores per page.
//! `cargo run -p zhiku-ingest --release --example pdfcompare -- FILE.pdf…`
use zhiku_ingest::extract::{extract_with, garble};
use zhiku_ingest::{PdfEngine, PdfOptions};

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("read");
        for engine in [PdfEngine::Pdfium, PdfEngine::Legacy] {
            let opts = PdfOptions {
                engine,
                ..Default::default()
            };
            let t = std::time::Instant::now();
            let r = extract_with(&bytes, &path, &opts, &Default::default());
            let dt = t.elapsed().as_secs_f64();
            match r {
                Ok(x) => {
                    let n = x.pages.len() + x.failed_pages.len();
                    println!(
                        "{path} {engine:?}: {n} pages in {dt:.3}s ({:.0} p/s), failed {:?}",
                        n as f64 / dt,
                        x.failed_pages
                    );
                    for p in &x.pages {
                        let t: String = p.blocks.iter().map(|b| b.text.as_str()).collect();
                        println!(
                            "  page {} {:?}\n  {}",
                            p.number,
                            garble::score(&t, None),
                            t.chars().take(300).collect::<String>().replace('\n', "⏎")
                        );
                    }
                    for w in &x.warnings {
                        println!("  warning: {w}");
                    }
                }
                Err(e) => println!("{path} {engine:?}: error {e} ({dt:.3}s)"),
            }
        }
    }
}
