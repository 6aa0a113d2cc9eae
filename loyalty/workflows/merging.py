"""Merging a duplicate member into a survivor, in one transaction: the archives (members),
points, lots and purchases (points), the tier (tiers) and the referrals (referrals).
Nothing is lost: the duplicate is kept, marked merged, and the merge is recorded."""

from __future__ import annotations

from uuid import UUID

from loyalty.auth import Principal
from loyalty.infrastructure import db
from loyalty.members import merging as archives
from loyalty.members import schemas
from loyalty.members import service as members
from loyalty.points import ledger
from loyalty.points import service as points
from loyalty.referrals import service as referrals
from loyalty.tiers import changes as tiers


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
