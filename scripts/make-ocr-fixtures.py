#!/usr/bin/env python3
"""Render the OCR test fixtures in src/ocr/tests/fixtures/ (PNG + ground truth .txt).

Real text rendering with Pillow and Noto Sans CJK SC (Debian fonts-noto-cjk):
  clean.png           a 150-dpi A4-width page crop (1240 px), 10.5 pt text, Chinese + English
  rotated_blurred.png the same page turned by 1.5 degrees and slightly blurred (a scan)
  flipped.png         one line turned by 180 degrees (read through the angle classifier)
  two_column.png      a title over two columns of text (reading order)
  jpeg75.jpg          a 150-dpi page of Chinese lines full of simple characters (一 工 十 人 …)
                      saved as JPEG at Pillow's default quality 75, as a scanner or Pillow
                      writes it: the compression noise around thin strokes made PP-OCRv5 drop
                      those characters until each crop's paper was made white (levels.rs)
and in ingest/tests/fixtures/:
  scan-2pages.tif     a two-page TIFF (a scanned document): page 1 8-bit grey, page 2 bilevel
                      (1-bit, like a fax or office scanner), deflate-compressed; the text of
                      each page in scan-2pages.txt, pages separated by a form feed
Usage: python3 scripts/make-ocr-fixtures.py   (needs: pip install pillow)
"""
import os

from PIL import Image, ImageDraw, ImageFilter, ImageFont

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "ocr", "tests", "fixtures")
FONT = os.environ.get("CJK_FONT", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
DPI = 150
PT = 10.5
PX = round(PT * DPI / 72)  # 22 px

PAGE = [
    "第三章 差旅费报销标准",
    "员工因公出差，应在出差结束后十个工作日内提交报销申请。",
    "一线城市经理级别每晚住宿上限为650元，普通员工为450元。",
    "Employees submit the expense report within ten working days.",
    "机票须通过公司差旅平台预订，经济舱为默认舱位。",
    "Receipts must show the company name and tax number.",
    "如遇特殊情况，须经部门负责人书面批准后方可超标准报销。",
    "Contact the finance team at extension 8021 for questions.",
]
LEFT = ["年假按工龄计算：", "满一年不满十年的，", "年休假五天；", "满十年不满二十年的，", "年休假十天。"]
JPEG_PAGE = [
    "一、公司实行标准工时制，工作日上班时间为上午九点至下午六点，午休一小时。",
    "二、员工迟到或早退三十分钟以内的，每次扣发当月绩效奖金五十元。",
    "三、员工入职满一年不满十年的，年休假五天；满十年不满二十年的，年休假十天。",
    "四、病假须提供二级以上医院出具的诊断证明，连续病假超过三天的须经部门负责人审批。",
]
RIGHT = ["Annual leave depends", "on years of service:", "five days after one", "year, ten days after", "ten years."]


def font(size=PX):
    return ImageFont.truetype(FONT, size, index=2)  # index 2: Noto Sans CJK SC


def page(lines, width=1240, margin=90, lead=1.9):
    f = font()
    h = int(margin * 2 + len(lines) * PX * lead)
    img = Image.new("L", (width, h), 255)
    d = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        d.text((margin, margin + i * PX * lead), t, font=f, fill=0)
    return img


def save(img, name, lines, ext="png"):
    if ext == "png":
        img.save(os.path.join(OUT, name + ".png"), optimize=True)
    else:
        img.save(os.path.join(OUT, name + ".jpg"), quality=75)  # Pillow's default quality
    with open(os.path.join(OUT, name + ".txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


INGEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ingest", "tests", "fixtures")
TIFF_PAGES = [
    ["第一页 报销流程", "出差结束后十个工作日内提交报销申请。", "Receipts must show the company name."],
    ["第二页 审批权限", "五千元以上的报销须经财务总监审批。", "Approval takes three working days."],
]


def tiff():
    one = page(TIFF_PAGES[0], width=1000, margin=50)
    two = page(TIFF_PAGES[1], width=1000, margin=50).point(lambda v: 255 if v > 140 else 0).convert("1")
    path = os.path.join(INGEST, "scan-2pages.tif")
    one.save(path, save_all=True, append_images=[two], compression="tiff_deflate", dpi=(DPI, DPI))
    with open(os.path.join(INGEST, "scan-2pages.txt"), "w", encoding="utf-8") as fh:
        fh.write("\f".join("\n".join(p) + "\n" for p in TIFF_PAGES))


def main():
    os.makedirs(OUT, exist_ok=True)
    tiff()
    clean = page(PAGE)
    save(clean, "clean", PAGE)
    scan = clean.rotate(1.5, resample=Image.BICUBIC, expand=True, fillcolor=255)
    scan = scan.filter(ImageFilter.GaussianBlur(0.7))
    save(scan, "rotated_blurred", PAGE)
    line = ["审批流程：部门经理签字后提交财务部"]
    save(page(line, width=700, margin=30).rotate(180), "flipped", line)
    f = font()
    img = Image.new("L", (1000, 420), 255)
    d = ImageDraw.Draw(img)
    title = "员工手册 Employee Handbook 第二版"
    d.text((60, 40), title, font=f, fill=0)
    for i, t in enumerate(LEFT):
        d.text((60, 120 + i * 48), t, font=f, fill=0)
    for i, t in enumerate(RIGHT):
        d.text((560, 120 + i * 48), t, font=f, fill=0)
    save(img, "two_column", [title] + LEFT + RIGHT)
    save(page(JPEG_PAGE, width=1000, margin=40), "jpeg75", JPEG_PAGE, ext="jpg")


if __name__ == "__main__":
    main()
