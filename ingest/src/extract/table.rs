//! Tables from DOCX and PPTX, rendered like spreadsheet rows: every body row becomes one line
//! `header: value | header: value`, so a row carries its header meaning into whatever chunk
//! it lands in (the chunker keeps a row whole, see [`super::Block::row`]).
//!
//! Merged cells: a cell spanning several columns is rendered once, under the headers of all
//! the columns it spans (`经理/普通员工: 实报实销`); a vertically merged cell's value is
//! repeated in every row it covers (each row must stand alone in its chunk).

/// One cell as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    pub text: String,
    /// Grid columns covered (DOCX `gridSpan`, PPTX `gridSpan`), at least 1.
    pub span: usize,
    /// The continuation of a vertical merge (DOCX `vMerge` without `restart`, PPTX
    /// `vMerge="1"`): the value is the one above.
    pub merged_from_above: bool,
}

impl Cell {
    pub fn new(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            span: 1,
            merged_from_above: false,
        }
    }
}

/// Grid position → (cell id, text). Cells with the same id are one merged cell.
type Grid = Vec<Vec<(usize, String)>>;

fn grid(rows: &[Vec<Cell>]) -> Grid {
    let mut out: Grid = Vec::with_capacity(rows.len());
    let mut next_id = 0;
    for row in rows {
        let mut g: Vec<(usize, String)> = Vec::new();
        for cell in row {
            let col = g.len();
            let above = out.last().and_then(|r| r.get(col)).cloned();
            let entry = match above {
                Some(a) if cell.merged_from_above => a,
                _ => {
                    next_id += 1;
                    (next_id, one_line(&cell.text))
                }
            };
            for _ in 0..cell.span.clamp(1, 64) {
                g.push(entry.clone());
            }
        }
        out.push(g);
    }
    out
}

/// Cell text on one line: a cell's paragraphs and line breaks joined by spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Render a table: the first row is the header; returns one line per body row (empty rows
/// dropped). A table without body rows, or with one column or an empty header (a layout
/// table), renders each row's cells joined by ` | `.
pub(crate) fn render(rows: &[Vec<Cell>]) -> Vec<String> {
    let g = grid(rows);
    let plain = |r: &Vec<(usize, String)>| {
        let mut parts: Vec<&str> = Vec::new();
        let mut last = None;
        for (id, t) in r {
            if Some(*id) != last && !t.is_empty() {
                parts.push(t);
            }
            last = Some(*id);
        }
        parts.join(" | ")
    };
    let width = g.iter().map(Vec::len).max().unwrap_or(0);
    let header_empty = g
        .first()
        .is_none_or(|h| h.iter().all(|(_, t)| t.is_empty()));
    if g.len() < 2 || width < 2 || header_empty {
        return g.iter().map(plain).filter(|l| !l.is_empty()).collect();
    }
    let header = &g[0];
    let mut out = Vec::new();
    for row in &g[1..] {
        let mut parts = Vec::new();
        let mut col = 0;
        while col < row.len() {
            let (id, text) = &row[col];
            let mut end = col + 1;
            while end < row.len() && row[end].0 == *id {
                end += 1;
            }
            if !text.is_empty() {
                let mut names: Vec<&str> = Vec::new();
                let mut last = None;
                for (hid, h) in &header[col.min(header.len())..end.min(header.len())] {
                    if Some(*hid) != last && !h.is_empty() {
                        names.push(h);
                    }
                    last = Some(*hid);
                }
                if names.is_empty() {
                    parts.push(text.clone());
                } else {
                    parts.push(format!("{}: {text}", names.join("/")));
                }
            }
            col = end;
        }
        // A row that is one cell across the whole table is a section label, not a record.
        if row.iter().all(|(id, _)| *id == row[0].0) {
            if !row[0].1.is_empty() {
                out.push(row[0].1.clone());
            }
            continue;
        }
        if !parts.is_empty() {
            out.push(parts.join(" | "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<Cell> {
        cells.iter().map(|c| Cell::new(*c)).collect()
    }

    #[test]
    fn rows_carry_their_header_and_merges_are_resolved() {
        let mut rows = vec![
            row(&["城市类别", "员工级别", "每晚住宿上限（元）"]),
            row(&["一线城市", "经理", "800"]),
            row(&["", "普通员工", "600"]),
            row(&["驻外人员", "实报实销"]),
            vec![Cell {
                span: 3,
                ..Cell::new("附：港澳台另行规定")
            }],
        ];
        rows[2][0].merged_from_above = true;
        rows[3][1].span = 2;
        assert_eq!(
            render(&rows),
            vec![
                "城市类别: 一线城市 | 员工级别: 经理 | 每晚住宿上限（元）: 800",
                "城市类别: 一线城市 | 员工级别: 普通员工 | 每晚住宿上限（元）: 600",
                "城市类别: 驻外人员 | 员工级别/每晚住宿上限（元）: 实报实销",
                "附：港澳台另行规定",
            ]
        );
    }

    #[test]
    fn layout_tables_render_plainly() {
        assert_eq!(
            render(&[row(&["只有一列"]), row(&["第二行\n两段"])]),
            vec!["只有一列", "第二行 两段"]
        );
        assert_eq!(render(&[row(&["a", "b"])]), vec!["a | b"]);
        assert_eq!(render(&[row(&["", ""]), row(&["x", "y"])]), vec!["x | y"]);
    }
}
