#!/usr/bin/env python3
"""Regenerate the sample documents in tests/samples/ that are not plain text.

The repo ships the outputs; run this only to change them. Needs `pip install reportlab`
and a CJK TrueType font (Debian: `apt-get install fonts-wqy-zenhei`).
- PDFs: each line of scripts/sample-sources/*.txt becomes a paragraph, with a running header
  and a page-number footer on every page (the ingest pipeline drops those), the CJK font
  embedded as a subset with a ToUnicode map.
- A GBK-encoded TXT, as older Windows tools still write them.
"""
import pathlib
import textwrap

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "scripts" / "sample-sources"
OUT = ROOT / "tests" / "samples"
FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"

pdfmetrics.registerFont(TTFont("WQY", FONT, subfontIndex=0))


def wrap(line: str, width: int) -> list[str]:
    if not line:
        return [""]
    if all(ord(c) < 128 for c in line):
        return textwrap.wrap(line, width * 2) or [""]
    return [line[i : i + width] for i in range(0, len(line), width)]


def make_pdf(src: pathlib.Path, header: str, title: str) -> None:
    out = OUT / (src.stem + ".pdf")
    c = canvas.Canvas(str(out), pagesize=A4, invariant=1)
    c.setTitle(title)
    w, h = A4
    lines = []
    for raw in src.read_text(encoding="utf-8").splitlines():
        lines.extend(wrap(raw, 38))
    per_page = 26
    pages = [lines[i : i + per_page] for i in range(0, len(lines), per_page)]
    for n, chunk in enumerate(pages, 1):
        c.setFont("WQY", 9)
        c.drawString(60, h - 40, header)
        c.drawCentredString(w / 2, 30, f"第 {n} 页 共 {len(pages)} 页")
        c.setFont("WQY", 12)
        y = h - 80
        for line in chunk:
            c.drawString(60, y, line)
            y -= 24
        c.showPage()
    c.save()
    print("wrote", out)


make_pdf(SRC / "差旅费报销管理办法.txt", "华远科技有限公司 内部制度文件", "差旅费报销管理办法")
make_pdf(SRC / "information-security-policy.txt", "Huayuan Technology - Internal", "Information Security Policy")

gbk = OUT / "IT服务台常见问题.txt"
gbk.write_bytes((SRC / "IT服务台常见问题.txt").read_text(encoding="utf-8").encode("gbk"))
print("wrote", gbk, "(GBK)")
