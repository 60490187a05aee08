#!/usr/bin/env python3
"""Write the office fixtures under ingest/tests/fixtures/ with real writers.

Needs: pip install openpyxl (a venv is fine). Run: python3 scripts/make-office-fixtures.py
"""
import pathlib

import openpyxl

FX = pathlib.Path(__file__).resolve().parent.parent / "ingest/tests/fixtures"

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
print("wrote", FX / "standards.xlsx")
