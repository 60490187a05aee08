//! Reading order: columns found by horizontal overlap, read left to right, each top to
//! bottom; lines spanning several columns (titles, full-width paragraphs) split the page
//! into bands that are read top to bottom. A band whose rows mostly hold three or more lines
//! is a table: it is read row by row, left to right, so a row's cells stay together (two
//! lines side by side stay columns: that is how two-column text is laid out, so a two-column
//! key/value table is still read column by column).

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
    // Rows: lines whose vertical extents overlap. When most rows hold three or more lines,
    // the band is a table (column detection may merge narrow table columns; rows do not).
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut by_y = band.clone();
    by_y.sort_by(|&a, &b| centre(&boxes[a]).total_cmp(&centre(&boxes[b])));
    for i in by_y {
        match rows.last_mut() {
            Some(r) if same_row(&boxes[r[0]], &boxes[i]) => r.push(i),
            _ => rows.push(vec![i]),
        }
    }
    let wide_rows = rows.iter().filter(|r| r.len() >= 3).count();
    if rows.len() >= 2 && wide_rows * 10 >= rows.len() * 6 {
        for mut r in rows {
            r.sort_by(|&a, &b| boxes[a][0].total_cmp(&boxes[b][0]));
            out.extend(r);
        }
        band.clear();
        return;
    }
    for (_, mut m) in cols {
        m.sort_by(|&a, &b| boxes[a][1].total_cmp(&boxes[b][1]));
        out.extend(m);
    }
    band.clear();
}

fn centre(b: &[f32; 4]) -> f32 {
    (b[1] + b[3]) / 2.0
}

/// Two boxes on one text row: their vertical extents overlap by more than half the lower one.
fn same_row(a: &[f32; 4], b: &[f32; 4]) -> bool {
    let overlap = a[3].min(b[3]) - a[1].max(b[1]);
    overlap > 0.5 * (a[3] - a[1]).min(b[3] - b[1])
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

    #[test]
    fn a_three_column_table_is_read_row_by_row() {
        let b = [
            [10.0, 40.0, 60.0, 50.0],   // row 1, col 1
            [10.0, 60.0, 60.0, 70.0],   // row 2, col 1
            [80.0, 41.0, 120.0, 51.0],  // row 1, col 2
            [80.0, 61.0, 120.0, 71.0],  // row 2, col 2
            [140.0, 40.0, 170.0, 50.0], // row 1, col 3
            [140.0, 59.0, 170.0, 69.0], // row 2, col 3
        ];
        assert_eq!(reading_order(&b), vec![0, 2, 4, 1, 3, 5]);
    }
}
