//! Image documents (PNG, JPEG, TIFF, BMP, WebP): every frame is a page (a multi-page TIFF is
//! a multi-page document) and is read through the [`Ocr`](super::ocr::Ocr) seam, with the
//! same policy as a scanned PDF page: low-confidence lines are kept and counted in a
//! warning, a page where OCR finds nothing is reported failed with its number.
//!
//! Memory stays bounded: a frame's size is read from its header before it is decoded, and a
//! frame over [`MAX_PIXELS`] is refused with a clear error (a 600-dpi A4 scan is 35
//! megapixels); decoders get allocation limits too. TIFF goes through the `tiff` crate
//! directly because `image` reads only a TIFF's first frame.

use std::io::Cursor;

use super::ocr::{OcrMode, OcrOptions};
use super::{ExtractError, Extracted, Format, panic_message};

/// The largest frame decoded, in pixels (RGB: 3 bytes each, 150 MB at the limit).
pub const MAX_PIXELS: u64 = 50_000_000;
/// Frames read from one TIFF (a bound on the loop; more are reported, not read).
const MAX_FRAMES: usize = 2000;

fn too_large(w: u32, h: u32) -> Option<ExtractError> {
    let px = w as u64 * h as u64;
    (px > MAX_PIXELS).then(|| {
        ExtractError::Image(format!(
            "{w}×{h} px ({:.0} megapixels) is over the {}-megapixel limit; scale it down \
             (300 dpi is plenty for OCR) and ingest it again",
            px as f64 / 1e6,
            MAX_PIXELS / 1_000_000
        ))
    })
}

/// Decode every frame, one at a time, handing each to `each` (so only one frame is in
/// memory). Returns the number of frames and a warning when frames were left unread.
fn frames(
    bytes: &[u8],
    each: &mut dyn FnMut(u32, image::RgbImage),
) -> Result<(usize, Option<String>), ExtractError> {
    // By content, like the other codecs: a TIFF named .jpg still reads.
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        return tiff_frames(bytes, each);
    }
    let reader = || {
        image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ExtractError::Image(e.to_string()))
    };
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| ExtractError::Image(e.to_string()))?;
    if let Some(e) = too_large(w, h) {
        return Err(e);
    }
    let mut r = reader()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4 + (64 << 20));
    r.limits(limits);
    let img = r.decode().map_err(|e| ExtractError::Image(e.to_string()))?;
    each(1, img.into_rgb8());
    Ok((1, None))
}

fn tiff_frames(
    bytes: &[u8],
    each: &mut dyn FnMut(u32, image::RgbImage),
) -> Result<(usize, Option<String>), ExtractError> {
    use tiff::ColorType as C;
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    let err = |e: tiff::TiffError| ExtractError::Image(format!("TIFF: {e}"));
    let mut limits = Limits::default();
    limits.decoding_buffer_size = (MAX_PIXELS * 4) as usize;
    let mut dec = Decoder::new(Cursor::new(bytes))
        .map_err(err)?
        .with_limits(limits);
    let mut n = 0;
    loop {
        n += 1;
        let number = n as u32;
        let (w, h) = dec.dimensions().map_err(err)?;
        if let Some(e) = too_large(w, h) {
            return Err(ExtractError::Image(format!("page {number}: {e}")));
        }
        let color = dec.colortype().map_err(err)?;
        let data = dec.read_image().map_err(err)?;
        let (w_, h_) = (w as usize, h as usize);
        let rgb: Vec<u8> = match (color, data) {
            (C::Gray(8), DecodingResult::U8(v)) => v.iter().flat_map(|&g| [g, g, g]).collect(),
            (C::Gray(16), DecodingResult::U16(v)) => v
                .iter()
                .flat_map(|&g| {
                    let g = (g >> 8) as u8;
                    [g, g, g]
                })
                .collect(),
            (C::Gray(1), DecodingResult::U8(v)) => {
                // Bilevel (fax) scans: rows padded to whole bytes, 1 = white once the decoder
                // has applied WhiteIsZero.
                let stride = w_.div_ceil(8);
                let mut out = Vec::with_capacity(w_ * h_ * 3);
                for y in 0..h_ {
                    for x in 0..w_ {
                        let bit = v
                            .get(y * stride + x / 8)
                            .map_or(1, |b| (b >> (7 - x % 8)) & 1);
                        let g = if bit == 1 { 255 } else { 0 };
                        out.extend([g, g, g]);
                    }
                }
                out
            }
            (C::GrayA(8), DecodingResult::U8(v)) => {
                v.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect()
            }
            (C::RGB(8), DecodingResult::U8(v)) => v,
            (C::RGBA(8), DecodingResult::U8(v)) => {
                v.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()
            }
            (C::RGB(16), DecodingResult::U16(v)) => v.iter().map(|&c| (c >> 8) as u8).collect(),
            (c, _) => {
                return Err(ExtractError::Image(format!(
                    "TIFF page {number}: colour type {c:?} is not supported; save it as 8-bit \
                     grey or RGB"
                )));
            }
        };
        let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| {
            ExtractError::Image(format!(
                "TIFF page {number}: pixel data shorter than {w}×{h}"
            ))
        })?;
        each(number, img);
        if !dec.more_images() {
            return Ok((n, None));
        }
        if n >= MAX_FRAMES {
            return Ok((
                n,
                Some(format!(
                    "the TIFF has more than {MAX_FRAMES} pages; pages after {MAX_FRAMES} were not read"
                )),
            ));
        }
        dec.next_image().map_err(err)?;
    }
}

pub(super) fn extract(bytes: &[u8], ocr: &OcrOptions) -> Result<Extracted, ExtractError> {
    let engine = match (&ocr.engine.0, ocr.mode) {
        (_, OcrMode::Off) => {
            return Err(ExtractError::NoOcr(
                "OCR is off ([ingest.ocr] mode = \"off\")".into(),
            ));
        }
        (None, _) => {
            return Err(ExtractError::NoOcr(
                "no OCR engine is loaded (the PP-OCRv5 models or onnxruntime are missing)".into(),
            ));
        }
        (Some(e), _) => e.clone(),
    };
    let (mut pages, mut failed, mut ocred, mut warnings) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (total, more) = frames(bytes, &mut |number, img| {
        ocr.progress.page(number, 0, true);
        let lines =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.recognize(&img)))
                .map_err(|p| format!("the OCR engine crashed: {}", panic_message(&p)))
                .and_then(|r| r.map_err(|e| e.to_string()));
        super::ocr::add_page(
            number,
            lines,
            ocr.min_confidence,
            &mut pages,
            &mut ocred,
            &mut failed,
            &mut warnings,
        );
    })?;
    warnings.extend(more);
    if pages.is_empty() {
        return Err(ExtractError::NoText(format!(
            "OCR found no text in the image ({total} page{}{})",
            if total == 1 { "" } else { "s" },
            warnings
                .iter()
                .find(|w| w.contains("crashed") || w.contains("failed"))
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        )));
    }
    Ok(Extracted {
        format: Format::Image,
        title: None,
        pages,
        warnings,
        failed_pages: failed,
        ocr_pages: ocred,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_need_an_engine_and_say_how_to_get_one() {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([255, 255, 255]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let e = extract(&png, &OcrOptions::default()).unwrap_err();
        assert!(matches!(e, ExtractError::NoOcr(_)), "{e}");
        assert!(e.to_string().contains("scripts/fetch-models.sh"), "{e}");
        let off = OcrOptions {
            mode: OcrMode::Off,
            ..OcrOptions::default()
        };
        assert!(
            extract(&png, &off)
                .unwrap_err()
                .to_string()
                .contains("mode = \"off\"")
        );
    }

    #[test]
    fn a_huge_image_is_refused_from_its_header_without_decoding() {
        // A PNG header claiming 20000×20000 px (400 megapixels): only the header is read.
        let mut png = Vec::new();
        let enc = image::codecs::png::PngEncoder::new(&mut png);
        let row = vec![255u8; 20000];
        // Write a real 20000×1 image, then patch the IHDR height: the decoder would need
        // 1.2 GB for it.
        image::ImageEncoder::write_image(enc, &row, 20000, 1, image::ExtendedColorType::L8)
            .unwrap();
        png[20..24].copy_from_slice(&20000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let mut seen = 0;
        let e = frames(&png, &mut |_, _| seen += 1).unwrap_err();
        assert_eq!(seen, 0);
        assert!(e.to_string().contains("400 megapixels"), "{e}");
        assert!(e.to_string().contains("scale it down"), "{e}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn corrupt_images_are_errors() {
        assert!(matches!(
            frames(b"\x89PNG\r\n\x1a\nbroken", &mut |_, _| {}),
            Err(ExtractError::Image(_))
        ));
        assert!(matches!(
            frames(b"II*\0broken", &mut |_, _| {}),
            Err(ExtractError::Image(_))
        ));
    }
}
