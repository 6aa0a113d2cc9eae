"""Handovers: a rep who leaves or changes department hands every member to the manager's
queue; each must be reassigned within `handover_days` (never back to the rep who left),
else the general managers are told."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.reps import schemas
from loyalty.reps.assignments import active_rep, check_levels, check_manages, reassign
from loyalty.reps.notices import notify_staff
from loyalty.reps.settings import get_rep_settings


async def hand_over(rep_id: UUID, *, reason: str, department: str | None, by: str) -> int:
    """A rep left (or moved): every member goes to the department manager's handover queue."""
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        member_ids = [
            row["id"]
            for row in await conn.fetch(
                "SELECT id FROM members WHERE assigned_rep = $1 ORDER BY id", rep_id
            )
        ]
        if not member_ids:
            return 0
        await reassign(
            conn,
            member_ids,
            None,
            kind="handover",
            reason=f"the rep's {reason}",
            by=by,
            end_reason=f"handover:{reason}",
        )
        await conn.execute(
            """
            INSERT INTO handovers (id, member, from_rep, department, reason, created_at, due_at)
            SELECT gen_random_uuid(), m, $2, $3, $4, now(), now() + make_interval(days => $5)
            FROM unnest($1::uuid[]) AS m
            ON CONFLICT DO NOTHING
            """,
            member_ids,
            rep_id,
            department,
            reason,
            settings.handover_days,
        )
    return len(member_ids)


async def handover_queue(principal: Principal) -> list[schemas.HandoverItem]:
    if not principal.can("reps:assign"):
        raise PermissionDenied("the handover queue is for managers")
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT h.*, m.number, m.name, s.username FROM handovers h
            JOIN members m ON m.id = h.member JOIN staff s ON s.id = h.from_rep
            WHERE h.resolved_at IS NULL AND ($1::text IS NULL OR h.department = $1)
            ORDER BY h.due_at
            """,
            principal.department_limit,
        )
    return [
        db.from_row(
            schemas.HandoverItem,
            row,
            member_id=row["member"],
            from_rep=row["username"],
            overdue=row["due_at"] < now(),
            escalated=row["escalated_at"] is not None,
        )
        for row in rows
    ]


async def resolve_handover(
    handover_id: UUID, data: schemas.TransferCreate, principal: Principal
) -> schemas.AssignmentResult:
    """Give a handed-over member to a new rep (never back to the one who left)."""
    if data.rep_id is None:
        raise InvalidInput("name the rep who takes over", field="rep_id")
    async with db.transaction() as conn:
        handover = await conn.fetchrow(
            "SELECT * FROM handovers WHERE id = $1 FOR UPDATE", handover_id
        )
        if handover is None or (
            principal.department_limit is not None
            and handover["department"] != principal.department_limit
        ):
            raise NotFound("no such handover in your queue")
        if handover["resolved_at"] is not None:
            raise Conflict("this handover is done already")
        if data.rep_id == handover["from_rep"]:
            raise Conflict("a member cannot be handed back to the rep who left", field="rep_id")
        rep = await active_rep(conn, data.rep_id)
        check_manages(principal, rep["department"])
        await check_levels(conn, rep, [handover["member"]], await get_rep_settings(conn))
        await reassign(
            conn,
            [handover["member"]],
            rep["id"],
            kind="handover",
            reason=data.reason,
            by=principal.label,
            approved_by=principal.label,
        )
        await _close_handover(conn, handover["member"], principal)
    return schemas.AssignmentResult(assigned=1, rep_id=rep["id"])


async def _close_handover(conn: asyncpg.Connection, member_id: UUID, principal: Principal) -> None:
    await conn.execute(
        """
        UPDATE handovers SET resolved_at = now(), resolved_by = $2
        WHERE member = $1 AND resolved_at IS NULL
        """,
        member_id,
        principal.label,
    )


async def escalate_handovers() -> int:
    """Handovers past their deadline go to every general manager, once."""
    async with db.transaction() as conn:
        overdue = await conn.fetch(
            """
            UPDATE handovers h SET escalated_at = now()
            FROM members m
            WHERE m.id = h.member AND h.resolved_at IS NULL AND h.escalated_at IS NULL
              AND h.due_at < now()
            RETURNING h.id, h.member, h.department, m.number, m.name
            """
        )
        bosses = await conn.fetch("SELECT id FROM staff WHERE role = 'general_manager' AND active")
        for row in overdue:
            await notify_staff(
                conn,
                [boss["id"] for boss in bosses],
                kind="handover_overdue",
                key=f"handover:{row['id']}",
                title=f"Handover overdue: {row['name']} ({row['number']})",
                body=f"Department {row['department'] or '-'} has not reassigned this member"
                " in time.",
                member_id=row["member"],
            )
    return len(overdue)
