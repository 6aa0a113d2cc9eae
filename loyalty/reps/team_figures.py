"""Figures for the staff console: a rep's (or team's) members with their next follow-up and
reclaim date, contacts logged per rep per week, and members per tier per rep."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import local_today
from loyalty.members import visibility
from loyalty.reps.reclaim import DUE
from loyalty.reps.settings import get_rep_settings
from loyalty.settings import get_settings


def team_department(principal: Principal) -> str | None:
    """Managers see their department's figures; general managers and admins everyone's."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("team figures are for managers")
    return principal.department_limit


async def my_members_overview(principal: Principal, limit: int = 300) -> list[dict[str, Any]]:
    """Members served by a rep, of those the caller may see (`members.visibility`), each with
    tier, last contact, next open follow-up and the date the reclaim job would return them to
    the pool (`reclaim_on`, None if not due soon).
    Dicts with keys member_id, number, name, tier, rep, last_contact, next_follow_up,
    reclaim_on, reclaim_rule."""
    settings = await get_rep_settings()
    today = local_today()
    visible, args = visibility.condition(principal, "m", first=5)
    async with db.connection() as conn:
        rows = await conn.fetch(
            DUE
            + f"""
            , soon AS (
                SELECT DISTINCT ON (member) member, due_on, rule FROM due
                WHERE due_on <= $1::date + $4::int ORDER BY member, due_on
            )
            SELECT m.id, m.number, m.name, t.tier, s.username AS rep,
                (SELECT max(c.occurred_at) FROM contacts c WHERE c.member = m.id) AS last_contact,
                (SELECT min(f.due_on) FROM follow_ups f
                 WHERE f.member = m.id AND f.closed_at IS NULL) AS next_follow_up,
                soon.due_on AS reclaim_on, soon.rule AS reclaim_rule
            FROM members m JOIN member_tiers t ON t.member = m.id
            JOIN staff s ON s.id = m.assigned_rep
            LEFT JOIN soon ON soon.member = m.id
            WHERE m.status = 'active' AND {visible}
            ORDER BY soon.due_on NULLS LAST, next_follow_up NULLS LAST, m.name, m.id
            LIMIT $3
            """,
            today,
            get_settings().timezone,
            limit,
            settings.warning_days,
            *args,
        )
    return [
        {
            "member_id": row["id"],
            "number": row["number"],
            "name": row["name"],
            "tier": row["tier"],
            "rep": row["rep"],
            "last_contact": row["last_contact"],
            "next_follow_up": row["next_follow_up"],
            "reclaim_on": row["reclaim_on"],
            "reclaim_rule": row["reclaim_rule"],
        }
        for row in rows
    ]


async def team_activity(principal: Principal, weeks: int = 8) -> dict[str, Any]:
    """For a manager's team (the department's active reps; everyone's for general managers
    and admins): contacts logged per rep per week over the last `weeks` weeks (weeks start on
    Monday, business time zone), late logs in that period, and open follow-ups past due.
    Returns {"weeks": [date, ...], "reps": [{id, username, display_name, per_week: {date: n},
    contacts, late, overdue_tasks}, ...]}."""
    department = team_department(principal)
    today = local_today()
    first_week = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    tz = get_settings().tz
    since = datetime.combine(first_week, time(0), tz)
    async with db.connection() as conn:
        reps = await conn.fetch(
            """
            SELECT id, username, display_name FROM staff
            WHERE role = 'rep' AND active AND ($1::text IS NULL OR department = $1)
            ORDER BY username
            """,
            department,
        )
        ids = [rep["id"] for rep in reps]
        counts = await conn.fetch(
            """
            SELECT staff, date_trunc('week', occurred_at AT TIME ZONE $3)::date AS week,
                count(*) AS contacts, count(*) FILTER (WHERE late) AS late
            FROM contacts WHERE staff = ANY($1::uuid[]) AND occurred_at >= $2
            GROUP BY 1, 2
            """,
            ids,
            since,
            get_settings().timezone,
        )
        overdue = dict(
            await conn.fetch(
                """
                SELECT rep, count(*) FROM follow_ups
                WHERE rep = ANY($1::uuid[]) AND closed_at IS NULL AND due_on < $2
                GROUP BY rep
                """,
                ids,
                today,
            )
        )
    by_rep: dict[UUID, dict[str, Any]] = {
        rep["id"]: {
            "id": rep["id"],
            "username": rep["username"],
            "display_name": rep["display_name"],
            "per_week": {},
            "contacts": 0,
            "late": 0,
            "overdue_tasks": overdue.get(rep["id"], 0),
        }
        for rep in reps
    }
    for row in counts:
        entry = by_rep[row["staff"]]
        entry["per_week"][row["week"]] = row["contacts"]
        entry["contacts"] += row["contacts"]
        entry["late"] += row["late"]
    return {
        "weeks": [first_week + timedelta(days=7 * i) for i in range(weeks)],
        "reps": list(by_rep.values()),
    }


async def members_per_tier_per_rep(principal: Principal) -> list[dict[str, Any]]:
    """How many active members each rep of the team serves in each tier:
    [{"username", "display_name", "tiers": {tier code: count}, "total"}, ...]."""
    department = team_department(principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT s.id, s.username, s.display_name, t.tier, count(m.id) AS members
            FROM staff s
            LEFT JOIN members m ON m.assigned_rep = s.id AND m.status = 'active'
            LEFT JOIN member_tiers t ON t.member = m.id
            WHERE s.role = 'rep' AND s.active AND ($1::text IS NULL OR s.department = $1)
            GROUP BY s.id, s.username, s.display_name, t.tier
            ORDER BY s.username
            """,
            department,
        )
    reps: dict[UUID, dict[str, Any]] = {}
    for row in rows:
        entry = reps.setdefault(
            row["id"],
            {
                "username": row["username"],
                "display_name": row["display_name"],
                "tiers": {},
                "total": 0,
            },
        )
        if row["tier"] is not None:
            entry["tiers"][row["tier"]] = row["members"]
            entry["total"] += row["members"]
    return list(reps.values())
