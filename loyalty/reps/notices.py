"""Notices to staff (reclaim warnings, overdue handovers and follow-ups, outgrown reps): who
is told, the one writer of a notice, a staff user's own list, and marking them read."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import NotFound
from loyalty.infrastructure import db
from loyalty.reps import schemas


async def department_managers(conn: asyncpg.Connection, department: str | None) -> list[UUID]:
    """The active managers of a department: who is told about its members."""
    rows = await conn.fetch(
        "SELECT id FROM staff WHERE role = 'manager' AND active AND department = $1", department
    )
    return [row["id"] for row in rows]


async def notify_staff(
    conn: asyncpg.Connection,
    staff_ids: list[UUID],
    *,
    kind: str,
    key: str,
    title: str,
    body: str,
    member_id: UUID | None = None,
) -> None:
    """The same notice to each of `staff_ids`, once: `key` with the staff id appended is
    unique, so a job that runs twice tells nobody twice."""
    if not staff_ids:
        return
    await conn.executemany(
        """
        INSERT INTO staff_notices (id, staff, kind, key, title, body, member, created_at)
        VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, now())
        ON CONFLICT (key) DO NOTHING
        """,
        [(staff_id, kind, f"{key}:{staff_id}", title, body, member_id) for staff_id in staff_ids],
    )


async def notices(principal: Principal, unread_only: bool = False) -> list[schemas.Notice]:
    """The caller's own notices, newest first (the last 200)."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT * FROM staff_notices WHERE staff = $1 AND (NOT $2 OR read_at IS NULL)
            ORDER BY created_at DESC LIMIT 200
            """,
            principal.id,
            unread_only,
        )
    return [db.from_row(schemas.Notice, row, member_id=row["member"]) for row in rows]


async def mark_read(principal: Principal, notice_id: UUID) -> schemas.Notice:
    """One of the caller's own notices, read. Someone else's is as unknown as a missing one,
    so its existence is not told; marking twice keeps the first read time."""
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """
            UPDATE staff_notices SET read_at = coalesce(read_at, now())
            WHERE id = $1 AND staff = $2 RETURNING *
            """,
            notice_id,
            principal.id,
        )
    if row is None:
        raise NotFound("no such notice")
    return db.from_row(schemas.Notice, row, member_id=row["member"])


async def mark_all_read(principal: Principal) -> int:
    """Every unread notice of the caller's, read; how many were unread."""
    async with db.connection() as conn:
        status = await conn.execute(
            "UPDATE staff_notices SET read_at = now() WHERE staff = $1 AND read_at IS NULL",
            principal.id,
        )
    return int(status.split()[-1])


async def unread_count(principal: Principal) -> int:
    """The caller's unread notices: the badge in the console's navigation, on every page, so
    one COUNT on the indexed `staff` column."""
    async with db.connection() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM staff_notices WHERE staff = $1 AND read_at IS NULL",
            principal.id,
        )
