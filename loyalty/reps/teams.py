"""Service teams: upper-tier members get a named team, one lead (accountable) and colleagues
for service, settlement and operations."""

from __future__ import annotations

import json
from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.infrastructure import db
from loyalty.members import service as members
from loyalty.reps import schemas

# The sponsor is the executive the top tier promises (the tier names the role, a manager the
# person).
TEAM_ROLES = ("lead", "sponsor", "service", "settlement", "operations")


async def service_team(member_id: UUID, principal: Principal) -> schemas.ServiceTeam:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT t.staff, t.role, s.username, s.display_name FROM service_team_members t
            JOIN staff s ON s.id = t.staff WHERE t.member = $1
            ORDER BY array_position(ARRAY['lead', 'sponsor', 'service', 'settlement', 'operations'],
                                    t.role::text), s.username
            """,
            member_id,
        )
    return schemas.ServiceTeam(
        member_id=member_id,
        people=[db.from_row(schemas.TeamPerson, row, staff_id=row["staff"]) for row in rows],
    )


async def set_service_team(
    member_id: UUID, data: schemas.ServiceTeamUpdate, principal: Principal
) -> schemas.ServiceTeam:
    """Replace the member's service team: one lead (accountable) and named colleagues."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("managers set up service teams")
    member = await members.get_member(member_id, principal)
    people = [(data.lead_id, "lead")] + [(p.staff_id, p.role) for p in data.members]
    if len({staff for staff, _ in people}) != len(people):
        raise InvalidInput("each person once", field="members")
    async with db.transaction() as conn:
        found = {
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM staff WHERE id = ANY($1::uuid[]) AND active",
                [staff for staff, _ in people],
            )
        }
        for i, (staff, _) in enumerate(people):
            if staff not in found:
                field = "lead_id" if i == 0 else f"members[{i - 1}].staff_id"
                raise InvalidInput("is not an active staff member", field=field)
        await conn.execute("DELETE FROM service_team_members WHERE member = $1", member.id)
        await conn.executemany(
            """
            INSERT INTO service_team_members (id, member, staff, role, added_by, added_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, now())
            """,
            [(member.id, staff, role, principal.label) for staff, role in people],
        )
        await conn.execute(
            """
            INSERT INTO member_changes (id, member, action, actor, changes, at)
            VALUES (gen_random_uuid(), $1, 'service_team', $2, $3::jsonb, now())
            """,
            member.id,
            principal.label,
            json.dumps({"team": [{"staff": str(s), "role": r} for s, r in people]}),
        )
    return await service_team(member_id, principal)
