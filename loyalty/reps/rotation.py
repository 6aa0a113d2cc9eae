"""Book rotation: every few months a department's members move to other reps, so that no rep
becomes the relationship. The platform proposes; the manager previews, adjusts and applies
it in one step (atomically; applying twice changes nothing more).

The proposal takes the most constrained members first, then by value, and gives each to the
eligible rep
(level high enough for the member's tier, never one who served the member before, not the
current one) carrying the least load so far (member count first, then value), so books stay
balanced by count and value. A member with no eligible rep stays, with the reason noted.
Each moved member gets an introduction task for the new rep."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import local_today
from loyalty.reps import schemas
from loyalty.reps.assignments import active_rep, check_levels, check_manages, reassign
from loyalty.reps.notices import department_managers, notify_staff
from loyalty.reps.settings import get_rep_settings, level_below


async def _candidates(conn: asyncpg.Connection, department: str) -> list[Any]:
    return await conn.fetch(
        """
        SELECT id, username, level FROM staff
        WHERE role = 'rep' AND active AND department = $1 ORDER BY username
        """,
        department,
    )


async def propose(data: schemas.RotationCreate, principal: Principal) -> schemas.RotationOut:
    check_manages(principal, data.department)
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        reps = await _candidates(conn, data.department)
        if len(reps) < 2:
            raise InvalidInput("a rotation needs at least two active reps", field="department")
        members = await _books(conn, reps)
        rotation_id = await conn.fetchval(
            """
            INSERT INTO rotations (id, department, status, created_by, created_at)
            VALUES (gen_random_uuid(), $1, 'proposed', $2, now()) RETURNING id
            """,
            data.department,
            principal.label,
        )
        moves = _plan_moves(members, reps, settings)
        await conn.executemany(
            """
            INSERT INTO rotation_moves (id, rotation, member, from_rep, to_rep, value, note)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6)
            """,
            [
                (rotation_id, m["id"], m["assigned_rep"], to, str(m["value"]), note)
                for m, to, note in moves
            ],
        )
    return await get_rotation(rotation_id, principal)


async def _books(conn: asyncpg.Connection, reps: list[Any]) -> list[Any]:
    """The reps' active members, each with tier, last-12-months value and every rep who
    ever served them, most valuable first."""
    return await conn.fetch(
        """
        SELECT m.id, m.assigned_rep, t.tier,
            coalesce((SELECT sum(p.total - p.returned_amount) FROM purchases p
                      WHERE p.member = m.id
                        AND p.occurred_at >= now() - interval '12 months'), 0) AS value,
            ARRAY(SELECT DISTINCT a.rep FROM assignments a WHERE a.member = m.id) AS served_by
        FROM members m JOIN member_tiers t ON t.member = m.id
        WHERE m.assigned_rep = ANY($1::uuid[]) AND m.status = 'active'
        ORDER BY value DESC, m.number
        """,
        [rep["id"] for rep in reps],
    )


def _plan_moves(
    members: list[Any], reps: list[Any], settings: schemas.RepSettings
) -> list[tuple[Any, UUID | None, str]]:
    """(member, new rep or None, note) for every member: the balancing the module describes."""
    load = {rep["id"]: [0, Decimal(0)] for rep in reps}

    def eligible(member: Any) -> list[Any]:
        needed = settings.tier_min_level.get(member["tier"])
        return [
            rep
            for rep in reps
            if rep["id"] not in member["served_by"] and not level_below(rep["level"], needed)
        ]

    # Members who cannot move stay where they are and count in their rep's load first;
    # then the rest go to the least loaded eligible rep.
    moves: list[tuple[Any, UUID | None, str]] = []
    for member in members:
        if not eligible(member):
            load[member["assigned_rep"]][0] += 1
            load[member["assigned_rep"]][1] += member["value"]
            moves.append((member, None, "no eligible rep who has not served this member"))
    # The most constrained first (fewest eligible reps), then the most valuable.
    movable = sorted(
        (m for m in members if eligible(m)), key=lambda m: (len(eligible(m)), -m["value"])
    )
    chosen: dict[UUID, UUID] = {}
    for member in movable:
        rep = min(eligible(member), key=lambda r: (*load[r["id"]], r["username"]))
        chosen[member["id"]] = rep["id"]
        load[rep["id"]][0] += 1
        load[rep["id"]][1] += member["value"]
    # Greedy choices can leave one book two larger than another: move members from the
    # fullest books to eligible emptier ones until no move narrows the gap.
    improved = True
    while improved:
        improved = False
        for member in movable:
            current = chosen[member["id"]]
            for rep in eligible(member):
                if load[rep["id"]][0] + 1 < load[current][0]:
                    for side, sign in ((current, -1), (rep["id"], 1)):
                        load[side][0] += sign
                        load[side][1] += sign * member["value"]
                    chosen[member["id"]] = rep["id"]
                    improved = True
                    break
    return moves + [(member, chosen[member["id"]], "") for member in movable]


async def get_rotation(rotation_id: UUID, principal: Principal) -> schemas.RotationOut:
    async with db.connection() as conn:
        rotation = await conn.fetchrow("SELECT * FROM rotations WHERE id = $1", rotation_id)
        if rotation is None:
            raise NotFound("no such rotation")
        check_manages(principal, rotation["department"])
        rows = await conn.fetch(
            """
            SELECT r.*, m.number, m.name, t.tier, f.username AS from_name, f.level AS from_level,
                n.username AS to_name
            FROM rotation_moves r JOIN members m ON m.id = r.member
            JOIN member_tiers t ON t.member = r.member
            JOIN staff f ON f.id = r.from_rep LEFT JOIN staff n ON n.id = r.to_rep
            WHERE r.rotation = $1 ORDER BY r.value::numeric DESC, m.number
            """,
            rotation_id,
        )
        reps = await _candidates(conn, rotation["department"])
    loads = {rep["username"]: [rep["level"], 0, 0, Decimal(0), Decimal(0)] for rep in reps}
    for row in rows:
        value = Decimal(row["value"])
        before = loads.setdefault(
            row["from_name"], [row["from_level"], 0, 0, Decimal(0), Decimal(0)]
        )
        before[1] += 1
        before[3] += value
        after = loads.get(row["to_name"] or row["from_name"])
        if after is not None:
            after[2] += 1
            after[4] += value
    return db.from_row(
        schemas.RotationOut,
        rotation,
        moves=[
            db.from_row(
                schemas.RotationMoveOut,
                row,
                member_id=row["member"],
                value=Decimal(row["value"]),
                from_rep=row["from_name"],
                to_rep=row["to_name"],
                to_rep_id=row["to_rep"],
            )
            for row in rows
        ],
        loads=[
            schemas.RepLoad(
                rep=name,
                level=level,
                members_before=before,
                members_after=after,
                value_before=value_before,
                value_after=value_after,
            )
            for name, (level, before, after, value_before, value_after) in sorted(loads.items())
        ],
    )


async def _locked_rotation(
    conn: asyncpg.Connection, rotation_id: UUID, principal: Principal
) -> Any:
    """The rotation, locked for a change by the manager of its department (or above)."""
    rotation = await conn.fetchrow("SELECT * FROM rotations WHERE id = $1 FOR UPDATE", rotation_id)
    if rotation is None:
        raise NotFound("no such rotation")
    check_manages(principal, rotation["department"])
    return rotation


async def adjust(
    rotation_id: UUID, member_id: UUID, data: schemas.RotationMoveUpdate, principal: Principal
) -> schemas.RotationOut:
    """The manager gives one member of the proposal to another rep (same rules apply)."""
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        rotation = await _locked_rotation(conn, rotation_id, principal)
        if rotation["status"] != "proposed":
            raise Conflict(f"this rotation is {rotation['status']}")
        move = await conn.fetchrow(
            "SELECT r.*, t.tier FROM rotation_moves r JOIN member_tiers t ON t.member = r.member"
            " WHERE r.rotation = $1 AND r.member = $2",
            rotation_id,
            member_id,
        )
        if move is None:
            raise NotFound("this member is not in the rotation")
        rep = {r["id"]: r for r in await _candidates(conn, rotation["department"])}.get(data.rep_id)
        if rep is None:
            raise InvalidInput("is not an active rep of the department", field="rep_id")
        served = await conn.fetchval(
            "SELECT 1 FROM assignments WHERE member = $1 AND rep = $2", member_id, data.rep_id
        )
        if served:
            raise Conflict("this rep served the member before", field="rep_id")
        needed = settings.tier_min_level.get(move["tier"])
        if level_below(rep["level"], needed):
            raise Conflict(f"{move['tier']} members need a {needed} rep", field="rep_id")
        await conn.execute(
            "UPDATE rotation_moves SET to_rep = $3, note = 'adjusted by the manager'"
            " WHERE rotation = $1 AND member = $2",
            rotation_id,
            member_id,
            data.rep_id,
        )
    return await get_rotation(rotation_id, principal)


async def apply(rotation_id: UUID, principal: Principal) -> schemas.RotationOut:
    """Every move at once; a member who changed hands since the proposal is left alone."""
    settings = await get_rep_settings()
    async with db.transaction() as conn:
        rotation = await _locked_rotation(conn, rotation_id, principal)
        if rotation["status"] == "applied":
            return await get_rotation(rotation_id, principal)  # applying twice: nothing more
        if rotation["status"] != "proposed":
            raise Conflict(f"this rotation is {rotation['status']}")
        moves = await conn.fetch(
            """
            SELECT r.member, r.to_rep FROM rotation_moves r JOIN members m ON m.id = r.member
            WHERE r.rotation = $1 AND r.to_rep IS NOT NULL AND m.assigned_rep = r.from_rep
            ORDER BY r.member
            """,
            rotation_id,
        )
        for move in moves:
            # The rep and the member may have changed since the proposal: left, moved, or
            # the member's tier rose above the rep's level. Nothing is applied then.
            rep = await active_rep(conn, move["to_rep"])
            if rep["department"] != rotation["department"]:
                raise Conflict(
                    f"{rep['username']} is no longer in {rotation['department']}; propose again"
                )
            await check_levels(conn, rep, [move["member"]], settings)
            await reassign(
                conn,
                [move["member"]],
                move["to_rep"],
                kind="rotation",
                reason=f"rotation of {rotation['department']}",
                by=principal.label,
                approved_by=principal.label,
            )
        due = local_today() + timedelta(days=settings.introduction_days)
        await conn.execute(
            """
            INSERT INTO follow_ups (id, member, rep, rule, due_on, created_at)
            SELECT gen_random_uuid(), m, r, 'introduction', $3, now()
            FROM unnest($1::uuid[], $2::uuid[]) AS x(m, r)
            ON CONFLICT DO NOTHING
            """,
            [move["member"] for move in moves],
            [move["to_rep"] for move in moves],
            due,
        )
        await conn.execute(
            "UPDATE rotations SET status = 'applied', applied_by = $2, applied_at = now()"
            " WHERE id = $1",
            rotation_id,
            principal.label,
        )
    return await get_rotation(rotation_id, principal)


async def remind_due_rotations() -> int:
    """Managers of departments whose books have not rotated for `rotation_months` are told,
    once a month."""
    settings = await get_rep_settings()
    month = local_today().strftime("%Y-%m")
    async with db.transaction() as conn:
        due = await conn.fetch(
            """
            SELECT DISTINCT s.department FROM staff s
            WHERE s.role = 'rep' AND s.active AND s.department IS NOT NULL
              AND NOT EXISTS (
                SELECT 1 FROM rotations r WHERE r.department = s.department
                  AND r.status = 'applied'
                  AND r.applied_at > now() - make_interval(months => $1))
            """,
            settings.rotation_months,
        )
        told = 0
        for row in due:
            managers = await department_managers(conn, row["department"])
            await notify_staff(
                conn,
                managers,
                kind="rotation_due",
                key=f"rotation:{row['department']}:{month}",
                title=f"Time to rotate the books of {row['department']}",
                body=f"No rotation in the last {settings.rotation_months} months.",
            )
            told += len(managers)
    return told
