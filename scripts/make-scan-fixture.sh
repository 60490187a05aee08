#!/usr/bin/env bash
# Regenerate ingest/tests/fixtures/scan-zh.pdf: chromium-zh.pdf (see make-pdf-fixtures.sh)
# as a scanner would deliver it, each page a grey JPEG at 150 dpi and no text layer (an
# image-only PDF written by Pillow, JPEG quality 50). The end-to-end OCR test
# (tests/documents.rs) reads it; pdftotext finds nothing in it, chromium-zh.txt is the text.
# Needs: poppler-utils, python3 with Pillow (pip install pillow).
set -euo pipefail
FX="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/ingest/tests/fixtures"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pdftoppm -r 150 -gray -jpeg -jpegopt quality=50 "$FX/chromium-zh.pdf" "$tmp/page"
python3 - "$tmp" "$FX/scan-zh.pdf" <<'PY'
import glob, sys
from PIL import Image
pages = [Image.open(p).convert("L") for p in sorted(glob.glob(sys.argv[1] + "/page-*.jpg"))]
pages[0].save(sys.argv[2], save_all=True, append_images=pages[1:], resolution=150.0, quality=50)
PY
if [[ -n "$(pdftotext "$FX/scan-zh.pdf" - | tr -d '[:space:]')" ]]; then
    echo "make-scan-fixture: scan-zh.pdf has a text layer" >&2
    exit 1
fi
echo "wrote $FX/scan-zh.pdf ($(pdfinfo "$FX/scan-zh.pdf" | awk '/^Pages:/ {print $2}') pages, image only)"
