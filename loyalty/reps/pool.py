"""The public pool: members no rep serves (and not waiting in a handover queue), handed out
by a manager to a rep of the department with the approval recorded. A rep in their first
month gets none, and a rep gets at most `daily_pool_cap` pool members a day (checked in
`assignments.check_pool_hand_out`, which a transfer of a pool member passes too)."""

from __future__ import annotations

from loyalty.auth import Principal
from loyalty.errors import Conflict, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.reps import schemas
from loyalty.reps.assignments import (
    active_rep,
    check_levels,
    check_manages,
    check_pool_hand_out,
    reassign,
)
from loyalty.reps.settings import get_rep_settings


async def pool(principal: Principal, limit: int = 100) -> list[schemas.PoolMember]:
    """Unassigned members not waiting in a handover queue, longest waiting first."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("the pool is handed out by managers")
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT m.id, m.number, m.name, t.tier,
                (SELECT max(a.ended_at) FROM assignments a WHERE a.member = m.id) AS since
            FROM members m JOIN member_tiers t ON t.member = m.id
            WHERE m.assigned_rep IS NULL AND m.status = 'active'
              AND NOT EXISTS (SELECT 1 FROM handovers h
                              WHERE h.member = m.id AND h.resolved_at IS NULL)
            ORDER BY since NULLS FIRST, m.registered_at LIMIT $1
            """,
            limit,
        )
    return [
        schemas.PoolMember(r["id"], r["number"], r["name"], r["tier"], r["since"]) for r in rows
    ]


async def assign_from_pool(
    data: schemas.PoolAssignmentCreate, principal: Principal
) -> schemas.AssignmentResult:
    """A manager hands pool members to a rep of the department, with the approval recorded."""
    settings = await get_rep_settings()
    at = now()
    async with db.transaction() as conn:
        rep = await active_rep(conn, data.rep_id)
        check_manages(principal, rep["department"])
        ids = sorted(set(data.member_ids))
        await check_pool_hand_out(conn, rep, len(ids), settings, at, cap_field="member_ids")
        rows = await conn.fetch(
            """
            SELECT m.id FROM members m
            WHERE m.id = ANY($1::uuid[]) AND m.assigned_rep IS NULL AND m.status = 'active'
              AND NOT EXISTS (SELECT 1 FROM handovers h
                              WHERE h.member = m.id AND h.resolved_at IS NULL)
            FOR UPDATE OF m
            """,
            ids,
        )
        if len(rows) != len(ids):
            missing = sorted(set(ids) - {row["id"] for row in rows})
            raise Conflict(
                f"not in the pool: {', '.join(str(m) for m in missing[:5])}", field="member_ids"
            )
        await check_levels(conn, rep, ids, settings)
        await reassign(
            conn,
            ids,
            rep["id"],
            kind="pool",
            reason=data.reason,
            by=principal.label,
            approved_by=principal.label,
        )
    return schemas.AssignmentResult(assigned=len(ids), rep_id=rep["id"])
