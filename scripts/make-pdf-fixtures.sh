#!/usr/bin/env bash
# Regenerate ingest/tests/fixtures/ PDFs from real producers, with poppler's pdftotext output
# beside each (the reference the tests compare against, so tests need no poppler).
#   chromium-zh.pdf: headless Chromium --print-to-pdf of chromium-zh.html (Noto CJK; Type 3
#   fonts with ToUnicode, what Chrome/Edge "Save as PDF" writes).
#   gs-en.pdf: Ghostscript ps2pdf of gs-en.ps (Type 1 Times, a small table).
#   mixed-zh.pdf: Chromium, page 1 text, page 2 only an image (scan-page.jpg: page 1 of
#   chromium-zh.pdf rasterised by pdftoppm at 72 dpi), i.e. a scanned page.
# Needs: chromium, fonts-noto-cjk, poppler-utils, ghostscript (Debian).
set -euo pipefail
FX="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/ingest/tests/fixtures"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
print() { # HTML PDF
    chromium --headless --no-sandbox --disable-gpu --no-pdf-header-footer \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --user-data-dir="$profile" --print-to-pdf="$2" "file://$1"
}
print "$FX/chromium-zh.html" "$FX/chromium-zh.pdf"
pdftotext "$FX/chromium-zh.pdf" "$FX/chromium-zh.txt"
ps2pdf "$FX/gs-en.ps" "$FX/gs-en.pdf"
pdftotext "$FX/gs-en.pdf" "$FX/gs-en.txt"
pdftoppm -r 72 -gray -jpeg -f 1 -l 1 "$FX/chromium-zh.pdf" "$profile/scan"
mv "$profile/scan-1.jpg" "$FX/scan-page.jpg"
print "$FX/mixed-zh.html" "$FX/mixed-zh.pdf"
echo "wrote $FX/{chromium-zh,gs-en,mixed-zh}.pdf with pdftotext references"
