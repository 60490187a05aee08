#!/usr/bin/env bash
# The committed part of the hostile-PDF set (tests/hostile.rs generates the rest itself):
# tests/hostile/encrypted.pdf, Ghostscript's small English fixture encrypted with qpdf
# (AES-256, user password "secret"), which PDFium and lopdf must refuse as password-protected.
# Needs qpdf (Debian: apt-get install qpdf). Deterministic apart from qpdf's random IDs/salt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
command -v qpdf >/dev/null || { echo "make-hostile-pdfs: qpdf not found (apt-get install qpdf)" >&2; exit 1; }
mkdir -p "$here/tests/hostile"
qpdf --encrypt secret owner-secret 256 -- \
    "$here/ingest/tests/fixtures/gs-en.pdf" "$here/tests/hostile/encrypted.pdf"
echo "wrote tests/hostile/encrypted.pdf"
