"""The members' share of merging a duplicate into a survivor: the archives (the survivor's
blanks filled from the duplicate's), the person's sign-in and contact history, and the
change records. Points, tiers and referrals move in their own domains
(`loyalty.workflows.merging` runs them all in one transaction)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.infrastructure.clock import now
from loyalty.members import schemas
from loyalty.members.service import fetch_member, stored
from loyalty.members.tables import Member, MemberChange


def check_merge(survivor_id: UUID, data: schemas.MergeCreate, principal: Principal) -> None:
    if not principal.can("members:merge"):
        raise PermissionDenied("only an admin can merge members")
    if survivor_id == data.duplicate_id:
        raise InvalidInput("a member cannot be merged into itself", field="duplicate_id")


async def lock_pair(survivor_id: UUID, duplicate_id: UUID) -> tuple[Any, Any]:
    """Both archives, locked, and both still active. NO KEY UPDATE still lets concurrent
    purchases reference these members."""
    rows = await Member.raw(
        "SELECT * FROM members WHERE id = ANY({}) ORDER BY id FOR NO KEY UPDATE",
        [survivor_id, duplicate_id],
    )
    by_id = {row["id"]: row for row in rows}
    survivor, duplicate = by_id.get(survivor_id), by_id.get(duplicate_id)
    if survivor is None:
        raise NotFound("no member with that id")
    if duplicate is None:
        raise InvalidInput("no member with that id", field="duplicate_id")
    for row, field in ((survivor, "member_id"), (duplicate, "duplicate_id")):
        if row["status"] != "active":
            raise Conflict("this member was already merged", field=field)
    return survivor, duplicate


def _taken_from_duplicate(survivor: dict[str, Any], duplicate: dict[str, Any]) -> dict[str, Any]:
    """What the survivor's archive takes from the duplicate's (plain values): its blanks
    filled, lists and notes combined, consent for channels it has none for."""
    taken: dict[str, Any] = {}
    blanks = ["phone", "email", "gender", "birthday", "address", "household"]
    if survivor["kind"] == duplicate["kind"] == "organisation":
        blanks.append("organisation")
    for field in blanks:
        if not survivor[field] and duplicate[field]:
            taken[field] = duplicate[field]
    for field in ("hobbies", "consumption_preferences", "tags"):
        combined = survivor[field] + [v for v in duplicate[field] if v not in survivor[field]]
        if field == "tags":
            combined = sorted(combined)
        if combined != survivor[field]:
            taken[field] = combined
    if duplicate["notes"] and duplicate["notes"] not in survivor["notes"]:
        taken["notes"] = "\n\n".join(n for n in (survivor["notes"], duplicate["notes"]) if n)
    mine, theirs = survivor["contact_preferences"], duplicate["contact_preferences"]
    consented = {c["channel"] for c in mine["consents"]}
    preferences = {
        "channels": mine["channels"] + [c for c in theirs["channels"] if c not in mine["channels"]],
        "consents": mine["consents"]
        + [c for c in theirs["consents"] if c["channel"] not in consented],
    }
    if mine.get("language") or theirs.get("language"):
        preferences["language"] = mine.get("language") or theirs.get("language")
    if preferences != mine:
        taken["contact_preferences"] = preferences
    return taken


async def archive_changes(survivor_id: UUID, duplicate_id: UUID) -> dict[str, dict[str, Any]]:
    """What merging would change in the survivor's archive, old and new (reads only)."""
    before = msgspec.to_builtins(await fetch_member(survivor_id))
    taken = _taken_from_duplicate(before, msgspec.to_builtins(await fetch_member(duplicate_id)))
    return {f: {"old": before[f], "new": v} for f, v in taken.items()}


async def fold_archives(
    conn: asyncpg.Connection, survivor_id: UUID, duplicate_id: UUID
) -> dict[str, dict[str, Any]]:
    """Mark the duplicate merged and fill the survivor's archive from it; the person's
    contact history and portal sign-in go with them. The fields changed, old and new."""
    before = msgspec.to_builtins(await fetch_member(survivor_id))
    taken = _taken_from_duplicate(before, msgspec.to_builtins(await fetch_member(duplicate_id)))
    # The duplicate gives up its phone and email first: they are unique.
    await Member.update(
        {
            Member.status: "merged",
            Member.merged_into: survivor_id,
            Member.phone: None,
            Member.email: None,
            Member.updated_at: now(),
        }
    ).where(Member.id == duplicate_id)
    await Member.update(
        {getattr(Member, f): stored(f, v) for f, v in taken.items()} | {Member.updated_at: now()}
    ).where(Member.id == survivor_id)
    await conn.execute(
        "UPDATE contacts SET member = $2 WHERE member = $1", duplicate_id, survivor_id
    )
    # A password only where the survivor has none.
    await conn.execute(
        """
        UPDATE member_credentials SET member = $2 WHERE member = $1
          AND NOT EXISTS (SELECT 1 FROM member_credentials WHERE member = $2)
        """,
        duplicate_id,
        survivor_id,
    )
    await conn.execute("DELETE FROM member_credentials WHERE member = $1", duplicate_id)
    return {f: {"old": before[f], "new": v} for f, v in taken.items()}


async def repoint_merged(conn: asyncpg.Connection, duplicate_id: UUID, survivor_id: UUID) -> None:
    """Members merged into the duplicate earlier now point at the survivor (one hop)."""
    await conn.execute(
        "UPDATE members SET merged_into = $2 WHERE merged_into = $1", duplicate_id, survivor_id
    )


async def record_merge(
    survivor_id: UUID,
    duplicate: Any,
    data: schemas.MergeCreate,
    principal: Principal,
    details: dict[str, Any],
) -> None:
    """The change records of both: what the survivor took, and where the duplicate went."""
    actor_staff = principal.id if principal.is_staff else None
    await MemberChange.insert(
        MemberChange(
            member=survivor_id,
            action="merge",
            actor=principal.label,
            actor_staff=actor_staff,
            changes=details,
        ),
        MemberChange(
            member=duplicate["id"],
            action="merged_into",
            actor=principal.label,
            actor_staff=actor_staff,
            changes={"survivor_id": str(survivor_id), "reason": data.reason},
        ),
    )
    # Ids, counts and field names only: the trail is append-only, so it must hold nothing an
    # erasure would have to remove (the values stay in member_changes, which erasure scrubs).
    await audit.record(
        "members.merge",
        "member",
        survivor_id,
        before={"duplicate_id": duplicate["id"], "duplicate_number": duplicate["number"]},
        after={
            "points_moved": details.get("points_moved"),
            "purchases_moved": details.get("purchases_moved"),
            "fields_taken": sorted(details.get("fields") or ()),
        },
    )
