"""A voucher pool uploaded as a CSV file: one code a line (the first column), an optional
`code` header. Every line that is not imported is reported with its number and why."""

from __future__ import annotations

import csv
import io
import re

import msgspec

from loyalty.errors import InvalidInput
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.schemas import VISIBLE

MAX_BYTES = 1_000_000
MAX_CODES = 10_000
_CODE = re.compile(rf"^{VISIBLE}{{1,64}}$")

BLANK = N_("blank line")
INVALID = N_("not a code: 1 to 64 characters, no spaces")
REPEATED = N_("repeats line %(line)s")
IN_POOL = N_("already in the pool")


class LineProblem(msgspec.Struct):
    line: int
    code: str
    problem: str  # one of the messages above (translated where shown)
    first_line: int | None = None  # for REPEATED


class VoucherFile(msgspec.Struct):
    codes: list[str]  # in file order, each once
    lines: dict[str, int]  # code: the line it came from
    problems: list[LineProblem]


def parse(content: bytes) -> VoucherFile:
    """The codes of an uploaded file and the lines skipped (blank, invalid, repeated)."""
    if len(content) > MAX_BYTES:
        raise InvalidInput(N_("the file is larger than 1 MB"), field="file")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(N_("the file is not UTF-8 text"), field="file") from None
    codes: list[str] = []
    lines: dict[str, int] = {}
    problems: list[LineProblem] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        code = row[0].strip() if row else ""
        if number == 1 and code.lower() == "code":
            continue
        if not code:
            problems.append(LineProblem(number, "", BLANK))
        elif not _CODE.match(code):
            problems.append(LineProblem(number, code[:64], INVALID))
        elif code in lines:
            problems.append(LineProblem(number, code, REPEATED, lines[code]))
        else:
            lines[code] = number
            codes.append(code)
    if not codes:
        raise InvalidInput(N_("the file holds no codes"), field="file")
    if len(codes) > MAX_CODES:
        raise InvalidInput(N_("at most 10,000 codes a file"), field="file")
    return VoucherFile(codes=codes, lines=lines, problems=problems)
