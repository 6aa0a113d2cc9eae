"""Managers look after their department's reps: each rep's level (which tiers they may
serve, `rep_settings.tier_min_level`), and which upper-tier members still lack the named
service team or executive sponsor their tier's service level promises."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, NotFound, PermissionDenied
from loyalty.infrastructure import db
from loyalty.members import visibility
from loyalty.reps import schemas
from loyalty.reps.assignments import check_manages
from loyalty.staff import schemas as staff_schemas
from loyalty.staff import service as staff_service


async def department_reps(principal: Principal) -> list[schemas.DepartmentRep]:
    """The reps a manager manages (everyone's for those above), with their book size."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("managers look after reps' levels")
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT s.id, s.username, s.display_name, s.department, s.level, s.active,
                (SELECT count(*) FROM members m WHERE m.assigned_rep = s.id) AS members
            FROM staff s
            WHERE s.role = 'rep' AND ($1::text IS NULL OR s.department = $1)
            ORDER BY s.active DESC, s.department NULLS LAST, s.username
            """,
            principal.department_limit,
        )
    return [db.from_row(schemas.DepartmentRep, row) for row in rows]


async def set_level(
    staff_id: UUID, data: schemas.RepLevelUpdate, principal: Principal
) -> schemas.DepartmentRep:
    """A manager sets the level of a rep in the department (general managers anywhere)."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("managers set reps' levels")
    found = await staff_service.get_staff(staff_id)
    if found is None or found.role != "rep":
        raise NotFound("no rep with that id")
    if principal.department_limit is not None and found.department != principal.department_limit:
        raise NotFound("no rep with that id")  # another department's reps are not shown
    check_manages(principal, found.department)
    if found.level != data.level:
        await staff_service.apply_update(
            staff_id, staff_schemas.StaffUpdate(level=data.level), actor=principal
        )
    for rep in await department_reps(principal):
        if rep.id == staff_id:
            return rep
    raise InvalidInput("is not a rep you manage", field="staff_id")


async def upper_tier_members(principal: Principal, limit: int = 200) -> list[dict[str, Any]]:
    """Members the caller may see whose tier promises a named service team or an executive
    sponsor, with their team lead (None: nobody named yet), those without one first."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("managers look after service teams")
    seen, arguments = visibility.condition(principal, "m", first=2)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"""
            SELECT * FROM (
            SELECT m.id, m.number, m.name, td.code AS tier, td.rank, td.named_service_team,
                td.executive_sponsor_role, r.username AS rep,
                (SELECT s.display_name FROM service_team_members t JOIN staff s ON s.id = t.staff
                 WHERE t.member = m.id AND t.role = 'lead') AS lead,
                (SELECT count(*) FROM service_team_members t WHERE t.member = m.id) AS team_size
            FROM members m
            JOIN member_tiers t ON t.member = m.id
            JOIN tier_definitions td ON td.code = CASE
                WHEN t.override_tier IS NOT NULL
                    AND (t.override_until IS NULL OR t.override_until > now())
                THEN t.override_tier ELSE t.tier END
            LEFT JOIN staff r ON r.id = m.assigned_rep
            WHERE (td.named_service_team OR td.executive_sponsor_role IS NOT NULL)
                AND m.status = 'active' AND {seen}
            ) found
            ORDER BY lead IS NOT NULL, rank DESC, name
            LIMIT $1
            """,
            limit,
            *arguments,
        )
    return [dict(row) for row in rows]
