"""Swaps: two reps exchange a member each, asked for by one of them (or a manager) and
approved by the manager (the general manager's across departments)."""

from __future__ import annotations

from uuid import UUID

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.infrastructure import db
from loyalty.reps import schemas
from loyalty.reps.assignments import (
    active_rep,
    check_levels,
    check_manages,
    department_of,
    reassign,
)
from loyalty.reps.settings import get_rep_settings


async def request_swap(data: schemas.SwapCreate, principal: Principal) -> schemas.Swap:
    """A pending request for the same two members is answered again rather than asked
    twice (a double submit asks once): the members' rows are locked while checking."""
    async with db.transaction() as conn:
        rows = {
            row["id"]: row
            for row in await conn.fetch(
                "SELECT id, assigned_rep FROM members WHERE id = ANY($1::uuid[]) FOR UPDATE",
                [data.member_a, data.member_b],
            )
        }
        a, b = rows.get(data.member_a), rows.get(data.member_b)
        if a is None or b is None or a["assigned_rep"] is None or b["assigned_rep"] is None:
            raise InvalidInput("both members must be served by a rep", field="member_b")
        if a["assigned_rep"] == b["assigned_rep"]:
            raise InvalidInput("both members have the same rep", field="member_b")
        mine = principal.id in (a["assigned_rep"], b["assigned_rep"])
        if not mine and not principal.can("reps:assign"):
            raise PermissionDenied("a rep can only ask to swap one of their own members")
        pending = await conn.fetchval(
            """
            SELECT id FROM swap_requests WHERE status = 'pending'
              AND ((member_a = $1 AND member_b = $2) OR (member_a = $2 AND member_b = $1))
            """,
            data.member_a,
            data.member_b,
        )
        if pending is not None:
            return await get_swap(pending)
        swap_id = await conn.fetchval(
            """
            INSERT INTO swap_requests (id, member_a, rep_a, member_b, rep_b, reason,
                requested_by, status, created_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, 'pending', now()) RETURNING id
            """,
            data.member_a,
            a["assigned_rep"],
            data.member_b,
            b["assigned_rep"],
            data.reason,
            principal.label,
        )
    return await get_swap(swap_id)


async def get_swap(swap_id: UUID) -> schemas.Swap:
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM swap_requests WHERE id = $1", swap_id)
    if row is None:
        raise NotFound("no such swap request")
    return db.from_row(schemas.Swap, row)


async def list_swaps(principal: Principal, status: str | None) -> list[schemas.Swap]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT w.id FROM swap_requests w
            JOIN staff a ON a.id = w.rep_a JOIN staff b ON b.id = w.rep_b
            WHERE ($1::text IS NULL OR w.status = $1)
              AND ($2::text IS NULL OR a.department = $2 OR b.department = $2)
              AND ($3::uuid IS NULL OR $3 IN (w.rep_a, w.rep_b))
            ORDER BY w.created_at DESC
            """,
            status,
            principal.department_limit,
            principal.id if principal.role == "rep" else None,
        )
    return [await get_swap(row["id"]) for row in rows]


async def decide_swap(
    swap_id: UUID, approve: bool, data: schemas.SwapDecisionCreate, principal: Principal
) -> schemas.Swap:
    """The manager decides a swap within a department; across departments, the next level
    up (a general manager) does."""
    async with db.transaction() as conn:
        swap = await conn.fetchrow("SELECT * FROM swap_requests WHERE id = $1 FOR UPDATE", swap_id)
        if swap is None:
            raise NotFound("no such swap request")
        departments = {
            await department_of(conn, swap["rep_a"]),
            await department_of(conn, swap["rep_b"]),
        }
        if len(departments) > 1:
            if not principal.can("departments:all"):
                raise PermissionDenied("a swap across departments needs a general manager")
        else:
            check_manages(principal, departments.pop())
        if swap["status"] != "pending":
            raise Conflict(f"this swap was {swap['status']} already")
        status = "refused"
        if approve:
            current = dict(
                await conn.fetch(
                    "SELECT id, assigned_rep FROM members WHERE id = ANY($1::uuid[]) FOR UPDATE",
                    [swap["member_a"], swap["member_b"]],
                )
            )
            if (
                current.get(swap["member_a"]) != swap["rep_a"]
                or current.get(swap["member_b"]) != swap["rep_b"]
            ):
                raise Conflict("the members changed hands since the request; ask again")
            moves = ((swap["member_a"], swap["rep_b"]), (swap["member_b"], swap["rep_a"]))
            settings = await get_rep_settings(conn)
            for member, rep in moves:
                await check_levels(conn, await active_rep(conn, rep), [member], settings)
            for member, rep in moves:
                await reassign(
                    conn,
                    [member],
                    rep,
                    kind="swap",
                    reason=swap["reason"],
                    by=swap["requested_by"],
                    approved_by=principal.label,
                )
            status = "approved"
        await conn.execute(
            """
            UPDATE swap_requests SET status = $2, decided_by = $3, decided_at = now(),
                decision_note = $4 WHERE id = $1
            """,
            swap_id,
            status,
            principal.label,
            data.note,
        )
    return await get_swap(swap_id)
