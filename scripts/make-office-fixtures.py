#!/usr/bin/env python3
"""Write the office fixtures under ingest/tests/fixtures/ with real writers.

  standards.xlsx  openpyxl: two sheets of expense standards
  training.pptx   python-pptx: title slide, bullets, a table with a vertically merged cell,
                  a text box after the table, speaker notes; one fact per slide
  travel.docx     python-docx: headings, paragraphs, a table with vertically and
                  horizontally merged cells between two paragraphs, and a 60-row price table

Needs: pip install openpyxl python-pptx python-docx (a venv is fine).
Run: python3 scripts/make-office-fixtures.py
"""
import pathlib

import docx
import openpyxl
import pptx
from pptx.util import Inches, Pt

FX = pathlib.Path(__file__).resolve().parent.parent / "ingest/tests/fixtures"


def xlsx():
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "住宿标准"
    ws.append(["城市类别", "员工级别", "每晚住宿上限（元）"])
    for row in [
        ["一线城市", "经理", 800],
        ["一线城市", "普通员工", 600],
        ["二线城市", "经理", 650],
        ["二线城市", "普通员工", 450],
    ]:
        ws.append(row)
    ws2 = wb.create_sheet("交通")
    ws2.append(["交通工具", "级别", "标准"])
    ws2.append(["飞机", "全体", "经济舱"])
    ws2.append(["高铁", "经理", "一等座"])
    wb.save(FX / "standards.xlsx")


def notes(slide, text):
    slide.notes_slide.notes_text_frame.text = text


def pptx_deck():
    prs = pptx.Presentation()
    prs.core_properties.title = "新员工培训"
    # 1: title slide
    s = prs.slides.add_slide(prs.slide_layouts[0])
    s.shapes.title.text = "2026 新员工培训"
    s.placeholders[1].text = "人力资源部 Training Deck"
    notes(s, "讲者提示：欢迎新同事，先介绍培训日程。")
    # 2: title and content, bullets
    s = prs.slides.add_slide(prs.slide_layouts[1])
    s.shapes.title.text = "考勤制度"
    body = s.placeholders[1].text_frame
    body.text = "上班时间为 9:00 至 18:00"
    p = body.add_paragraph()
    p.text = "迟到超过30分钟按旷工半天处理"
    p.level = 1
    notes(s, "强调：弹性工作制仅适用于研发部门。")
    # 3: title only, a table (first column merged over two rows), a text box after it
    s = prs.slides.add_slide(prs.slide_layouts[5])
    s.shapes.title.text = "差旅住宿标准"
    rows = [
        ["城市类别", "员工级别", "每晚住宿上限（元）"],
        ["一线城市", "经理", "800"],
        ["", "普通员工", "600"],
        ["二线城市", "经理", "650"],
        ["二线城市", "普通员工", "450"],
    ]
    t = s.shapes.add_table(5, 3, Inches(0.5), Inches(1.5), Inches(9), Inches(3)).table
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            t.cell(i, j).text = v
    t.cell(1, 0).merge(t.cell(2, 0))
    box = s.shapes.add_textbox(Inches(0.5), Inches(5), Inches(9), Inches(1))
    box.text_frame.text = "注：超标准住宿须部门负责人批准。"
    notes(s, "提醒学员：发票抬头须为公司全称。")
    # 4: English
    s = prs.slides.add_slide(prs.slide_layouts[1])
    s.shapes.title.text = "Expense FAQ"
    s.placeholders[1].text_frame.text = "Submit receipts within ten working days"
    notes(s, "Mention the finance hotline, extension 8021.")
    prs.save(FX / "training.pptx")


def docx_doc():
    d = docx.Document()
    d.core_properties.title = "差旅费管理办法"
    d.add_heading("差旅费管理办法", 1)
    d.add_paragraph("本办法适用于公司全体员工的国内出差。")
    t = d.add_table(rows=5, cols=3)
    t.style = "Table Grid"
    rows = [
        ["城市类别", "员工级别", "每晚住宿上限（元）"],
        ["一线城市", "经理", "800"],
        ["", "普通员工", "600"],
        ["二线城市", "经理", "650"],
        ["驻外人员", "全体", ""],
    ]
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            if v:
                t.cell(i, j).text = v
    t.cell(1, 0).merge(t.cell(2, 0))  # vertical: 一线城市 over two rows
    t.cell(4, 1).merge(t.cell(4, 2))  # horizontal: one cell over two columns
    t.cell(4, 1).text = "实报实销"
    d.add_paragraph("超标准部分由个人承担。")
    d.add_heading("办公用品价格表", 2)
    prices = d.add_table(rows=61, cols=3)
    prices.style = "Table Grid"
    for j, h in enumerate(["物品编号", "物品名称", "单价（元）"]):
        prices.cell(0, j).text = h
    for i in range(1, 61):
        prices.cell(i, 0).text = f"BG-{i:03d}"
        prices.cell(i, 1).text = f"办公用品{i}号"
        prices.cell(i, 2).text = str(5 * i)
    d.add_paragraph("价格每季度更新一次。")
    d.save(FX / "travel.docx")


xlsx()
pptx_deck()
docx_doc()
print("wrote", ", ".join(str(FX / n) for n in ["standards.xlsx", "training.pptx", "travel.docx"]))

# Legacy binary copies written by LibreOffice (a real .doc/.ppt writer), when it is installed.
import shutil
import subprocess
import tempfile

soffice = shutil.which("soffice")
if soffice:
    with tempfile.TemporaryDirectory() as tmp:
        for src, fmt in [("travel.docx", "doc"), ("training.pptx", "ppt")]:
            subprocess.run(
                [soffice, f"-env:UserInstallation=file://{tmp}/profile", "--headless",
                 "--convert-to", fmt, "--outdir", str(FX), str(FX / src)],
                check=True, timeout=180,
            )
            print("wrote", FX / src.replace(src.rsplit(".", 1)[1], fmt))
else:
    print("soffice not on PATH: travel.doc and training.ppt not rewritten")
