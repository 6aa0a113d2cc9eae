"""The audit trail: every staff change, who made it, when, what, and (for configuration) the
state before and after. Services call `record` inside the transaction of the change, so a
change and its record commit or roll back together; the actor comes from
`loyalty.infrastructure.actor` (the request's caller; the system in jobs and the CLI).

Invariants (enforced by PostgreSQL, migrations/audit/): records are append-only; UPDATE
and DELETE are refused even from SQL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from loyalty.audit import schemas
from loyalty.errors import InvalidInput
from loyalty.infrastructure import actor, db

# Columns that hold secrets or their hashes never reach the trail: only that they changed.
HIDDEN = frozenset({"password_hash", "key_hash", "token_hash", "secret"})
HIDDEN_VALUE = "(hidden)"
CHANGED_VALUE = "(changed)"


def snapshot(value: Any) -> Any:
    """A state as JSON-ready data: rows, Structs and dicts, secrets left out."""
    if value is None:
        return None
    if isinstance(value, asyncpg.Record):
        value = dict(value)
    elif isinstance(value, msgspec.Struct):
        value = msgspec.structs.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): (HIDDEN_VALUE if k in HIDDEN else snapshot(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [snapshot(v) for v in value]
    return msgspec.to_builtins(value, enc_hook=str)


async def record(
    action: str,
    subject_type: str,
    subject_id: Any = None,
    *,
    before: Any = None,
    after: Any = None,
    summary: str = "",
    conn: asyncpg.Connection | None = None,
) -> None:
    """Add one record, in the caller's transaction (`conn`, else the current one)."""
    acting = actor.current()
    states = _states(before, after)
    if conn is None:
        async with db.connection() as conn:
            await _insert(conn, acting, action, subject_type, subject_id, *states, summary)
    else:
        await _insert(conn, acting, action, subject_type, subject_id, *states, summary)
    actor.note_recorded()


def _fields(value: Any) -> dict[str, Any]:
    if isinstance(value, msgspec.Struct):
        return msgspec.structs.asdict(value)
    return dict(value)


def _states(before: Any, after: Any) -> tuple[Any, Any]:
    """Both states as data; a hidden value that changed (a new password) says so."""
    shown_before, shown_after = snapshot(before), snapshot(after)
    if isinstance(shown_before, dict) and isinstance(shown_after, dict):
        raw_before, raw_after = _fields(before), _fields(after)
        for key in HIDDEN & raw_before.keys() & raw_after.keys():
            if raw_before[key] != raw_after[key]:
                shown_after[key] = CHANGED_VALUE
    return shown_before, shown_after


async def _insert(
    conn: Any,
    acting: actor.Acting,
    action: str,
    subject_type: str,
    subject_id: Any,
    before: Any,
    after: Any,
    summary: str,
) -> None:
    def as_json(state: Any) -> str | None:
        return None if state is None else msgspec.json.encode(state).decode()

    await conn.execute(
        """
        INSERT INTO audit_trail (id, at, actor_kind, actor_id, actor_label, action,
            subject_type, subject_id, summary, before, after, request_id)
        VALUES (gen_random_uuid(), now(), $1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10)
        """,
        acting.actor.kind,
        acting.actor.id,
        acting.actor.label[:150],
        action[:200],
        subject_type,
        None if subject_id is None else str(subject_id)[:200],
        summary,
        as_json(before),
        as_json(after),
        acting.request_id,
    )


def _where(data: schemas.AuditFilter) -> tuple[str, list[Any]]:
    if data.from_ and data.to and data.from_ >= data.to:
        raise InvalidInput("must be after from", field="to")
    clauses, args = [], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if data.actor:
        clauses.append(f"actor_label ILIKE {arg('%' + _like(data.actor) + '%')}")
    if data.action:
        clauses.append(f"action LIKE {arg(_like(data.action) + '%')}")
    if data.subject:
        subject = arg(data.subject)
        clauses.append(f"(subject_id = {subject} OR subject_type = {subject})")
    if data.from_:
        clauses.append(f"at >= {arg(data.from_)}")
    if data.to:
        clauses.append(f"at < {arg(data.to)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _entry(row: Any) -> schemas.AuditEntry:
    return schemas.AuditEntry(
        id=row["id"],
        at=row["at"],
        actor_kind=row["actor_kind"],
        actor_id=row["actor_id"],
        actor_label=row["actor_label"],
        action=row["action"],
        subject_type=row["subject_type"],
        subject_id=row["subject_id"],
        summary=row["summary"],
        before=msgspec.json.decode(row["before"]) if row["before"] is not None else None,
        after=msgspec.json.decode(row["after"]) if row["after"] is not None else None,
        request_id=row["request_id"],
    )


async def entries(
    data: schemas.AuditFilter, limit: int = 50, offset: int = 0
) -> list[schemas.AuditEntry]:
    """The trail, newest first, narrowed by `data`."""
    where, args = _where(data)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"SELECT * FROM audit_trail{where} ORDER BY at DESC, id DESC"
            f" LIMIT {int(limit)} OFFSET {int(offset)}",
            *args,
        )
    return [_entry(row) for row in rows]


CSV_COLUMNS = (
    "at",
    "actor_kind",
    "actor_label",
    "action",
    "subject_type",
    "subject_id",
    "summary",
    "before",
    "after",
    "request_id",
)
CSV_LIMIT = 100_000


async def entries_csv(data: schemas.AuditFilter) -> str:
    """The filtered trail as CSV, newest first (at most CSV_LIMIT rows)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in await entries(data, limit=CSV_LIMIT):
        writer.writerow(
            [
                entry.at.isoformat(),
                entry.actor_kind,
                _safe(entry.actor_label),
                entry.action,
                entry.subject_type,
                entry.subject_id or "",
                _safe(entry.summary),
                "" if entry.before is None else _safe(msgspec.json.encode(entry.before).decode()),
                "" if entry.after is None else _safe(msgspec.json.encode(entry.after).decode()),
                entry.request_id or "",
            ]
        )
    return out.getvalue()


def _safe(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def subject_of(path_params: Mapping[str, Any]) -> tuple[str, str | None]:
    """A generic record's subject: the last id in the route's path."""
    for name, value in reversed(list(path_params.items())):
        if isinstance(value, (UUID, str, int)):
            return name.removesuffix("_id"), str(value)
    return "", None
