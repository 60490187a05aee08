#!/usr/bin/env bash
# Regenerate ingest/tests/fixtures/ PDFs from real producers, with poppler's pdftotext output
# beside each (the reference the tests compare against, so tests need no poppler).
#   chromium-zh.pdf: headless Chromium --print-to-pdf of chromium-zh.html (Noto CJK; Type 3
#   fonts with ToUnicode, what Chrome/Edge "Save as PDF" writes).
# Needs: chromium, fonts-noto-cjk, poppler-utils (Debian).
set -euo pipefail
FX="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/ingest/tests/fixtures"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --no-pdf-header-footer \
    --disable-background-networking --disable-component-update --disable-sync --no-first-run \
    --user-data-dir="$profile" --print-to-pdf="$FX/chromium-zh.pdf" "file://$FX/chromium-zh.html"
pdftotext "$FX/chromium-zh.pdf" "$FX/chromium-zh.txt"
echo "wrote $FX/chromium-zh.pdf and .txt"
