"""The monthly movement report: tier moves, valuable members whose spend is falling,
members lost and won back, by department and by rep. Set-based SQL, one statement a part."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from typing import Any
from uuid import UUID

from loyalty.errors import InvalidInput
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.marketing import schemas
from loyalty.settings import get_settings

MOVEMENTS = ("up", "down", "falling", "lost", "won_back")

MOVEMENT_SQL = """
WITH settings AS (SELECT * FROM marketing_settings WHERE id = 1),
lowest AS (SELECT min(rank) AS rank FROM tier_definitions WHERE enabled),
changes AS (
    SELECT member, from_tier, to_tier,
           row_number() OVER (PARTITION BY member ORDER BY at, id) AS first,
           row_number() OVER (PARTITION BY member ORDER BY at DESC, id DESC) AS last
    FROM tier_changes
    WHERE at >= $1 AND at < $2 AND reason IN ('upgrade', 'downgrade')
), moved AS (
    -- Net tier move over the month: from the first change's origin to the last's target;
    -- a member back where they started did not move.
    SELECT f.member,
           CASE WHEN dl.rank > df.rank THEN 'up' ELSE 'down' END AS movement,
           coalesce(f.from_tier, '') || ' → ' || l.to_tier AS detail
    FROM changes f
    JOIN changes l ON l.member = f.member AND l.last = 1
    JOIN tier_definitions df ON df.code = f.from_tier
    JOIN tier_definitions dl ON dl.code = l.to_tier
    WHERE f.first = 1 AND dl.rank <> df.rank
), monthly AS (
    SELECT p.member,
           sum(p.total - p.returned_amount) FILTER (WHERE p.occurred_at >= $1) AS this_month,
           sum(p.total - p.returned_amount) FILTER (WHERE p.occurred_at < $1) / 3 AS before
    FROM purchases p WHERE p.occurred_at >= $3 AND p.occurred_at < $2
    GROUP BY p.member
), falling AS (
    -- Valuable: above the lowest tier. Falling: this month below falling_ratio x their own
    -- monthly average of the three months before.
    SELECT mo.member, 'falling' AS movement,
           round(coalesce(mo.this_month, 0), 2)::text || ' vs ' || round(mo.before, 2)::text
               || ' a month before' AS detail
    FROM monthly mo
    JOIN member_tiers t ON t.member = mo.member
    JOIN tier_definitions d ON d.code = t.tier
    WHERE d.rank > (SELECT rank FROM lowest) AND mo.before > 0
      AND coalesce(mo.this_month, 0) < mo.before * (SELECT falling_ratio FROM settings)
), last_before AS (
    SELECT p.member, max(p.occurred_at) AS last_purchase
    FROM purchases p WHERE p.occurred_at < $2 GROUP BY p.member
), lost AS (
    -- The churn window ran out during the month: last purchase + churn_days falls in it.
    SELECT member, 'lost' AS movement,
           'last purchase ' || to_char(last_purchase AT TIME ZONE $4, 'YYYY-MM-DD') AS detail
    FROM last_before
    WHERE last_purchase + make_interval(days => (SELECT churn_days FROM settings)) >= $1
      AND last_purchase + make_interval(days => (SELECT churn_days FROM settings)) < $2
), won AS (
    -- Bought this month after a gap of at least the churn window.
    SELECT DISTINCT ON (p.member) p.member, 'won_back' AS movement,
           'back after ' || extract(day FROM p.occurred_at - prev.occurred_at)::int || ' days'
               AS detail
    FROM purchases p
    JOIN LATERAL (
        SELECT q.occurred_at FROM purchases q
        WHERE q.member = p.member AND q.occurred_at < p.occurred_at
        ORDER BY q.occurred_at DESC LIMIT 1
    ) prev ON true
    WHERE p.occurred_at >= $1 AND p.occurred_at < $2
      AND p.occurred_at - prev.occurred_at
          >= make_interval(days => (SELECT churn_days FROM settings))
    ORDER BY p.member, p.occurred_at
), rows AS (
    SELECT * FROM moved UNION ALL SELECT * FROM falling UNION ALL SELECT * FROM lost
    UNION ALL SELECT * FROM won
)
SELECT r.movement, r.member, r.detail, m.number, m.name, t.tier, m.assigned_rep,
       s.username AS rep, s.department
FROM rows r
JOIN members m ON m.id = r.member AND m.status = 'active'
LEFT JOIN member_tiers t ON t.member = r.member
LEFT JOIN staff s ON s.id = m.assigned_rep
ORDER BY r.movement, m.name, m.id
"""


# The month's declining and at-risk valuable members. Valuable: above the lowest tier now.
# Declining: the report's "falling" (spending less) or "down" (moved down a tier). At risk:
# no purchase for at_risk_days but not yet churn_days, at the month's end (or now).
DECLINING_VALUABLE_SQL = f"""
WITH lowest AS (SELECT min(rank) AS rank FROM tier_definitions WHERE enabled),
valuable AS (
    SELECT t.member FROM member_tiers t JOIN tier_definitions d ON d.code = t.tier
    WHERE d.rank > (SELECT rank FROM lowest)
)
SELECT r.member FROM ({MOVEMENT_SQL}) r
WHERE r.movement IN ('falling', 'down') AND r.member IN (SELECT member FROM valuable)
UNION
SELECT m.id FROM members m
JOIN marketing_settings ms ON ms.id = 1
WHERE m.status = 'active' AND m.id IN (SELECT member FROM valuable)
  AND (SELECT max(p.occurred_at) FROM purchases p WHERE p.member = m.id AND p.occurred_at < $5)
      BETWEEN $5 - make_interval(days => ms.churn_days)
          AND $5 - make_interval(days => ms.at_risk_days)
"""


def month_bounds(month: str) -> tuple[datetime, datetime, datetime]:
    """(start, end, start of the three months before) in LOYALTY_TIMEZONE."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise InvalidInput("must be YYYY-MM", field="month")
    tz = get_settings().tz
    year, mon = int(month[:4]), int(month[5:])
    if not 1900 <= year <= 2999:  # the API's months; and its bounds stay datetimes
        raise InvalidInput("must be a month of the years 1900-2999", field="month")

    def first(y: int, m: int) -> datetime:
        while m < 1:
            y, m = y - 1, m + 12
        while m > 12:
            y, m = y + 1, m - 12
        return datetime(y, m, 1, tzinfo=tz)

    return first(year, mon), first(year, mon + 1), first(year, mon - 3)


def _count(rows: list[Any], key: str) -> schemas.MovementCount:
    counts = schemas.MovementCount(key=key)
    for row in rows:
        setattr(counts, row["movement"], getattr(counts, row["movement"]) + 1)
    return counts


def _grouped(rows: list[Any], key: str) -> list[schemas.MovementCount]:
    groups: dict[str, list[Any]] = {}
    for row in rows:
        groups.setdefault(row[key] or "", []).append(row)
    return [_count(group, name) for name, group in sorted(groups.items())]


async def movement(month: str) -> schemas.MovementReport:
    start, end, before = month_bounds(month)
    async with db.connection() as conn:
        rows = await conn.fetch(MOVEMENT_SQL, start, end, before, get_settings().tz.key)
    members = [
        db.from_row(
            schemas.MovementRow,
            row,
            member_id=row["member"],
            member_number=row["number"],
            rep_id=row["assigned_rep"],
            brief_url=f"/console/members/{row['member']}",
            brief_api=f"/api/v1/members/{row['member']}/brief",
        )
        for row in rows
    ]
    return schemas.MovementReport(
        month=month,
        starts=date(start.year, start.month, 1),
        ends=date(end.year, end.month, 1),
        totals=_count(rows, "all"),
        by_department=_grouped(rows, "department"),
        by_rep=_grouped(rows, "rep"),
        members=members,
    )


async def declining_valuable(month: str) -> list[UUID]:
    """The month's declining and at-risk valuable members (see DECLINING_VALUABLE_SQL)."""
    start, end, before = month_bounds(month)
    async with db.connection() as conn:
        rows = await conn.fetch(
            DECLINING_VALUABLE_SQL, start, end, before, get_settings().tz.key, min(end, now())
        )
    return sorted(row["member"] for row in rows)


def to_csv(report: schemas.MovementReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "month",
            "movement",
            "member_number",
            "name",
            "tier",
            "detail",
            "rep",
            "department",
            "brief_url",
        ]
    )
    for row in report.members:
        writer.writerow(
            [
                report.month,
                row.movement,
                row.member_number,
                row.name,
                row.tier or "",
                row.detail,
                row.rep or "",
                row.department or "",
                f"{get_settings().public_url}{row.brief_url}",
            ]
        )
    return out.getvalue()
