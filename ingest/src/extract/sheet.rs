//! Spreadsheets (XLSX, XLS, ODS) via calamine. Every sheet is a page (numbered in sheet
//! order) headed by the sheet name; the first non-empty row is the header, and every later
//! row is one line `row N: header: value | header: value`, so a row never loses its header
//! meaning and a chunk names the sheet (heading path) and its rows.

use std::io::Cursor;

use calamine::{Data, Reader, open_workbook_auto_from_rs};

use super::{Block, ExtractError, Extracted, Format, Page};

fn cell(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        other => other.to_string().trim().to_string(),
    }
}

pub(super) fn extract(bytes: &[u8]) -> Result<Extracted, ExtractError> {
    let mut book = open_workbook_auto_from_rs(Cursor::new(bytes))
        .map_err(|e| ExtractError::Sheet(e.to_string()))?;
    let mut pages = Vec::new();
    let mut warnings = Vec::new();
    for (i, name) in book.sheet_names().into_iter().enumerate() {
        let range = match book.worksheet_range(&name) {
            Ok(r) => r,
            Err(e) => {
                warnings.push(format!("sheet {name}: cannot read ({e}), skipped"));
                continue;
            }
        };
        let first_row = range.start().map(|(r, _)| r).unwrap_or(0);
        let mut header: Option<Vec<String>> = None;
        let mut blocks = vec![Block::heading(1, format!("Sheet {name}"))];
        let mut lines = Vec::new();
        for (k, row) in range.rows().enumerate() {
            let cells: Vec<String> = row.iter().map(cell).collect();
            if cells.iter().all(|c| c.is_empty()) {
                continue;
            }
            let number = first_row as usize + k + 1; // as the spreadsheet shows it
            let Some(h) = &header else {
                header = Some(cells);
                continue;
            };
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .map(|(j, v)| match h.get(j).filter(|h| !h.is_empty()) {
                    Some(h) => format!("{h}: {v}"),
                    None => v.clone(),
                })
                .collect();
            lines.push(format!("row {number}: {}", parts.join(" | ")));
        }
        if lines.is_empty() {
            if let Some(h) = header {
                lines.push(h.join(" | "));
            } else {
                continue;
            }
        }
        // One row per paragraph: the chunker packs whole rows and never splits one.
        blocks.extend(lines.into_iter().map(Block::row));
        pages.push(Page {
            number: i as u32 + 1,
            blocks,
        });
    }
    if pages.is_empty() {
        return Err(ExtractError::NoText("every sheet is empty".into()));
    }
    Ok(Extracted {
        format: Format::Sheet,
        title: None,
        pages,
        warnings,
        failed_pages: Vec::new(),
        ocr_pages: Vec::new(),
    })
}
