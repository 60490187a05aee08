#!/usr/bin/env python3
"""Build the producer corpus for `cargo bench --bench corpus` (offline, real writers).

The same four source pages (two Chinese, two English; known text, one page each) are printed
by several real PDF producers, rasterised into scans, and office files are written by their
usual Python writers. Usage (bench/corpus/make-corpus.sh sets up the venv):

    python3 bench/corpus/make_corpus.py OUT_DIR

Writes OUT_DIR/manifest.json: every file with its producer, kind ("text": a text-layer PDF,
compared with pdftotext's OUT_DIR/<file>.txt; "scan": an image-only PDF; "office": facts that
must be found on a given page) and, for PDFs, the known text of each page ("truth").
Needs: chromium + fonts-noto-cjk, ghostscript (ps2pdf, gs), poppler-utils (pdftotext,
pdftoppm); LibreOffice (soffice) is used when present; PyPI: reportlab, pillow, openpyxl,
python-pptx, python-docx.
"""
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image, ImageFilter

OUT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/bench-corpus")
os.makedirs(OUT, exist_ok=True)

PAGES = [
    ("差旅费用管理办法", [
        "第一条 为规范公司员工出差管理，合理控制差旅费用，根据国家有关规定，结合公司实际情况，制定本办法。",
        "第二条 本办法适用于公司全体正式员工、试用期员工以及经批准的外派人员。",
        "第三条 住宿费用按城市类别和员工级别实行限额标准，一线城市经理每晚不超过八百元，普通员工不超过六百元。",
        "第四条 乘坐飞机一律为经济舱；乘坐高铁，经理级可乘一等座，其他员工乘二等座。",
        "第五条 出差人员应在返回后十个工作日内提交报销申请，逾期未报销的费用原则上不予受理。",
        "第六条 本办法由财务部负责解释，自二〇二六年一月一日起施行。",
    ]),
    ("员工考勤与休假制度", [
        "一、公司实行标准工时制，工作日上班时间为上午九点至下午六点，午休一小时。",
        "二、员工迟到或早退三十分钟以内的，每次扣发当月绩效奖金五十元；超过三十分钟的按旷工半天处理。",
        "三、员工入职满一年不满十年的，年休假五天；满十年不满二十年的，年休假十天。",
        "四、病假须提供二级以上医院出具的诊断证明，连续病假超过三天的须经部门负责人审批。",
        "五、婚假三天，产假按国家和地方规定执行，陪产假十五天。",
        "六、年休假原则上当年休完，确因工作需要不能安排的，可顺延至次年第一季度。",
    ]),
    ("Information Security Policy", [
        "1. Purpose. This policy sets out how employees protect company information, customer data and the systems that hold them.",
        "2. Passwords must be at least twelve characters long and must not be reused across systems. Change them at once if you suspect a leak.",
        "3. Laptops are encrypted with full-disk encryption and lock automatically after five minutes without input.",
        "4. Confidential documents may only be shared through the approved file service, never through personal email or chat apps.",
        "5. Report a lost device or a suspected incident to the security team within one hour, by calling extension 8021.",
        "6. Violations of this policy may lead to disciplinary action, up to and including termination of employment.",
    ]),
    ("Procurement Guidelines 2026", [
        "Purchases below 5,000 yuan need the approval of the department head; purchases above 50,000 yuan need three competing quotes.",
        "Suppliers are chosen on price, quality, delivery time and after-sales service, weighted 40, 30, 20 and 10 percent.",
        "Every contract above 100,000 yuan is reviewed by the legal department before it is signed.",
        "Invoices must show the company name, the tax number and the order number, or finance will return them.",
        "Office supplies are ordered through the procurement portal on the first working day of each month.",
        "Questions about these guidelines go to the procurement team at procurement@example.com.",
    ]),
]


def page_text(i):
    title, paras = PAGES[i]
    return "\n".join([title] + paras)


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, timeout=300, **kw)


def pdftotext(pdf):
    run("pdftotext", os.path.join(OUT, pdf), os.path.join(OUT, pdf + ".txt"))


manifest = []
tmp = tempfile.mkdtemp()

# --- Chromium --print-to-pdf (what Chrome/Edge "Save as PDF" writes)
body = "".join(
    f'<section><h1>{html.escape(t)}</h1>' + "".join(f"<p>{html.escape(p)}</p>" for p in ps) + "</section>"
    for t, ps in PAGES
)
doc = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><style>
body {{ font-family: "Noto Sans CJK SC", "Noto Sans", sans-serif; font-size: 11pt; line-height: 1.6; margin: 2cm; }}
section {{ page-break-after: always; }} h1 {{ font-size: 18pt; }}
</style></head><body>{body}</body></html>"""
with open(os.path.join(tmp, "pages.html"), "w", encoding="utf-8") as f:
    f.write(doc)
run("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", f"--user-data-dir={tmp}/chrome", f"--print-to-pdf={OUT}/chromium.pdf",
    f"file://{tmp}/pages.html", stderr=subprocess.DEVNULL)
pdftotext("chromium.pdf")
ALL = [page_text(i) for i in range(len(PAGES))]
manifest.append({"file": "chromium.pdf", "producer": "Chromium --print-to-pdf", "kind": "text", "truth": ALL})

# --- reportlab (CID font STSong-Light for Chinese, Helvetica for English)
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
zh = ParagraphStyle("zh", fontName="STSong-Light", fontSize=11, leading=18, wordWrap="CJK")
zh_h = ParagraphStyle("zhh", parent=zh, fontSize=18, leading=26)
en = ParagraphStyle("en", fontName="Helvetica", fontSize=11, leading=16)
en_h = ParagraphStyle("enh", fontName="Helvetica-Bold", fontSize=18, leading=26)
story = []
for i, (t, ps) in enumerate(PAGES):
    body_style, head_style = (zh, zh_h) if i < 2 else (en, en_h)
    story.append(Paragraph(html.escape(t), head_style))
    story += [Paragraph(html.escape(p), body_style) for p in ps]
    story.append(PageBreak())
SimpleDocTemplate(os.path.join(OUT, "reportlab.pdf"), pagesize=A4).build(story[:-1])
pdftotext("reportlab.pdf")
manifest.append({"file": "reportlab.pdf", "producer": "reportlab (CID STSong-Light, Helvetica)", "kind": "text", "truth": ALL})

# --- Ghostscript: pdfwrite re-distilling the Chromium PDF, and ps2pdf of hand-written PostScript
run("gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=pdfwrite", f"-sOutputFile={OUT}/gs-pdfwrite.pdf", f"{OUT}/chromium.pdf")
pdftotext("gs-pdfwrite.pdf")
manifest.append({"file": "gs-pdfwrite.pdf", "producer": "Ghostscript pdfwrite (of the Chromium PDF)", "kind": "text", "truth": ALL})


def ps_escape(s):
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def wrap(s, n=86):
    out, line = [], ""
    for w in s.split():
        if len(line) + len(w) + 1 > n:
            out.append(line)
            line = w
        else:
            line = (line + " " + w).strip()
    return out + [line]


ps = ["%!PS-Adobe-3.0", "/Times-Roman findfont 11 scalefont setfont"]
for t, paras in PAGES[2:]:
    y = 770
    ps.append(f"/Times-Bold findfont 18 scalefont setfont 72 {y} moveto ({ps_escape(t)}) show")
    ps.append("/Times-Roman findfont 11 scalefont setfont")
    y -= 30
    for p in paras:
        for line in wrap(p):
            ps.append(f"72 {y} moveto ({ps_escape(line)}) show")
            y -= 15
        y -= 6
    ps.append("showpage")
with open(os.path.join(tmp, "en.ps"), "w") as f:
    f.write("\n".join(ps) + "\n")
run("ps2pdf", os.path.join(tmp, "en.ps"), os.path.join(OUT, "ps2pdf-en.pdf"))
pdftotext("ps2pdf-en.pdf")
manifest.append({"file": "ps2pdf-en.pdf", "producer": "Ghostscript ps2pdf (Times, English pages only)", "kind": "text", "truth": ALL[2:]})

# --- LibreOffice (python-docx → soffice --convert-to pdf), when installed
import docx
from docx.enum.text import WD_BREAK

d = docx.Document()
for i, (t, paras) in enumerate(PAGES):
    d.add_heading(t, 1)
    for p in paras:
        d.add_paragraph(p)
    if i + 1 < len(PAGES):
        d.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
d.save(os.path.join(tmp, "pages.docx"))
soffice = shutil.which("soffice")
if soffice:
    run(soffice, f"-env:UserInstallation=file://{tmp}/lo", "--headless", "--convert-to", "pdf",
        "--outdir", OUT, os.path.join(tmp, "pages.docx"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.replace(os.path.join(OUT, "pages.pdf"), os.path.join(OUT, "libreoffice.pdf"))
    pdftotext("libreoffice.pdf")
    manifest.append({"file": "libreoffice.pdf", "producer": "LibreOffice Writer (docx → pdf)", "kind": "text", "truth": ALL})
else:
    print("soffice not on PATH: no LibreOffice PDF", file=sys.stderr)

# --- Scans: the Chromium pages rasterised at 150 dpi (grey), re-wrapped as image-only PDFs;
# and the same turned by 1.5° and slightly blurred.
run("pdftoppm", "-r", "150", "-gray", "-png", os.path.join(OUT, "chromium.pdf"), os.path.join(tmp, "scan"))
scans = sorted(f for f in os.listdir(tmp) if f.startswith("scan") and f.endswith(".png"))
clean = [Image.open(os.path.join(tmp, f)).convert("L") for f in scans]
rotated = [im.rotate(1.5, resample=Image.BICUBIC, fillcolor=255).filter(ImageFilter.GaussianBlur(0.8)) for im in clean]
truth = [page_text(i) for i in range(len(PAGES))]
for name, ims, producer in [
    ("scan-150dpi.pdf", clean, "pdftoppm -r 150, image-only PDF (Pillow)"),
    ("scan-rotated-blurred.pdf", rotated, "pdftoppm -r 150, turned 1.5° + Gaussian blur 0.8, image-only PDF"),
]:
    ims[0].save(os.path.join(OUT, name), save_all=True, append_images=ims[1:], resolution=150)
    manifest.append({"file": name, "producer": producer, "kind": "scan", "truth": truth})

# --- Office files from their usual writers, with facts and the page they must be found on
import openpyxl
import pptx

wb = openpyxl.Workbook()
ws = wb.active
ws.title = "价格表"
ws.append(["物品编号", "物品名称", "单价（元）", "供应商"])
for i in range(1, 201):
    ws.append([f"BG-{i:03d}", f"办公用品{i}号", 5 * i, f"供应商{i % 7}"])
wb.save(os.path.join(OUT, "prices.xlsx"))
manifest.append({"file": "prices.xlsx", "producer": "openpyxl", "kind": "office", "facts": [
    [f"物品编号: BG-{i:03d} | 物品名称: 办公用品{i}号 | 单价（元）: {5 * i}", 1] for i in (1, 77, 200)]})

prs = pptx.Presentation()
for n in range(1, 11):
    s = prs.slides.add_slide(prs.slide_layouts[1])
    s.shapes.title.text = f"培训第{n}讲"
    s.placeholders[1].text_frame.text = f"第{n}讲要点：流程编号 P-{n:02d}"
    s.notes_slide.notes_text_frame.text = f"讲者备注 {n}: remind the class about form F-{n:02d}"
prs.save(os.path.join(OUT, "deck.pptx"))
manifest.append({"file": "deck.pptx", "producer": "python-pptx", "kind": "office", "facts": [
    [f"流程编号 P-{n:02d}", n] for n in (1, 5, 10)] + [[f"form F-{n:02d}", n] for n in (2, 9)]})

d = docx.Document()
d.add_heading("报销标准", 1)
t = d.add_table(rows=101, cols=3)
for j, h in enumerate(["城市编号", "城市类别", "住宿上限（元）"]):
    t.cell(0, j).text = h
for i in range(1, 101):
    t.cell(i, 0).text = f"C-{i:03d}"
    t.cell(i, 1).text = "一线城市" if i % 3 == 0 else "二线城市"
    t.cell(i, 2).text = str(400 + i)
d.save(os.path.join(OUT, "table.docx"))
manifest.append({"file": "table.docx", "producer": "python-docx", "kind": "office", "facts": [
    [f"城市编号: C-{i:03d} | 城市类别: {'一线城市' if i % 3 == 0 else '二线城市'} | 住宿上限（元）: {400 + i}", 1] for i in (1, 50, 99)]})

with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump({"pages": len(PAGES), "files": manifest}, f, ensure_ascii=False, indent=1)
shutil.rmtree(tmp)
print(f"wrote {len(manifest)} files and manifest.json to {OUT}")
