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
        get = self._get
        problems: list[Problem] = []
        if any("\x00" in cell for cell in record):
            # PostgreSQL text cannot hold it: the row is refused, the rest of the file goes on.
            column = next((c for c in self.mapping if "\x00" in get(record, c)), "row")
            return [Problem(row_no, column, "", "contains a NUL character")]

        def bad(column: str, reason: str) -> None:
            problems.append(Problem(row_no, column, get(record, column)[:200], reason))

        external_id = get(record, "external_id")
        if len(external_id) > 80:
            bad("external_id", "is longer than 80 characters")
        name = " ".join(get(record, "name").split())
        if not name:
            bad("name", "is required")
        elif len(name) > 200:
            bad("name", "is longer than 200 characters")
        kind = get(record, "kind").lower() or "person"
        if kind not in ("person", "organisation"):
            bad("kind", "must be person or organisation")
        phone = email = None
        if raw := get(record, "phone"):
            try:
                phone = normalise_phone(raw)
            except InvalidInput as exc:
                bad("phone", exc.detail)
        if raw := get(record, "email"):
            lowered = raw.lower()
            if SIMPLE_EMAIL.match(lowered) and lowered.rsplit(".", 1)[1] not in SPECIAL_USE:
                email = lowered
            else:
                try:
                    email = normalise_email(raw)
                except InvalidInput as exc:
                    bad("email", exc.detail)
        gender = None
        if raw := get(record, "gender"):
            gender = GENDERS.get(raw.lower())
            if gender is None:
                bad("gender", "must be female, male, other or undisclosed")
        birthday = None
        if raw := get(record, "birthday"):
            try:
                birthday = _date(raw)
                if birthday > self.today or birthday.year < 1900:
                    bad("birthday", "is not a plausible birthday")
            except ValueError:
                bad("birthday", "is not a date (YYYY-MM-DD)")
        address: dict[str, str] | None = None
        line1, city = get(record, "address")[:200], get(record, "city")[:100]
        if line1 or city:
            address = {k: v for k, v in (("line1", line1), ("city", city)) if v}
        notes = get(record, "notes")[:10000]
        tags = sorted(
            {t.strip()[:50] for t in re.split(r"[;,，；]", get(record, "tags")) if t.strip()}
        )[:30]
        registered_at = None
        if raw := get(record, "registered_at"):
            try:
                registered_at = _datetime(raw)
                if registered_at > self.now + timedelta(minutes=5):
                    bad("registered_at", "is in the future")
            except ValueError:
                bad("registered_at", "is not a date or date and time (YYYY-MM-DD[ HH:MM])")
        points = 0
        if raw := get(record, "opening_points"):
            text = raw.replace(",", "").replace("_", "")
            if not re.fullmatch(r"\d{1,9}", text) or int(text) > MAX_POINTS:
                bad("opening_points", f"must be a whole number from 0 to {MAX_POINTS}")
            else:
                points = int(text)
        points_at = None
        if raw := get(record, "points_date"):
            try:
                points_at = _datetime(raw)
                if points_at > self.now + timedelta(minutes=5):
                    bad("points_date", "is in the future")
            except ValueError:
                bad("points_date", "is not a date (YYYY-MM-DD)")
        rep_id = None
        department = get(record, "department")
        if raw := get(record, "rep"):
            rep = self.reps.get(raw.lower())
            if rep is None or rep.role != "rep":
                bad("rep", "is not a rep's username or id")
            elif not rep.active:
                bad("rep", "is no longer active")
            elif department and rep.department != department:
                bad("department", f"rep {rep.username} is in department {rep.department or '-'}")
            else:
                rep_id = rep.id
        elif department and department not in self.departments:
            bad("department", "is not a department")
        if problems:
            return problems
        identity = (
            f"m:x:{external_id}"
            if external_id
            else "m:h:"
            + hashlib.sha256(
                msgspec.json.encode(
                    [
                        name,
                        kind,
                        phone,
                        email,
                        gender,
                        birthday,
                        address,
                        notes,
                        tags,
                        registered_at,
                        points,
                        points_at,
                        rep_id,
                        department,
                    ]
                )
            ).hexdigest()
        )
        return Row(
            row_no=row_no,
            key=identity,
            name=name,
            kind=kind,
            phone=phone,
            email=email,
            gender=gender,
            birthday=birthday,
            address=address,
            notes=notes,
            tags=tags,
            registered_at=registered_at,
            points=points,
            points_at=points_at,
            rep=rep_id,
        )


# A cell longer than the csv module's default limit (128 Ki characters) made the reader
# raise and the whole import fail; read it, and let the column's own length check refuse it.
csv.field_size_limit(16 * 1024 * 1024)


def records(stream: BinaryIO, counter: ByteCounter) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-empty record; the header is line 1."""
    reader = csv.reader(decoded_lines(stream, counter))
    for record in reader:
        if any(cell.strip() for cell in record):
            yield reader.line_num, record


MERGED_FIELDS = ("name", "phone", "email", "gender", "birthday", "address", "notes", "rep")


def display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(str(v) for v in value.values())
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def group_duplicates(rows: list[Row]) -> list[list[Row]]:
    """Rows sharing a normalised phone or email (directly or through another row), each
    group ordered by registration (earliest first, rows without one last), then file order."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, row in enumerate(rows):
        for value in (row.phone, row.email):
            if value is None:
                continue
            j = owner.setdefault(value, i)
            if j != i:
                parent[find(i)] = find(j)
    groups: dict[int, list[Row]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(find(i), []).append(row)
    far = datetime.max.replace(tzinfo=UTC)
    return [
        sorted(group, key=lambda r: (r.registered_at or far, r.row_no)) for group in groups.values()
    ]


def fold(group: list[Row]) -> tuple[Row, list[tuple[int, str, str, str]]]:
    """The survivor with gaps filled from later duplicates, and the conflicts:
    (row of the duplicate, field, kept, offered)."""
    first = group[0]
    survivor = Row(**{**first.__dict__, "tags": list(first.tags), "merged_from": []})
    conflicts = []
    for other in group[1:]:
        survivor.merged_from.append(other.row_no)
        for name in MERGED_FIELDS:
            kept, offered = getattr(survivor, name), getattr(other, name)
            if offered in (None, "", {}):
                continue
            if kept in (None, "", {}):
                setattr(survivor, name, offered)
            elif kept != offered:
                conflicts.append((other.row_no, name, display(kept), display(offered)))
        survivor.tags = sorted(set(survivor.tags) | set(other.tags))[:30]
    return survivor, conflicts
