"""A messy members file, as legacy systems export them."""

from __future__ import annotations

from pathlib import Path

HEADER = "external_id,name,phone,email,gender,birthday,registered_at,opening_points,rep,city\n"
LINES: list[tuple[str, str]] = [
    # (encoding, line); file lines start at 2 (the header is line 1)
    ("utf-8", "A1,Wang Wei,13800138000,wang@example.com,female,1985-04-12,2019-03-01,1200,rep.li,"),
    ("gbk", "A2,张伟,13900139000,,male,1990-01-02,2020-05-05,300,,上海"),
    ("utf-8", "A3,王伟,,WANG@Example.com,,1985/4/12,2020-01-01,50,rep.li,北京"),
    ("utf-8", "A4,Li Na,12345,li@example.com,female,,,,,"),
    ("utf-8", "A5,Zhao Lei,13600136000,,male,1990-13-45,,,,"),
    ("utf-8", "A6,Sun Li,13500135000,,,,,,nobody,"),
    ("utf-8", "A7,Other Name,+86 133 0013 3000,exist@example.com,female,,2024-01-01,500,,"),
    ("utf-8", "A8,Zhang Wei Early,139-0013-9000,zw@example.com,,,2018-01-01,,,"),
    ("gbk", ",李娜,13100131000,,女,,,,,广州"),
]


def write_messy(path: Path) -> Path:
    """The messy file: a BOM, GBK and UTF-8 lines, CRLF endings."""
    with path.open("wb") as f:
        f.write(b"\xef\xbb\xbf" + HEADER.encode())
        for encoding, line in LINES:
            f.write(line.encode(encoding) + b"\r\n")
    return path
