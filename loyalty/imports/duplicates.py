"""Duplicates inside one file: rows sharing a normalised phone or email form a group, and
the earliest registration survives, its gaps filled from the later ones."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from loyalty.imports.rows import Row

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
