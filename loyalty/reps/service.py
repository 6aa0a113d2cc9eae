"""Members who outgrew their rep: a member whose tier needs a higher-level rep than the one
serving them is flagged to the department's managers, who reassign them."""

from __future__ import annotations

from typing import Any

from loyalty.auth import Principal
from loyalty.errors import PermissionDenied
from loyalty.infrastructure import db
from loyalty.reps import schemas
from loyalty.reps.notices import department_managers, notify_staff
from loyalty.reps.settings import get_rep_settings, level_below


async def reassignment_flags(principal: Principal) -> list[schemas.ReassignmentFlag]:
    """Members whose tier rose above their rep's level: to be reassigned by the manager."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("the reassignment flags are for managers")
    settings = await get_rep_settings()
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT m.id, m.number, m.name, t.tier, s.username, s.level, s.department
            FROM members m JOIN member_tiers t ON t.member = m.id
            JOIN staff s ON s.id = m.assigned_rep
            WHERE ($1::text IS NULL OR s.department = $1)
            ORDER BY m.number
            """,
            principal.department_limit,
        )
    flags = []
    for row in rows:
        needed = settings.tier_min_level.get(row["tier"])
        if level_below(row["level"], needed):
            flags.append(
                db.from_row(
                    schemas.ReassignmentFlag,
                    row,
                    member_id=row["id"],
                    rep=row["username"],
                    rep_level=row["level"],
                    needed_level=needed,
                )
            )
    return flags


async def flag_outgrown_rep(event: dict[str, Any]) -> None:
    """A member whose new tier needs a higher-level rep is flagged to the manager."""
    settings = await get_rep_settings()
    needed = settings.tier_min_level.get(event["payload"]["to_tier"])
    if not needed:
        return
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """
            SELECT m.number, m.name, s.username, s.level, s.department FROM members m
            JOIN staff s ON s.id = m.assigned_rep WHERE m.id = $1
            """,
            event["member"],
        )
        if row is None or not level_below(row["level"], needed):
            return
        await notify_staff(
            conn,
            await department_managers(conn, row["department"]),
            kind="reassignment_needed",
            key=f"outgrown:{event['id']}",
            title=f"{row['name']} ({row['number']}) is now {event['payload']['to_tier']}",
            body=f"{row['username']} is a {row['level']} rep; this tier needs a {needed} rep.",
            member_id=event["member"],
        )
