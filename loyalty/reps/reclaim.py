"""Reclaim: members return to the pool when their rep does nothing with them.

The `reclaim_members` job (daily): no purchase or referral since the assignment began -> back
to the pool on the first day of the fourth month; no purchase for six months (shorter for
upper tiers) -> on the first day of the seventh month. Rep and manager are warned
`warning_days` ahead. An assignment without a service record in its protection period may be
taken back by the manager (`take_back`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import local_today, now
from loyalty.members import service as members
from loyalty.reps import schemas
from loyalty.reps.assignments import check_manages, department_of, reassign
from loyalty.reps.notices import department_managers, notify_staff
from loyalty.reps.settings import get_rep_settings
from loyalty.settings import get_settings

# Each open assignment's reclaim dates: `inactive` (no purchase or referral since it began)
# on the first day of the month `inactive_months` after it began; `no_deal` (no purchase for
# `no_deal_months`, fewer for some tiers) on the first day of the month that many months
# after the later of the last purchase and the start of the assignment. Queries here and in
# team_figures append to it; $2 is the business time zone.
DUE = """
WITH settings AS (SELECT * FROM rep_settings WHERE id = 1),
open AS (
    SELECT a.member, a.rep, a.started_at,
        (a.started_at AT TIME ZONE $2)::date AS start_day,
        (SELECT max(p.occurred_at) FROM purchases p
         WHERE p.member = a.member AND p.occurred_at >= a.started_at) AS bought_since,
        EXISTS (SELECT 1 FROM referrals r WHERE r.referrer = a.member
                AND r.created_at >= a.started_at) AS referred_since,
        (SELECT max(p.occurred_at) FROM purchases p WHERE p.member = a.member) AS last_purchase,
        t.tier
    FROM assignments a JOIN member_tiers t ON t.member = a.member
    WHERE a.ended_at IS NULL
), due AS (
    SELECT o.member, o.rep, 'inactive' AS rule,
        (date_trunc('month', o.start_day) + make_interval(months => s.inactive_months))::date
            AS due_on
    FROM open o, settings s
    WHERE o.bought_since IS NULL AND NOT o.referred_since
    UNION ALL
    SELECT o.member, o.rep, 'no_deal',
        (date_trunc('month', (greatest(o.last_purchase, o.started_at) AT TIME ZONE $2)::date)
         + make_interval(months => least(s.no_deal_months,
               coalesce((s.tier_no_deal_months ->> o.tier)::int, s.no_deal_months))))::date
    FROM open o, settings s
)
"""


async def reclaim_members(today: date | None = None) -> schemas.ReclaimRun:
    """The daily job: warn ahead of reclaims, and return due members to the pool. Running it
    twice on a day changes nothing more."""
    today = today or local_today()
    tz = get_settings().timezone
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        warned = await conn.fetch(
            DUE
            + """
            INSERT INTO reclaims (id, member, rep, rule, due_on, warned_at)
            SELECT gen_random_uuid(), member, rep, rule, due_on, now() FROM due
            WHERE due_on > $1 AND due_on <= $1 + $3::int
            ON CONFLICT (member, rule, due_on) DO NOTHING
            RETURNING member, rep, rule, due_on
            """,
            today,
            tz,
            settings.warning_days,
        )
        for row in warned:
            await _warn(conn, row)
        due = await conn.fetch(
            DUE
            + """
            SELECT DISTINCT ON (member) member, rep, rule, due_on FROM due
            WHERE due_on <= $1 ORDER BY member, due_on
            """,
            today,
            tz,
        )
        for row in due:
            await conn.execute(
                """
                INSERT INTO reclaims (id, member, rep, rule, due_on, reclaimed_at)
                VALUES (gen_random_uuid(), $1, $2, $3, $4, now())
                ON CONFLICT (member, rule, due_on) DO UPDATE SET reclaimed_at = now()
                """,
                row["member"],
                row["rep"],
                row["rule"],
                row["due_on"],
            )
        by_rule: dict[str, list[UUID]] = {}
        for row in due:
            by_rule.setdefault(row["rule"], []).append(row["member"])
        for rule, member_ids in by_rule.items():
            await reassign(
                conn,
                member_ids,
                None,
                kind="reclaim",
                reason=f"reclaimed by the {rule} rule",
                by="reclaim job",
                end_reason=f"reclaim:{rule}",
            )
    return schemas.ReclaimRun(warned=len(warned), reclaimed=len(due), day=today)


async def _warn(conn: asyncpg.Connection, row: Any) -> None:
    member = await conn.fetchrow("SELECT number, name FROM members WHERE id = $1", row["member"])
    rep = await conn.fetchrow("SELECT username, department FROM staff WHERE id = $1", row["rep"])
    managers = await department_managers(conn, rep["department"])
    title = f"{member['name']} ({member['number']}) returns to the pool on {row['due_on']}"
    body = (
        "No purchase or referral since the assignment began."
        if row["rule"] == "inactive"
        else "No purchase for too long."
    ) + " A purchase, or a referral, before then keeps the member with the rep."
    await notify_staff(
        conn,
        [row["rep"], *managers],
        kind="reclaim_warning",
        key=f"reclaim:{row['member']}:{row['rule']}:{row['due_on']}",
        title=title,
        body=body,
        member_id=row["member"],
    )


async def reclaim_preview(principal: Principal) -> list[schemas.ReclaimCandidate]:
    """Members a manager may take back now (protection period without a service record)
    and those the job will return to the pool soon, with the rule and the date."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("only managers see the reclaim preview")
    settings = await get_rep_settings()
    today = local_today()
    async with db.connection() as conn:
        rows = await conn.fetch(
            DUE
            + """
            , protection AS (
                SELECT o.member, o.rep, 'protection' AS rule,
                    (o.started_at + make_interval(days => $3))::date AS due_on
                FROM open o
                WHERE o.started_at < now() - make_interval(days => $3)
                  AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.member = o.member
                                  AND c.staff = o.rep AND c.occurred_at >= o.started_at
                                  AND c.occurred_at < o.started_at + make_interval(days => $3))
            ), everything AS (
                SELECT * FROM due WHERE due_on <= $1::date + 31 UNION ALL SELECT * FROM protection
            )
            SELECT e.*, m.number, m.name, s.username, s.department
            FROM everything e JOIN members m ON m.id = e.member JOIN staff s ON s.id = e.rep
            ORDER BY e.due_on, m.number
            """,
            today,
            get_settings().timezone,
            settings.protection_days,
        )
    return [
        db.from_row(schemas.ReclaimCandidate, row, member_id=row["member"], rep=row["username"])
        for row in rows
        if principal.department_limit is None or row["department"] == principal.department_limit
    ]


async def take_back(member_id: UUID, principal: Principal) -> schemas.AssignmentResult:
    """A manager takes back a member whose protection period passed without service."""
    settings = await get_rep_settings()
    member = await members.get_member(member_id, principal)
    async with db.transaction() as conn:
        assignment = await conn.fetchrow(
            "SELECT * FROM assignments WHERE member = $1 AND ended_at IS NULL FOR UPDATE",
            member_id,
        )
        if assignment is None:
            raise Conflict("this member is in the pool already")
        check_manages(principal, await department_of(conn, assignment["rep"]))
        protected_until = assignment["started_at"] + timedelta(days=settings.protection_days)
        served = await conn.fetchval(
            "SELECT 1 FROM contacts WHERE member = $1 AND staff = $2"
            " AND occurred_at >= $3 AND occurred_at < $4",
            member_id,
            assignment["rep"],
            assignment["started_at"],
            protected_until,
        )
        if served or protected_until > now():
            raise Conflict(
                "only an assignment without a service record after its protection period"
                " can be taken back"
            )
        await reassign(
            conn,
            [member.id],
            None,
            kind="reclaim",
            reason="no service record in the protection period",
            by=principal.label,
            approved_by=principal.label,
            end_reason="reclaim:protection",
        )
    return schemas.AssignmentResult(assigned=0, rep_id=None)
