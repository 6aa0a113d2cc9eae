"""Matching a chunk's survivors to members already in the database, set-based: staged with
COPY, matched by phone or email, the matched members' empty fields filled, the rest created."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from loyalty.imports import creation, duplicates
from loyalty.imports.creation import Run
from loyalty.imports.rows import Row
from loyalty.infrastructure.clock import now
from loyalty.members import creation as archives
from loyalty.members.service import new_member_number
from loyalty.reps import assignments as reps

Conflicts = list[tuple[int, int, str, str, str]]  # (group, row, field, kept, offered)

STAGING_COLUMNS = (
    "import_id",
    "grp",
    "row_no",
    "new_id",
    "number",
    "kind",
    "name",
    "phone",
    "email",
    "gender",
    "birthday",
    "address",
    "notes",
    "tags",
    "registered_at",
    "rep",
)


async def stage_and_merge(
    conn: asyncpg.Connection,
    run: Run,
    survivors: list[Row],
    member_of: dict[int, UUID],
    number_of: dict[int, str],
    conflicts: Conflicts,
) -> int:
    """COPY the chunk's survivors into the staging table, match them to members by phone or
    email, fill the gaps of matched members, and create the rest. Returns members created."""
    await _stage(conn, run, survivors)
    matched, others = await _match(conn, run)
    if matched:
        await _fill_existing(conn, run, survivors, matched, others, conflicts)
        for g, cand in matched.items():
            member_of[g] = cand["id"]
            number_of[g] = cand["number"]
        await conn.execute(
            """
            UPDATE import_member_staging s SET member_id = v.id
            FROM unnest($2::int[], $3::uuid[]) AS v(grp, id)
            WHERE s.import_id = $1 AND s.grp = v.grp
            """,
            run.import_id,
            list(matched),
            [matched[g]["id"] for g in matched],
        )
    created = await creation.create_members(conn, run, survivors)
    for row in await conn.fetch(
        "SELECT grp, member_id, number FROM import_member_staging WHERE import_id = $1 "
        "AND member_id = new_id",
        run.import_id,
    ):
        member_of[row["grp"]] = row["member_id"]
        number_of[row["grp"]] = row["number"]
    await conn.execute("DELETE FROM import_member_staging WHERE import_id = $1", run.import_id)
    return created


async def _stage(conn: asyncpg.Connection, run: Run, survivors: list[Row]) -> None:
    """Each survivor with the id and member number it gets if it is new."""
    at = now()
    await conn.copy_records_to_table(
        "import_member_staging",
        columns=STAGING_COLUMNS,
        records=[
            (
                run.import_id,
                g,
                row.row_no,
                uuid4(),
                new_member_number(),
                row.kind,
                row.name,
                row.phone,
                row.email,
                row.gender,
                row.birthday,
                msgspec.json.encode(row.address).decode() if row.address else None,
                row.notes,
                row.tags,
                row.registered_at or at,
                row.rep,
            )
            for g, row in enumerate(survivors)
        ],
    )


async def _match(conn: asyncpg.Connection, run: Run) -> tuple[dict[int, Any], dict[int, list[Any]]]:
    """Per staged survivor, the earliest-registered member holding one of its phone or email
    (it survives), and any others holding the other one."""
    candidates = await conn.fetch(
        """
        SELECT x.grp, m.id, m.number, m.name, m.phone, m.email, m.gender, m.birthday,
               m.address::text AS address, m.notes, m.tags, m.registered_at, m.registered_by,
               m.assigned_rep
        FROM (
            SELECT s.grp, m.id FROM import_member_staging s JOIN members m ON m.phone = s.phone
            WHERE s.import_id = $1
            UNION
            SELECT s.grp, m.id FROM import_member_staging s JOIN members m ON m.email = s.email
            WHERE s.import_id = $1
        ) x JOIN members m ON m.id = x.id
        ORDER BY x.grp, m.registered_at, m.id
        FOR NO KEY UPDATE OF m
        """,
        run.import_id,
    )
    matched: dict[int, Any] = {}
    others: dict[int, list[Any]] = {}
    for cand in candidates:
        if cand["grp"] in matched:
            others.setdefault(cand["grp"], []).append(cand)
        else:
            matched[cand["grp"]] = cand
    return matched, others


def _existing_value(cand: Any, name: str) -> Any:
    if name == "rep":
        return cand["assigned_rep"]
    if name == "address":
        return msgspec.json.decode(cand["address"]) if cand["address"] else None
    return cand[name]


def _json(value: Any) -> Any:
    return msgspec.to_builtins(value)


@dataclass
class _Fills:
    """What filling the matched members writes, gathered for one statement each."""

    updates: list[tuple] = field(default_factory=list)
    changes: list[tuple] = field(default_factory=list)
    assignments: list[tuple[UUID, UUID]] = field(default_factory=list)


async def _fill_existing(
    conn: asyncpg.Connection,
    run: Run,
    survivors: list[Row],
    matched: dict[int, Any],
    others: dict[int, list[Any]],
    conflicts: Conflicts,
) -> None:
    """The member in the database survives: the file's values only fill its empty fields.
    (A member this same import created from a later registration gives way instead.)"""
    fills = _Fills()
    # Rows matching one member by different keys (one by phone, another by email) fill it
    # one after another, each from the member as the one before left it.
    state: dict[UUID, dict[str, Any]] = {}
    for g, found in matched.items():
        cand = state.setdefault(found["id"], dict(found))
        _fill_one(run, g, cand, survivors[g], others.get(g, []), conflicts, fills)
    await _write_fills(conn, run, fills)


def _fill_one(
    run: Run,
    g: int,
    cand: dict[str, Any],
    row: Row,
    others: list[Any],
    conflicts: Conflicts,
    fills: _Fills,
) -> None:
    """One row filling the member it matched (`cand`, updated in place)."""
    incoming_first = (
        cand["registered_by"] == run.label
        and row.registered_at is not None
        and row.registered_at < cand["registered_at"]
    )
    new = _new_values(g, cand, row, others, conflicts, incoming_first=incoming_first)
    registered_at = cand["registered_at"]
    if incoming_first:
        new["registered_at"] = registered_at = row.registered_at
    if not new:
        return
    if "rep" in new:
        fills.assignments.append((cand["id"], new["rep"]))
    merged = {
        "name": new.get("name", cand["name"]),
        "phone": new.get("phone", cand["phone"]),
        "email": new.get("email", cand["email"]),
        "gender": new.get("gender", cand["gender"]),
        "birthday": new.get("birthday", cand["birthday"]),
        "address": new.get("address", _existing_value(cand, "address")),
        "notes": new.get("notes", cand["notes"]),
        "tags": new.get("tags", cand["tags"]),
        "rep": new.get("rep", cand["assigned_rep"]),
    }
    address = msgspec.json.encode(merged["address"]).decode() if merged["address"] else None
    fills.updates.append(
        (
            cand["id"],
            merged["name"],
            merged["phone"],
            merged["email"],
            merged["gender"],
            merged["birthday"],
            address,
            merged["notes"],
            merged["tags"],
            merged["rep"],
            registered_at,
        )
    )
    fills.changes.append((uuid4(), cand["id"], _change_record(run, cand, row, new)))
    cand.update(
        {k: v for k, v in merged.items() if k not in ("rep", "address")},
        address=address,  # as the column reads back, for _existing_value
        assigned_rep=merged["rep"],
        registered_at=registered_at,
    )


def _new_values(
    g: int,
    cand: dict[str, Any],
    row: Row,
    others: list[Any],
    conflicts: Conflicts,
    *,
    incoming_first: bool,
) -> dict[str, Any]:
    """The fields the row gives the member; differing values it cannot give are conflicts."""
    taken = {v for o in others for v in (o["phone"], o["email"]) if v}
    new: dict[str, Any] = {}
    for name in duplicates.MERGED_FIELDS:
        kept, offered = _existing_value(cand, name), getattr(row, name)
        if offered in (None, "", {}) or kept == offered:
            continue
        if name in ("phone", "email") and offered in taken:
            owner = next(o for o in others if offered in (o["phone"], o["email"]))
            conflicts.append(
                (
                    g,
                    row.row_no,
                    name,
                    duplicates.display(kept),
                    f"{offered} (member {owner['number']})",
                )
            )
            continue
        if kept in (None, "", {}):
            new[name] = offered
        elif incoming_first:
            new[name] = offered
            conflicts.append(
                (g, row.row_no, name, duplicates.display(offered), duplicates.display(kept))
            )
        else:
            conflicts.append(
                (g, row.row_no, name, duplicates.display(kept), duplicates.display(offered))
            )
    tags = sorted(set(cand["tags"] or []) | set(row.tags))
    if tags != sorted(cand["tags"] or []):
        new["tags"] = tags[:30]
    return new


def _change_record(run: Run, cand: dict[str, Any], row: Row, new: dict[str, Any]) -> str:
    record = {
        name: {
            "old": duplicates.display(_existing_value(cand, name))
            if name not in ("tags", "registered_at")
            else _json(cand[name]),
            "new": _json(value) if name in ("tags", "registered_at") else duplicates.display(value),
        }
        for name, value in new.items()
    }
    record["import"] = {"old": None, "new": f"{run.file_name} row {row.row_no}"}
    return msgspec.json.encode(record).decode()


async def _write_fills(conn: asyncpg.Connection, run: Run, fills: _Fills) -> None:
    await archives.fill_archives(conn, fills.updates, fills.changes, actor=run.label)
    await reps.first_assignments(conn, fills.assignments, kind="import", by=run.label)
