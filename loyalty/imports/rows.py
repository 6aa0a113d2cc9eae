"""Reading an import file: lines decoded one by one (UTF-8, else GB18030), columns mapped by
header, every row validated and normalised, with a stable identity."""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO
from uuid import UUID

import msgspec

from loyalty.errors import InvalidInput
from loyalty.members.service import normalise_email, normalise_phone
from loyalty.settings import get_settings

# The documented template's columns (loyalty/imports/template.csv), in its order.
COLUMNS = (
    "external_id",
    "name",
    "kind",
    "phone",
    "email",
    "gender",
    "birthday",
    "address",
    "city",
    "notes",
    "tags",
    "registered_at",
    "opening_points",
    "points_date",
    "rep",
    "department",
)
ALIASES = {
    "id": "external_id",
    "customer_id": "external_id",
    "mobile": "phone",
    "phone_number": "phone",
    "points": "opening_points",
    "balance": "opening_points",
    "registered": "registered_at",
    "owner": "rep",
    "姓名": "name",
    "手机": "phone",
    "手机号": "phone",
    "电话": "phone",
    "邮箱": "email",
    "性别": "gender",
    "生日": "birthday",
    "地址": "address",
    "城市": "city",
    "备注": "notes",
    "标签": "tags",
    "注册时间": "registered_at",
    "积分": "opening_points",
    "客户经理": "rep",
    "部门": "department",
}
GENDERS = {
    "female": "female",
    "f": "female",
    "女": "female",
    "male": "male",
    "m": "male",
    "男": "male",
    "other": "other",
    "undisclosed": "undisclosed",
}
MAX_POINTS = 100_000_000
SPECIAL_USE = {"arpa", "invalid", "local", "localhost", "onion", "test"}  # email_validator's
SIMPLE_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.[a-z]{2,24}$"
)


class ByteCounter:
    def __init__(self) -> None:
        self.done = 0


def decoded_lines(stream: BinaryIO, counter: ByteCounter) -> Iterator[str]:
    """Each line as text: UTF-8 (a leading BOM dropped), else GB18030 (a superset of GBK),
    so a file whose lines were saved in different encodings still reads."""
    first = True
    for raw in stream:
        counter.done += len(raw)
        if first:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            first = False
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            yield raw.decode("gb18030", errors="replace")


@dataclass
class Rep:
    id: UUID
    username: str
    department: str | None
    active: bool
    role: str


@dataclass
class Row:
    row_no: int
    key: str
    name: str
    kind: str
    phone: str | None
    email: str | None
    gender: str | None
    birthday: date | None
    address: dict[str, str] | None
    notes: str
    tags: list[str]
    registered_at: datetime | None
    points: int
    points_at: datetime | None
    rep: UUID | None
    merged_from: list[int] = field(default_factory=list)


@dataclass
class Problem:
    row_no: int
    column: str
    value: str
    reason: str


def map_header(header: list[str]) -> tuple[dict[str, int], list[Problem]]:
    """Column name -> position; unknown columns are reported (row 1) and ignored."""
    mapping: dict[str, int] = {}
    problems = []
    for i, raw in enumerate(header):
        name = raw.strip().lstrip("\ufeff")
        key = name.lower().replace(" ", "_").replace("-", "_")
        key = ALIASES.get(key, ALIASES.get(name, key))
        if key in COLUMNS and key not in mapping:
            mapping[key] = i
        elif name:
            reason = "repeated column, ignored" if key in mapping else "unknown column, ignored"
            problems.append(Problem(1, name[:64], "", reason))
    return mapping, problems


def _date(value: str) -> date:
    text = value.strip().replace("/", "-").replace(".", "-")
    text = re.sub(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$", r"\1-\2-\3", text)
    match = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text)
    if match:
        return date(int(match[1]), int(match[2]), int(match[3]))
    return date.fromisoformat(text)


def _datetime(value: str) -> datetime:
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        day = _date(text)
        moment = datetime(day.year, day.month, day.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=get_settings().tz)
    return moment.astimezone(UTC)


class RowReader:
    """Turns raw CSV records into validated rows or problems."""

    def __init__(self, mapping: dict[str, int], reps: dict[str, Rep], departments: set[str]):
        self.mapping = mapping
        self.reps = reps
        self.departments = departments
        self.now = datetime.now(UTC)
        self.today = date.today()

    def _get(self, record: list[str], column: str) -> str:
        i = self.mapping.get(column)
        if i is None or i >= len(record):
            return ""
        return record[i].strip()

    def parse(self, record: list[str], row_no: int) -> Row | list[Problem]:
        if any("\x00" in cell for cell in record):
            # PostgreSQL text cannot hold it: the row is refused, the rest of the file goes on.
            column = next((c for c in self.mapping if "\x00" in self._get(record, c)), "row")
            return [Problem(row_no, column, "", "contains a NUL character")]
        cells = _Cells(self, record, row_no)
        fields = {
            **self._who(cells),
            **self._contact(cells),
            **self._archive(cells),
            **self._dates_and_points(cells),
            **self._owner(cells),
        }
        if cells.problems:
            return cells.problems
        external_id = fields.pop("external_id")
        department = fields.pop("department")
        return Row(row_no=row_no, key=_identity(external_id, fields, department), **fields)

    def _who(self, cells: _Cells) -> dict[str, Any]:
        external_id = cells.get("external_id")
        if len(external_id) > 80:
            cells.bad("external_id", "is longer than 80 characters")
        name = " ".join(cells.get("name").split())
        if not name:
            cells.bad("name", "is required")
        elif len(name) > 200:
            cells.bad("name", "is longer than 200 characters")
        kind = cells.get("kind").lower() or "person"
        if kind not in ("person", "organisation"):
            cells.bad("kind", "must be person or organisation")
        return {"external_id": external_id, "name": name, "kind": kind}

    def _contact(self, cells: _Cells) -> dict[str, Any]:
        phone = email = None
        if raw := cells.get("phone"):
            try:
                phone = normalise_phone(raw)
            except InvalidInput as exc:
                cells.bad("phone", exc.detail)
        if raw := cells.get("email"):
            lowered = raw.lower()
            if SIMPLE_EMAIL.match(lowered) and lowered.rsplit(".", 1)[1] not in SPECIAL_USE:
                email = lowered
            else:
                try:
                    email = normalise_email(raw)
                except InvalidInput as exc:
                    cells.bad("email", exc.detail)
        return {"phone": phone, "email": email}

    def _archive(self, cells: _Cells) -> dict[str, Any]:
        gender = None
        if raw := cells.get("gender"):
            gender = GENDERS.get(raw.lower())
            if gender is None:
                cells.bad("gender", "must be female, male, other or undisclosed")
        birthday = None
        if raw := cells.get("birthday"):
            try:
                birthday = _date(raw)
                if birthday > self.today or birthday.year < 1900:
                    cells.bad("birthday", "is not a plausible birthday")
            except ValueError:
                cells.bad("birthday", "is not a date (YYYY-MM-DD)")
        address: dict[str, str] | None = None
        line1, city = cells.get("address")[:200], cells.get("city")[:100]
        if line1 or city:
            address = {k: v for k, v in (("line1", line1), ("city", city)) if v}
        tags = sorted(
            {t.strip()[:50] for t in re.split(r"[;,，；]", cells.get("tags")) if t.strip()}
        )[:30]
        return {
            "gender": gender,
            "birthday": birthday,
            "address": address,
            "notes": cells.get("notes")[:10000],
            "tags": tags,
        }

    def _past(self, cells: _Cells, name: str, not_a_date: str) -> datetime | None:
        """The cell's date (and time), None when it is empty; one in the future, or not a
        date, is a bad cell."""
        if not (raw := cells.get(name)):
            return None
        try:
            at = _datetime(raw)
        except ValueError:
            cells.bad(name, not_a_date)
            return None
        if at > self.now + timedelta(minutes=5):
            cells.bad(name, "is in the future")
        return at

    def _dates_and_points(self, cells: _Cells) -> dict[str, Any]:
        registered_at = self._past(
            cells, "registered_at", "is not a date or date and time (YYYY-MM-DD[ HH:MM])"
        )
        points = 0
        if raw := cells.get("opening_points"):
            text = raw.replace(",", "").replace("_", "")
            if not re.fullmatch(r"\d{1,9}", text) or int(text) > MAX_POINTS:
                cells.bad("opening_points", f"must be a whole number from 0 to {MAX_POINTS}")
            else:
                points = int(text)
        points_at = self._past(cells, "points_date", "is not a date (YYYY-MM-DD)")
        return {"registered_at": registered_at, "points": points, "points_at": points_at}

    def _owner(self, cells: _Cells) -> dict[str, Any]:
        rep_id = None
        department = cells.get("department")
        if raw := cells.get("rep"):
            rep = self.reps.get(raw.lower())
            if rep is None or rep.role != "rep":
                cells.bad("rep", "is not a rep's username or id")
            elif not rep.active:
                cells.bad("rep", "is no longer active")
            elif department and rep.department != department:
                cells.bad(
                    "department", f"rep {rep.username} is in department {rep.department or '-'}"
                )
            else:
                rep_id = rep.id
        elif department and department not in self.departments:
            cells.bad("department", "is not a department")
        return {"rep": rep_id, "department": department}


class _Cells:
    """One record's cells, and the problems found in them so far."""

    def __init__(self, reader: RowReader, record: list[str], row_no: int) -> None:
        self.reader, self.record, self.row_no = reader, record, row_no
        self.problems: list[Problem] = []

    def get(self, column: str) -> str:
        return self.reader._get(self.record, column)

    def bad(self, column: str, reason: str) -> None:
        self.problems.append(Problem(self.row_no, column, self.get(column)[:200], reason))


def _identity(external_id: str, fields: dict[str, Any], department: str) -> str:
    """The row's `external_id`, else a hash of the whole normalised row."""
    if external_id:
        return f"m:x:{external_id}"
    hashed = [
        fields[name]
        for name in (
            "name",
            "kind",
            "phone",
            "email",
            "gender",
            "birthday",
            "address",
            "notes",
            "tags",
            "registered_at",
            "points",
            "points_at",
            "rep",
        )
    ]
    return "m:h:" + hashlib.sha256(msgspec.json.encode([*hashed, department])).hexdigest()


# A cell longer than the csv module's default limit (128 Ki characters) made the reader
# raise and the whole import fail; read it, and let the column's own length check refuse it.
csv.field_size_limit(16 * 1024 * 1024)


def records(stream: BinaryIO, counter: ByteCounter) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-empty record; the header is line 1."""
    reader = csv.reader(decoded_lines(stream, counter))
    for record in reader:
        if any(cell.strip() for cell in record):
            yield reader.line_num, record
