"""Writing member archives set-based: new `members` rows with their member numbers, their
change records, and the gaps an import fills in existing archives. Enrolment (one member) and
imports (a chunk) both create through here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from loyalty.infrastructure.clock import now
from loyalty.members.service import new_member_number, plain

COLUMNS = (
    "id, number, kind, status, name, phone, email, gender, birthday, address, household,"
    " hobbies, consumption_preferences, notes, tags, organisation, contact_preferences,"
    " occupation, source, relationship_strength, registered_at, registration_channel,"
    " registered_by, registered_by_staff, assigned_rep, merged_into, updated_at"
)
# What a new archive holds where nothing was given (as the table's own defaults).
BLANK: dict[str, Any] = {
    "kind": "person",
    "status": "active",
    "phone": None,
    "email": None,
    "gender": None,
    "birthday": None,
    "address": None,
    "household": None,
    "hobbies": [],
    "consumption_preferences": [],
    "notes": "",
    "tags": [],
    "organisation": None,
    "contact_preferences": {},
    "occupation": "",
    "source": "",
    "relationship_strength": None,
    "assigned_rep": None,
    "merged_into": None,
}


@dataclass
class NewMember:
    """An archive to create: its fields as plain values (JSON-ready), `registered_at` among
    them when known; the id and member number it gets."""

    values: dict[str, Any]
    id: UUID = field(default_factory=uuid4)
    number: str = field(default_factory=new_member_number)


async def insert_members(
    conn: asyncpg.Connection,
    new: list[NewMember],
    *,
    channel: str,
    registered_by: str,
    registered_by_staff: UUID | None = None,
) -> None:
    """The `members` rows, in one statement; a member number taken meanwhile (about 1 in
    1,000 at a million members) is drawn again (`NewMember.number` then says which). A phone
    or email taken meanwhile raises UniqueViolationError."""
    at = now()
    waiting = list(new)
    for _attempt in range(20):
        rows = [
            BLANK
            | {"registered_at": at}
            | member.values
            | {
                "id": member.id,
                "number": member.number,
                "registration_channel": channel,
                "registered_by": registered_by,
                "registered_by_staff": registered_by_staff,
                "updated_at": at,
            }
            for member in waiting
        ]
        inserted = await conn.fetch(
            f"""
            INSERT INTO members ({COLUMNS})
            SELECT {COLUMNS} FROM jsonb_populate_recordset(NULL::members, $1::jsonb)
            ON CONFLICT (number) DO NOTHING
            RETURNING id
            """,
            msgspec.json.encode(rows).decode(),
        )
        done = {row["id"] for row in inserted}
        waiting = [member for member in waiting if member.id not in done]
        if not waiting:
            return
        for member in waiting:
            member.number = new_member_number()
    raise RuntimeError("could not find free member numbers")


async def record_creations(
    conn: asyncpg.Connection,
    created: list[tuple[UUID, dict[str, Any]]],
    *,
    actor: str,
    actor_staff: UUID | None = None,
) -> None:
    """The change record of each new archive: every field given, from nothing."""
    await conn.execute(
        """
        INSERT INTO member_changes (id, member, action, actor, actor_staff, changes, at)
        SELECT gen_random_uuid(), c.member, 'create', $3, $4, c.changes, now()
        FROM unnest($1::uuid[], $2::jsonb[]) AS c(member, changes)
        """,
        [member_id for member_id, _ in created],
        [
            msgspec.json.encode(
                {k: {"old": None, "new": plain(v)} for k, v in fields.items() if v}
            ).decode()
            for _, fields in created
        ],
        actor,
        actor_staff,
    )


async def fill_archives(
    conn: asyncpg.Connection, updates: list[tuple], changes: list[tuple], *, actor: str
) -> None:
    """Existing archives with their gaps filled, and the change record of each: `updates` as
    (id, name, phone, email, gender, birthday, address json, notes, tags, assigned_rep,
    registered_at), `changes` as (change id, member, changes json)."""
    if not updates:
        return
    await conn.executemany(
        """
        UPDATE members SET name = $2, phone = $3, email = $4, gender = $5, birthday = $6,
            address = $7::jsonb, notes = $8, tags = $9, assigned_rep = $10,
            registered_at = $11, updated_at = now()
        WHERE id = $1
        """,
        updates,
    )
    await conn.executemany(
        """
        INSERT INTO member_changes (id, member, action, actor, actor_staff, changes, at)
        VALUES ($1, $2, 'update', $4, NULL, $3::jsonb, now())
        """,
        [(*change, actor) for change in changes],
    )
