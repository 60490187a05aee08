//! Angle classification and CTC recognition inputs/outputs: PaddleOCR's
//! `resize_norm_img` for the classifier (3×48×192) and the recogniser (height 48, width by
//! the batch's widest aspect ratio, at least 320), and `CTCLabelDecode` (greedy, blank 0,
//! repeated labels merged, the dictionary plus a trailing space as `use_space_char`).

use image::RgbImage;

use crate::det::resize_into_chw;

pub const CLS_H: usize = 48;
pub const CLS_W: usize = 192;
pub const REC_H: usize = 48;
pub const REC_W: usize = 320;

fn norm(_c: usize, v: f32) -> f32 {
    (v / 255.0 - 0.5) / 0.5
}

/// Resized width for a crop into a slot `max_w` wide at height `h`.
fn fit_width(img: &RgbImage, h: usize, max_w: usize) -> usize {
    let ratio = img.width() as f32 / img.height() as f32;
    let w = (h as f32 * ratio).ceil() as usize;
    w.clamp(1, max_w)
}

/// Classifier batch tensor (N×3×48×192) for the crops.
pub fn cls_batch(crops: &[&RgbImage]) -> Vec<f32> {
    let plane = 3 * CLS_H * CLS_W;
    let mut t = vec![0f32; crops.len() * plane];
    for (i, c) in crops.iter().enumerate() {
        let w = fit_width(c, CLS_H, CLS_W);
        resize_into_chw(
            c,
            w,
            CLS_H,
            CLS_W,
            0.0,
            norm,
            &mut t[i * plane..(i + 1) * plane],
        );
    }
    t
}

/// Recogniser batch tensor (N×3×48×W) and W.
pub fn rec_batch(crops: &[&RgbImage]) -> (Vec<f32>, usize) {
    let mut max_ratio = REC_W as f32 / REC_H as f32;
    for c in crops {
        max_ratio = max_ratio.max(c.width() as f32 / c.height() as f32);
    }
    let width = (REC_H as f32 * max_ratio) as usize;
    let plane = 3 * REC_H * width;
    let mut t = vec![0f32; crops.len() * plane];
    for (i, c) in crops.iter().enumerate() {
        let w = fit_width(c, REC_H, width);
        resize_into_chw(
            c,
            w,
            REC_H,
            width,
            0.0,
            norm,
            &mut t[i * plane..(i + 1) * plane],
        );
    }
    (t, width)
}

/// The first index of the largest value, and the value. PP-OCRv5 has 18,385 classes per
/// time step and a line has up to a few hundred steps: lane-wise maxima over 16 columns
/// (which the compiler vectorises), then a search for the first equal value, instead of a
/// scalar compare-and-branch per class.
fn argmax(row: &[f32]) -> (usize, f32) {
    let mut lanes = [f32::MIN; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let mut max = lanes.iter().copied().fold(f32::MIN, f32::max);
    for &v in chunks.remainder() {
        max = max.max(v);
    }
    let idx = row.iter().position(|&v| v == max).unwrap_or(0);
    (idx, max)
}

/// Greedy CTC decoding of one sequence of `steps` × `classes` probabilities: the text and
/// the mean probability of the kept characters (0 for an empty result).
pub fn ctc_decode(
    probs: &[f32],
    steps: usize,
    classes: usize,
    charset: &[String],
) -> (String, f32) {
    let mut text = String::new();
    let (mut sum, mut n) = (0f32, 0usize);
    let mut prev = usize::MAX;
    for t in 0..steps {
        let row = &probs[t * classes..(t + 1) * classes];
        let (idx, p) = argmax(row);
        if idx != 0
            && idx != prev
            && let Some(ch) = charset.get(idx)
        {
            text.push_str(ch);
            sum += p;
            n += 1;
        }
        prev = idx;
    }
    (text, if n == 0 { 0.0 } else { sum / n as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_finds_the_first_largest_anywhere() {
        let mut row = vec![0.1f32; 18_385];
        assert_eq!(argmax(&row), (0, 0.1));
        row[18_384] = 0.5; // in the remainder after the 16-wide chunks
        assert_eq!(argmax(&row), (18_384, 0.5));
        row[17] = 0.5; // ties: the first wins, as a scan would
        assert_eq!(argmax(&row), (17, 0.5));
        row[3] = f32::NAN;
        assert_eq!(argmax(&row), (17, 0.5));
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let charset: Vec<String> = ["blank", "a", "b", " "]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // steps: a a blank a b b space
        let seq = [1, 1, 0, 1, 2, 2, 3];
        let mut probs = vec![0f32; seq.len() * 4];
        for (t, &k) in seq.iter().enumerate() {
            probs[t * 4 + k] = 0.9;
        }
        let (s, c) = ctc_decode(&probs, seq.len(), 4, &charset);
        assert_eq!(s, "aab ");
        assert!((c - 0.9).abs() < 1e-6);
    }
}
