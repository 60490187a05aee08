//! Geometry for DB post-processing and cropping: connected components (the outer contours
//! OpenCV's `findContours` would give), convex hull, minimum-area rectangle (`minAreaRect`),
//! PaddleOCR's point orderings, and a 4-point perspective warp (`warpPerspective`).

use image::RgbImage;

pub type Pt = [f32; 2];

/// 8-connected components of `bitmap` (row-major, `w`×`h`), each as its boundary points
/// (leftmost and rightmost pixel of every row it touches), at most `max` components, in
/// raster order of their first pixel (as OpenCV's contour scan).
pub fn components(bitmap: &[bool], w: usize, h: usize, max: usize) -> Vec<Vec<Pt>> {
    let mut label = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !bitmap[start] || label[start] {
            continue;
        }
        if out.len() >= max {
            break;
        }
        // Per-row extremes of this component.
        let mut rows: Vec<(usize, usize, usize)> = Vec::new(); // (y, min x, max x)
        let mut row_ext = std::collections::HashMap::<usize, (usize, usize)>::new();
        label[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let e = row_ext.entry(y).or_insert((x, x));
            e.0 = e.0.min(x);
            e.1 = e.1.max(x);
            let y0 = y.saturating_sub(1);
            let y1 = (y + 1).min(h - 1);
            let x0 = x.saturating_sub(1);
            let x1 = (x + 1).min(w - 1);
            for ny in y0..=y1 {
                for nx in x0..=x1 {
                    let j = ny * w + nx;
                    if bitmap[j] && !label[j] {
                        label[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        rows.extend(row_ext.into_iter().map(|(y, (a, b))| (y, a, b)));
        rows.sort_unstable();
        let mut pts = Vec::with_capacity(rows.len() * 2);
        for (y, a, b) in rows {
            pts.push([a as f32, y as f32]);
            if b != a {
                pts.push([b as f32, y as f32]);
            }
        }
        out.push(pts);
    }
    out
}

fn cross(o: Pt, a: Pt, b: Pt) -> f32 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, no repeated end point.
pub fn convex_hull(points: &[Pt]) -> Vec<Pt> {
    let mut p: Vec<Pt> = points.to_vec();
    p.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let mut hull: Vec<Pt> = Vec::with_capacity(p.len() * 2);
    for &pt in &p {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], pt) <= 0.0 {
            hull.pop();
        }
        hull.push(pt);
    }
    let lower = hull.len() + 1;
    for &pt in p.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], pt) <= 0.0 {
            hull.pop();
        }
        hull.push(pt);
    }
    hull.pop();
    hull
}

/// A rotated rectangle: its four corners and side lengths.
#[derive(Debug, Clone, Copy)]
pub struct RotRect {
    pub corners: [Pt; 4],
    pub w: f32,
    pub h: f32,
}

/// Minimum-area enclosing rectangle of `points` (rotating calipers over the hull's edges).
pub fn min_area_rect(points: &[Pt]) -> RotRect {
    let hull = convex_hull(points);
    if hull.is_empty() {
        return RotRect {
            corners: [[0.0; 2]; 4],
            w: 0.0,
            h: 0.0,
        };
    }
    if hull.len() < 3 {
        let a = hull[0];
        let b = *hull.last().unwrap_or(&a);
        let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
        return RotRect {
            corners: [a, b, b, a],
            w: len,
            h: 0.0,
        };
    }
    let mut best: Option<(f32, RotRect)> = None;
    for i in 0..hull.len() {
        let a = hull[i];
        let b = hull[(i + 1) % hull.len()];
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            continue;
        }
        let u = [dx / len, dy / len];
        let v = [-u[1], u[0]];
        let (mut umin, mut umax, mut vmin, mut vmax) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in &hull {
            let pu = p[0] * u[0] + p[1] * u[1];
            let pv = p[0] * v[0] + p[1] * v[1];
            umin = umin.min(pu);
            umax = umax.max(pu);
            vmin = vmin.min(pv);
            vmax = vmax.max(pv);
        }
        let area = (umax - umin) * (vmax - vmin);
        if best.as_ref().is_none_or(|(a, _)| area < *a) {
            let at = |su: f32, sv: f32| [su * u[0] + sv * v[0], su * u[1] + sv * v[1]];
            best = Some((
                area,
                RotRect {
                    corners: [
                        at(umin, vmin),
                        at(umax, vmin),
                        at(umax, vmax),
                        at(umin, vmax),
                    ],
                    w: umax - umin,
                    h: vmax - vmin,
                },
            ));
        }
    }
    best.map(|(_, r)| r).unwrap_or(RotRect {
        corners: [hull[0]; 4],
        w: 0.0,
        h: 0.0,
    })
}

/// PaddleOCR's `get_mini_boxes`: the rectangle's corners ordered top-left, top-right,
/// bottom-right, bottom-left (by x, then y within each side), and its short side.
pub fn mini_box(rect: &RotRect) -> ([Pt; 4], f32) {
    let mut p = rect.corners;
    p.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (i1, i4) = if p[1][1] > p[0][1] { (0, 1) } else { (1, 0) };
    let (i2, i3) = if p[3][1] > p[2][1] { (2, 3) } else { (3, 2) };
    ([p[i1], p[i2], p[i3], p[i4]], rect.w.min(rect.h))
}

/// Grow a rotated rectangle by `d` on every side (what a round-joined polygon offset of a
/// rectangle, followed by `minAreaRect`, gives: PaddleOCR's `unclip` on a box).
pub fn grow(rect: &RotRect, d: f32) -> RotRect {
    let c = rect.corners;
    let cx = (c[0][0] + c[1][0] + c[2][0] + c[3][0]) / 4.0;
    let cy = (c[0][1] + c[1][1] + c[2][1] + c[3][1]) / 4.0;
    let unit = |a: Pt, b: Pt| {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let l = (dx * dx + dy * dy).sqrt().max(1e-6);
        [dx / l, dy / l]
    };
    let u = unit(c[0], c[1]);
    let v = unit(c[0], c[3]);
    let (hw, hh) = (rect.w / 2.0 + d, rect.h / 2.0 + d);
    let at = |su: f32, sv: f32| [cx + su * u[0] + sv * v[0], cy + su * u[1] + sv * v[1]];
    RotRect {
        corners: [at(-hw, -hh), at(hw, -hh), at(hw, hh), at(-hw, hh)],
        w: rect.w + 2.0 * d,
        h: rect.h + 2.0 * d,
    }
}

/// Is (x, y) inside (or on) the convex quad `q`?
pub fn in_quad(q: &[Pt; 4], x: f32, y: f32) -> bool {
    let mut sign = 0i8;
    for i in 0..4 {
        let c = cross(q[i], q[(i + 1) % 4], [x, y]);
        let s = if c > 1e-6 {
            1
        } else if c < -1e-6 {
            -1
        } else {
            0
        };
        if s != 0 {
            if sign != 0 && s != sign {
                return false;
            }
            sign = s;
        }
    }
    true
}

/// PaddleOCR's `order_points_clockwise`: top-left, top-right, bottom-right, bottom-left.
pub fn order_clockwise(pts: &[Pt; 4]) -> [Pt; 4] {
    let mut p = *pts;
    p.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let mut left = [p[0], p[1]];
    let mut right = [p[2], p[3]];
    left.sort_by(|a, b| a[1].total_cmp(&b[1]));
    right.sort_by(|a, b| a[1].total_cmp(&b[1]));
    [left[0], right[0], right[1], left[1]]
}

pub fn dist(a: Pt, b: Pt) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

#[allow(clippy::needless_range_loop)] // Gauss-Jordan on an 8×9 matrix reads clearer indexed.
/// Homography mapping `src[i]` onto `dst[i]` (OpenCV's `getPerspectiveTransform`).
fn homography(src: &[Pt; 4], dst: &[Pt; 4]) -> Option<[f64; 9]> {
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let (x, y) = (src[i][0] as f64, src[i][1] as f64);
        let (u, v) = (dst[i][0] as f64, dst[i][1] as f64);
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    for col in 0..8 {
        let piv = (col..8).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[piv][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, piv);
        for r in 0..8 {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in col..9 {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
    }
    let mut h = [0f64; 9];
    for i in 0..8 {
        h[i] = a[i][8] / a[i][i];
    }
    h[8] = 1.0;
    Some(h)
}

/// Bilinear sample with replicated borders.
#[inline]
pub fn sample(img: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x0f = x.floor();
    let y0f = y.floor();
    let (fx, fy) = (x - x0f, y - y0f);
    let cl = |v: i64, m: i64| v.clamp(0, m - 1) as u32;
    let (x0, y0) = (x0f as i64, y0f as i64);
    let (xa, xb, ya, yb) = (cl(x0, w), cl(x0 + 1, w), cl(y0, h), cl(y0 + 1, h));
    let p00 = img.get_pixel(xa, ya).0;
    let p10 = img.get_pixel(xb, ya).0;
    let p01 = img.get_pixel(xa, yb).0;
    let p11 = img.get_pixel(xb, yb).0;
    let mut out = [0f32; 3];
    for c in 0..3 {
        let top = p00[c] as f32 * (1.0 - fx) + p10[c] as f32 * fx;
        let bot = p01[c] as f32 * (1.0 - fx) + p11[c] as f32 * fx;
        out[c] = top * (1.0 - fy) + bot * fy;
    }
    out
}

/// PaddleOCR's `get_rotate_crop_image`: warp the quad `q` (TL, TR, BR, BL) to an upright
/// image; a crop at least 1.5 times taller than wide is turned 90° counter-clockwise.
pub fn crop_quad(img: &RgbImage, q: &[Pt; 4]) -> Option<RgbImage> {
    let cw = dist(q[0], q[1]).max(dist(q[2], q[3])) as u32;
    let ch = dist(q[0], q[3]).max(dist(q[1], q[2])) as u32;
    if cw == 0 || ch == 0 {
        return None;
    }
    let (wf, hf) = (cw as f32, ch as f32);
    let dst = [[0.0, 0.0], [wf, 0.0], [wf, hf], [0.0, hf]];
    // Inverse map: destination pixel -> source point.
    let hm = homography(&dst, q)?;
    let mut out = RgbImage::new(cw, ch);
    for y in 0..ch {
        for x in 0..cw {
            let (xf, yf) = (x as f64, y as f64);
            let d = hm[6] * xf + hm[7] * yf + hm[8];
            let sx = (hm[0] * xf + hm[1] * yf + hm[2]) / d;
            let sy = (hm[3] * xf + hm[4] * yf + hm[5]) / d;
            let p = sample(img, sx as f32, sy as f32);
            out.put_pixel(
                x,
                y,
                image::Rgb(p.map(|v| v.round().clamp(0.0, 255.0) as u8)),
            );
        }
    }
    if ch as f32 / cw as f32 >= 1.5 {
        out = image::imageops::rotate270(&out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_area_rect_of_a_tilted_bar() {
        // A 40x6 bar rotated by ~10 degrees.
        let (c, s) = (10f32.to_radians().cos(), 10f32.to_radians().sin());
        let mut pts = Vec::new();
        for i in 0..=40 {
            for j in 0..=6 {
                let (x, y) = (i as f32, j as f32);
                pts.push([x * c - y * s, x * s + y * c]);
            }
        }
        let r = min_area_rect(&pts);
        let (long, short) = (r.w.max(r.h), r.w.min(r.h));
        assert!(
            (long - 40.0).abs() < 0.01 && (short - 6.0).abs() < 0.01,
            "{r:?}"
        );
        let g = grow(&r, 2.0);
        assert!((g.w.max(g.h) - 44.0).abs() < 0.01);
    }

    #[test]
    fn components_and_quad_membership() {
        let (w, h) = (10, 5);
        let mut bm = vec![false; w * h];
        for y in 1..3 {
            for x in 1..4 {
                bm[y * w + x] = true;
            }
        }
        bm[4 * w + 8] = true;
        let cs = components(&bm, w, h, 10);
        assert_eq!(cs.len(), 2);
        let q = [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]];
        assert!(in_quad(&q, 2.0, 2.0) && in_quad(&q, 4.0, 4.0) && !in_quad(&q, 5.0, 1.0));
    }
}
