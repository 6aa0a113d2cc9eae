"""CSV exports and the points liability report. Exports stream from a server-side cursor, so
memory stays flat however many rows there are; the member export respects the exporter's
visibility (a rep exports only their own members) and is audited."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.exports import schemas
from loyalty.infrastructure import db
from loyalty.members import visibility
from loyalty.settings import get_settings

CHUNK = 2000


def _line(values: Sequence[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(["" if v is None else v for v in values])
    return out.getvalue()


async def _stream(sql: str, args: Sequence[Any], header: Sequence[str]) -> AsyncIterator[str]:
    yield "\ufeff" + _line(header)  # a BOM, so spreadsheet programs read UTF-8 (Chinese names)
    async with db.transaction() as conn:
        rows: list[str] = []
        async for row in conn.cursor(sql, *args, prefetch=CHUNK):
            rows.append(_line(list(row.values())))
            if len(rows) >= CHUNK:
                yield "".join(rows)
                rows = []
        if rows:
            yield "".join(rows)


MEMBER_COLUMNS = (
    *("number", "name", "kind", "phone", "email", "gender", "birthday", "tier", "available"),
    *("pending", "debt", "lifetime_earned", "assigned_rep", "department", "registered_at"),
    *("registration_channel", "tags"),
)


async def members_csv(principal: Principal) -> AsyncIterator[str]:
    condition, args = visibility.condition(principal)
    if principal.is_staff:
        # Every archive in the export counts as viewed by the exporter.
        async with db.connection() as conn:
            await conn.execute(
                f"""
                INSERT INTO member_views (id, staff, member, what, at)
                SELECT gen_random_uuid(), ${len(args) + 1}, m.id, 'export', now()
                FROM members m WHERE m.status = 'active' AND {condition}
                """,
                *args,
                principal.id,
            )
    sql = f"""
        SELECT m.number, m.name, m.kind, m.phone, m.email, m.gender, m.birthday, t.tier,
            a.available, a.pending, a.debt, a.lifetime_earned, s.username, s.department,
            m.registered_at, m.registration_channel, array_to_string(m.tags, ';')
        FROM members m
        JOIN member_tiers t ON t.member = m.id
        JOIN points_accounts a ON a.member = m.id
        LEFT JOIN staff s ON s.id = m.assigned_rep
        WHERE m.status = 'active' AND {condition}
        ORDER BY m.number
    """
    async for chunk in _stream(sql, args, MEMBER_COLUMNS):
        yield chunk


LEDGER_COLUMNS = (
    *("entry_id", "member_number", "points", "kind", "cause_type", "cause_id"),
    *("occurred_at", "created_at", "actor", "note"),
)


def _period(start: datetime | None, end: datetime | None) -> None:
    if start and end and end <= start:
        raise InvalidInput("must be after from", field="to")


async def ledger_csv(principal: Principal, start: datetime | None, end: datetime | None):
    if not principal.can("exports:read"):
        raise PermissionDenied("this needs the exports:read permission")
    _period(start, end)
    sql = """
        SELECT e.id, m.number, e.points, e.kind, e.cause_type, e.cause_id, e.occurred_at,
            e.created_at, e.actor, e.note
        FROM points_ledger e JOIN members m ON m.id = e.member
        WHERE ($1::timestamptz IS NULL OR e.created_at >= $1)
          AND ($2::timestamptz IS NULL OR e.created_at < $2)
        ORDER BY e.created_at, e.id
    """
    async for chunk in _stream(sql, [start, end], LEDGER_COLUMNS):
        yield chunk


async def liability(principal: Principal, cost_per_point: Decimal | None) -> schemas.Liability:
    """Outstanding points (spendable and pending, less what members owe) by tier and by the
    month they expire, valued at a cost per point."""
    if not principal.can("exports:read"):
        raise PermissionDenied("this needs the exports:read permission")
    value = cost_per_point if cost_per_point is not None else get_settings().point_value
    if not value.is_finite() or value < 0 or value > 1000:
        raise InvalidInput("must be between 0 and 1000", field="cost_per_point")
    async with db.connection() as conn:
        by_tier = await conn.fetch(
            """
            SELECT t.tier, count(*) AS members, sum(a.available) AS available,
                sum(a.pending) AS pending, sum(a.debt) AS debt
            FROM points_accounts a JOIN member_tiers t ON t.member = a.member
            WHERE NOT a.closed GROUP BY t.tier ORDER BY t.tier
            """
        )
        by_month = await conn.fetch(
            """
            SELECT to_char(expires_at AT TIME ZONE $1, 'YYYY-MM') AS month,
                sum(remaining) AS points
            FROM points_lots WHERE remaining > 0 GROUP BY 1 ORDER BY 1
            """,
            get_settings().timezone,
        )
    tiers = [
        schemas.TierLiability(
            tier=row["tier"],
            members=row["members"],
            available=int(row["available"]),
            pending=int(row["pending"]),
            owed=int(row["debt"]),
            outstanding=int(row["available"] + row["pending"] - row["debt"]),
            value=(Decimal(int(row["available"] + row["pending"] - row["debt"])) * value).quantize(
                Decimal("0.01")
            ),
        )
        for row in by_tier
    ]
    months = [
        schemas.MonthLiability(
            month=row["month"],
            points=int(row["points"]),
            value=(Decimal(int(row["points"])) * value).quantize(Decimal("0.01")),
        )
        for row in by_month
    ]
    total = sum(t.outstanding for t in tiers)
    return schemas.Liability(
        cost_per_point=value,
        currency=get_settings().currency,
        outstanding_points=total,
        value=(Decimal(total) * value).quantize(Decimal("0.01")),
        by_tier=tiers,
        by_expiry_month=months,
    )


async def liability_csv(principal: Principal, cost_per_point: Decimal | None) -> str:
    report = await liability(principal, cost_per_point)
    lines = [_line(["section", "key", "members", "points", "value", "currency"])]
    for tier in report.by_tier:
        lines.append(
            _line(["tier", tier.tier, tier.members, tier.outstanding, tier.value, report.currency])
        )
    for month in report.by_expiry_month:
        lines.append(
            _line(["expiry_month", month.month, "", month.points, month.value, report.currency])
        )
    lines.append(_line(["total", "", "", report.outstanding_points, report.value, report.currency]))
    return "\ufeff" + "".join(lines)
