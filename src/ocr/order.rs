//! Reading order: columns found by horizontal overlap, read left to right, each top to
//! bottom; lines spanning several columns (titles, full-width paragraphs) split the page
//! into bands that are read top to bottom.

/// Indices of `boxes` ([x0, y0, x1, y1]) in reading order.
pub fn reading_order(boxes: &[[f32; 4]]) -> Vec<usize> {
    if boxes.is_empty() {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..boxes.len()).collect();
    idx.sort_by(|&a, &b| {
        boxes[a][1]
            .total_cmp(&boxes[b][1])
            .then(boxes[a][0].total_cmp(&boxes[b][0]))
    });
    // A line that horizontally overlaps two lines lying side by side (one ends before the
    // other starts) spans columns: a title or a full-width paragraph. It closes the band.
    let overlaps = |a: &[f32; 4], b: &[f32; 4]| a[0] < b[2] && b[0] < a[2];
    let spanning: Vec<bool> = boxes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (mut min_right, mut max_left) = (f32::MAX, f32::MIN);
            for (j, o) in boxes.iter().enumerate() {
                if j != i && overlaps(b, o) {
                    min_right = min_right.min(o[2]);
                    max_left = max_left.max(o[0]);
                }
            }
            min_right < max_left
        })
        .collect();
    let wide = |i: usize| spanning[i];
    let mut out = Vec::with_capacity(boxes.len());
    let mut band: Vec<usize> = Vec::new();
    for &i in &idx {
        if wide(i) {
            flush_band(boxes, &mut band, &mut out);
            out.push(i);
        } else {
            band.push(i);
        }
    }
    flush_band(boxes, &mut band, &mut out);
    out
}

/// Group a band's lines into columns (union of overlapping x-ranges), emit columns left to
/// right, each top to bottom.
fn flush_band(boxes: &[[f32; 4]], band: &mut Vec<usize>, out: &mut Vec<usize>) {
    if band.is_empty() {
        return;
    }
    let mut by_x = band.clone();
    by_x.sort_by(|&a, &b| boxes[a][0].total_cmp(&boxes[b][0]));
    let mut cols: Vec<(f32, Vec<usize>)> = Vec::new(); // (right edge, members)
    for i in by_x {
        let b = boxes[i];
        match cols.last_mut() {
            // Starts left of the column's right edge: same column.
            Some((r, m)) if b[0] < *r - 2.0 => {
                *r = r.max(b[2]);
                m.push(i);
            }
            _ => cols.push((b[2], vec![i])),
        }
    }
    for (_, mut m) in cols {
        m.sort_by(|&a, &b| boxes[a][1].total_cmp(&boxes[b][1]));
        out.extend(m);
    }
    band.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_columns_under_a_title() {
        let b = [
            [10.0, 60.0, 90.0, 70.0],    // left col, line 2
            [110.0, 40.0, 190.0, 50.0],  // right col, line 1
            [10.0, 40.0, 95.0, 50.0],    // left col, line 1
            [10.0, 5.0, 190.0, 20.0],    // title
            [110.0, 60.0, 180.0, 70.0],  // right col, line 2
            [10.0, 100.0, 190.0, 110.0], // footer
        ];
        assert_eq!(reading_order(&b), vec![3, 2, 0, 1, 4, 5]);
    }
}
