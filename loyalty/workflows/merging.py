"""Merging a duplicate member into a survivor, in one transaction: the archives (members),
points, lots and purchases (points), the tier (tiers) and the referrals (referrals).
Nothing is lost: the duplicate is kept, marked merged, and the merge is recorded."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from loyalty.auth import Principal
from loyalty.errors import Conflict
from loyalty.infrastructure import db
from loyalty.members import merging as archives
from loyalty.members import schemas
from loyalty.members import service as members
from loyalty.points import ledger
from loyalty.points import schemas as point_schemas
from loyalty.points import service as points
from loyalty.referrals import service as referrals
from loyalty.tiers import changes as tiers
from loyalty.tiers import service as tier_service


class MergeSide(msgspec.Struct):
    """One archive as the preview shows it, with what it holds besides the archive."""

    member: schemas.Member
    tier: str
    points: point_schemas.Balance
    purchases: int
    contacts: int


class MergePreview(msgspec.Struct):
    """What `merge_members` would do, computed without writing anything."""

    survivor: MergeSide
    duplicate: MergeSide
    fields: dict[str, dict[str, Any]]  # survivor fields that change: {"old", "new"}
    consents_taken: list[schemas.Consent]  # the duplicate's, for channels the survivor lacks
    points_after: int  # the survivor's total after the merge


async def _side(member_id: UUID, principal: Principal, field: str) -> MergeSide:
    member = await members.get_member(member_id, principal)
    if member.status != "active":
        raise Conflict("this member was already merged", field=field)
    async with db.connection() as conn:
        purchases = await conn.fetchval(
            "SELECT count(*) FROM purchases WHERE member = $1", member_id
        )
        contacts = await conn.fetchval("SELECT count(*) FROM contacts WHERE member = $1", member_id)
    return MergeSide(
        member=member,
        tier=(await tier_service.status(member_id, principal)).tier,
        points=await points.balance(member_id, principal),
        purchases=purchases,
        contacts=contacts,
    )


async def preview_merge(
    survivor_id: UUID, duplicate_id: UUID, principal: Principal
) -> MergePreview:
    """Both archives side by side, what moves to the survivor (points, purchases, contacts,
    consents) and which of its fields change. Reads only; the same checks as the merge."""
    archives.check_merge(
        survivor_id, schemas.MergeCreate(duplicate_id=duplicate_id, reason="preview"), principal
    )
    survivor = await _side(survivor_id, principal, "member_id")
    duplicate = await _side(duplicate_id, principal, "duplicate_id")
    fields = await archives.archive_changes(survivor_id, duplicate_id)
    consents = fields.get("contact_preferences", {}).get("new", {}).get("consents", [])
    mine = {c.channel for c in survivor.member.contact_preferences.consents}
    return MergePreview(
        survivor=survivor,
        duplicate=duplicate,
        fields=fields,
        consents_taken=[
            msgspec.convert(c, schemas.Consent) for c in consents if c["channel"] not in mine
        ],
        points_after=survivor.points.total + duplicate.points.total,
    )


async def merge_members(
    survivor_id: UUID, data: schemas.MergeCreate, principal: Principal
) -> schemas.MergeResult:
    """Fold a duplicate into the survivor: points, purchases and history move, nothing is lost."""
    archives.check_merge(survivor_id, data, principal)
    duplicate_id = data.duplicate_id
    async with db.transaction() as conn:
        # Lock order as in the ledger: points accounts first (in member-id order), then the
        # archives.
        await ledger.lock_accounts(conn, [survivor_id, duplicate_id])
        _, duplicate = await archives.lock_pair(survivor_id, duplicate_id)
        fields = await archives.fold_archives(conn, survivor_id, duplicate_id)
        moved = await points.merge_accounts(conn, duplicate_id, survivor_id, actor=principal.label)
        await archives.repoint_merged(conn, duplicate_id, survivor_id)
        await tiers.after_merge(conn, duplicate_id, survivor_id, principal.label)
        await referrals.after_merge(conn, duplicate_id, survivor_id)
        details = {
            "duplicate_id": str(duplicate_id),
            "duplicate_number": duplicate["number"],
            "reason": data.reason,
            "points_moved": moved["points"],
            "purchases_moved": moved["purchases"],
            "fields": fields,
            "duplicate_phone": duplicate["phone"],
            "duplicate_email": duplicate["email"],
        }
        await archives.record_merge(survivor_id, duplicate, data, principal, details)
    return schemas.MergeResult(
        survivor=await members.fetch_member(survivor_id),
        merged_member_id=duplicate_id,
        points_moved=moved["points"],
        purchases_moved=moved["purchases"],
    )
