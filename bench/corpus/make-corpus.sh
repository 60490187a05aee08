#!/usr/bin/env bash
# Build the producer corpus for `cargo bench --bench corpus` into ${1:-target/bench-corpus}.
# Python writers (reportlab, pillow, openpyxl, python-pptx, python-docx, pinned below) go into
# a venv under the cache, never into the system python. System tools (Debian): chromium,
# fonts-noto-cjk, ghostscript, poppler-utils; libreoffice-writer-nogui when present.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$here/target/bench-corpus}"
venv="${ZHIKU_CACHE_DIR:-$HOME/.cache/zhiku}/corpus-venv"
for tool in chromium gs ps2pdf pdftotext pdftoppm; do
    command -v "$tool" >/dev/null || { echo "make-corpus: $tool not found (apt-get install chromium fonts-noto-cjk ghostscript poppler-utils)" >&2; exit 1; }
done
if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    reportlab==5.1.0 pillow==13.0.0 openpyxl==3.1.5 python-pptx==1.0.2 python-docx==1.2.0
"$venv/bin/python" "$here/bench/corpus/make_corpus.py" "$out"
