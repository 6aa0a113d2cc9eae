"""Who serves each member: the one writer of assignments (`reassign`), the checks every move
passes (an active rep, a high enough level, the right manager, the pool's limits), a
manager's transfer and a member's assignment history.

At most one rep serves a member at a time (a unique index on open assignments); every
change closes one assignment and opens the next, with who, why and who approved."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, PermissionDenied
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import local_today, now
from loyalty.members import service as members
from loyalty.reps import schemas
from loyalty.reps.settings import get_rep_settings, level_below
from loyalty.settings import get_settings
from loyalty.webhooks import service as webhooks


async def reassign(
    conn: asyncpg.Connection,
    member_ids: list[UUID],
    rep_id: UUID | None,
    *,
    kind: str,
    reason: str,
    by: str,
    approved_by: str | None = None,
    end_reason: str | None = None,
) -> None:
    """Close the members' current assignments and open one with `rep_id` (None: the pool),
    inside the caller's transaction, recording the change on each archive."""
    if not member_ids:
        return
    previous = await conn.fetch(
        "SELECT id, assigned_rep FROM members WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
        member_ids,
    )
    await conn.execute(
        """
        UPDATE assignments SET ended_at = now(), end_reason = $2
        WHERE member = ANY($1::uuid[]) AND ended_at IS NULL
        """,
        member_ids,
        end_reason or kind,
    )
    if rep_id is not None:
        await conn.execute(
            """
            INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, approved_by,
                started_at)
            SELECT gen_random_uuid(), m, $2, $3, $4, $5, $6, now() FROM unnest($1::uuid[]) AS m
            """,
            member_ids,
            rep_id,
            kind,
            reason,
            by,
            approved_by,
        )
    await conn.execute(
        "UPDATE members SET assigned_rep = $2, updated_at = now() WHERE id = ANY($1::uuid[])",
        member_ids,
        rep_id,
    )
    # Open follow-ups are the new rep's (none in the pool) from now, not at the next plan.
    await conn.execute(
        "UPDATE follow_ups SET rep = $2 WHERE member = ANY($1::uuid[]) AND closed_at IS NULL",
        member_ids,
        rep_id,
    )
    await _record_reassignment(
        conn, previous, rep_id, kind=kind, reason=reason, by=by, approved_by=approved_by
    )
    await audit.record(
        f"assignments.{kind}",
        "member",
        member_ids[0] if len(member_ids) == 1 else None,
        before={str(row["id"]): row["assigned_rep"] for row in previous},
        after={"rep": rep_id, "members": member_ids, "approved_by": approved_by},
        summary=reason,
        conn=conn,
    )


async def _record_reassignment(
    conn: asyncpg.Connection,
    previous: list[Any],
    rep_id: UUID | None,
    *,
    kind: str,
    reason: str,
    by: str,
    approved_by: str | None,
) -> None:
    """Note each move on the member's archive, and tell webhooks (`member.reassigned`)."""
    if await webhooks.subscribed("member.reassigned"):
        await events.record_many(
            conn,
            "member.reassigned",
            [
                (
                    row["id"],
                    {
                        "from_rep": str(row["assigned_rep"]) if row["assigned_rep"] else None,
                        "to_rep": str(rep_id) if rep_id else None,
                        "kind": kind,
                    },
                )
                for row in previous
            ],
        )
    await conn.execute(
        """
        INSERT INTO member_changes (id, member, action, actor, changes, at)
        SELECT gen_random_uuid(), p.id, 'assign', $3,
            jsonb_build_object('assigned_rep', jsonb_build_object(
                'old', p.rep::text, 'new', $2::text, 'kind', $4::text, 'reason', $5::text,
                'approved_by', $6::text)),
            now()
        FROM unnest($1::uuid[], $7::uuid[]) AS p(id, rep)
        """,
        [row["id"] for row in previous],
        str(rep_id) if rep_id else None,
        by,
        kind,
        reason,
        approved_by,
        [row["assigned_rep"] for row in previous],
    )


FIRST_ASSIGNMENT_REASONS = {
    "registration": "enrolled by this rep",
    "referral": "the referrer's rep",
    "import": "named as the owner in an import",
}


async def first_assignments(
    conn: asyncpg.Connection, member_reps: list[tuple[UUID, UUID]], *, kind: str, by: str
) -> None:
    """The assignments new members start with, as (member, rep) pairs (the member rows
    already name the reps): one enrolment, or an import's chunk."""
    if member_reps:
        await conn.execute(
            """
            INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, started_at)
            SELECT gen_random_uuid(), v.member, v.rep, $3, $4, $5, now()
            FROM unnest($1::uuid[], $2::uuid[]) AS v(member, rep)
            """,
            [member for member, _ in member_reps],
            [rep for _, rep in member_reps],
            kind,
            FIRST_ASSIGNMENT_REASONS[kind],
            by,
        )


async def active_rep(conn: asyncpg.Connection, rep_id: UUID) -> Any:
    rep = await conn.fetchrow(
        "SELECT id, username, role, department, active, created_at, level FROM staff WHERE id = $1",
        rep_id,
    )
    if rep is None or rep["role"] != "rep" or not rep["active"]:
        raise InvalidInput("is not an active rep", field="rep_id")
    return rep


async def check_levels(
    conn: asyncpg.Connection, rep: Any, member_ids: list[UUID], settings: schemas.RepSettings
) -> None:
    """Upper tiers go only to reps of a high enough level (rep_settings.tier_min_level)."""
    rows = await conn.fetch(
        "SELECT m.number, t.tier FROM members m JOIN member_tiers t ON t.member = m.id"
        " WHERE m.id = ANY($1::uuid[]) ORDER BY m.number",
        member_ids,
    )
    for row in rows:
        needed = settings.tier_min_level.get(row["tier"])
        if level_below(rep["level"], needed):
            raise Conflict(
                f"{rep['username']} is a {rep['level']} rep; {row['tier']} members such as"
                f" {row['number']} need a {needed} rep",
                field="rep_id",
            )


def check_manages(principal: Principal, department: str | None) -> None:
    """Managers act in their own department; general managers and admins everywhere."""
    if principal.can("departments:all"):
        return
    limit = principal.department_limit
    if limit and department and limit == department:
        return
    raise PermissionDenied("only the manager of this department (or above) may do this")


async def check_pool_hand_out(
    conn: asyncpg.Connection,
    rep: Any,
    count: int,
    settings: schemas.RepSettings,
    at: datetime,
    *,
    cap_field: str,
) -> None:
    """The pool's rules for `count` members going to `rep`, whichever call hands them out:
    no pool members in a rep's first month, and at most the daily cap."""
    if rep["created_at"] > at - timedelta(days=settings.new_rep_days):
        raise Conflict(
            f"a rep gets no pool members in their first {settings.new_rep_days} days",
            field="rep_id",
        )
    # One hand-out at a time per rep: the daily cap is counted under this lock.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"pool:{rep['id']}")
    today_start = datetime.combine(local_today(at), datetime.min.time(), get_settings().tz)
    received = await conn.fetchval(
        "SELECT count(*) FROM assignments WHERE rep = $1 AND kind = 'pool' AND started_at >= $2",
        rep["id"],
        today_start,
    )
    if received + count > settings.daily_pool_cap:
        raise Conflict(
            f"a rep may receive {settings.daily_pool_cap} pool members a day;"
            f" {rep['username']} has {received} today",
            field=cap_field,
        )


async def transfer(
    member_id: UUID, data: schemas.TransferCreate, principal: Principal
) -> schemas.AssignmentResult:
    """A manager moves a member to another rep (or back to the pool); a member from the pool
    goes by the pool's rules."""
    if not principal.can("reps:assign"):
        raise PermissionDenied("reps cannot move members; ask your manager")
    await members.get_member(member_id, principal)
    async with db.transaction() as conn:
        current_rep = await conn.fetchval(
            "SELECT assigned_rep FROM members WHERE id = $1 FOR UPDATE", member_id
        )
        if await conn.fetchval(
            "SELECT 1 FROM handovers WHERE member = $1 AND resolved_at IS NULL", member_id
        ):
            # Its department's manager resolves it, never back to the rep who left.
            raise Conflict(
                "this member is waiting in a handover queue; resolve the handover instead",
                field="member_id",
            )
        departments = {await department_of(conn, current_rep)}
        if data.rep_id == current_rep:
            # Already there (a repeated PUT, a double submit): nothing moves, nothing is logged.
            for department in departments - {None}:
                check_manages(principal, department)
            return schemas.AssignmentResult(assigned=0, rep_id=current_rep)
        rep_id, kind = None, "transfer"
        if data.rep_id is not None:
            rep = await active_rep(conn, data.rep_id)
            settings = await get_rep_settings(conn)
            if current_rep is None:
                kind = "pool"
                await check_pool_hand_out(conn, rep, 1, settings, now(), cap_field="rep_id")
            await check_levels(conn, rep, [member_id], settings)
            departments.add(rep["department"])
            rep_id = rep["id"]
        for department in departments - {None}:
            check_manages(principal, department)
        await reassign(
            conn,
            [member_id],
            rep_id,
            kind=kind,
            reason=data.reason,
            by=principal.label,
            approved_by=principal.label,
        )
    return schemas.AssignmentResult(assigned=1, rep_id=rep_id)


async def department_of(conn: asyncpg.Connection, staff_id: UUID | None) -> str | None:
    if staff_id is None:
        return None
    return await conn.fetchval("SELECT department FROM staff WHERE id = $1", staff_id)


async def history(member_id: UUID, principal: Principal) -> list[schemas.AssignmentPeriod]:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT a.*, s.username FROM assignments a JOIN staff s ON s.id = a.rep
            WHERE a.member = $1 ORDER BY a.started_at DESC
            """,
            member_id,
        )
    return [
        schemas.AssignmentPeriod(
            rep_id=row["rep"],
            rep=row["username"],
            kind=row["kind"],
            reason=row["reason"],
            assigned_by=row["assigned_by"],
            approved_by=row["approved_by"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            end_reason=row["end_reason"],
        )
        for row in rows
    ]
