"""The visit brief: everything a rep needs before a visit, in one call. A read model over
members, tiers, points, rewards, referrals and reps, so it sits above those domains."""

from __future__ import annotations

from uuid import UUID

from loyalty.auth import Principal
from loyalty.infrastructure import db
from loyalty.members import service as members
from loyalty.points import service as points
from loyalty.referrals import service as referrals
from loyalty.reps import schemas
from loyalty.reps.contacts import audit_view, contact_schema
from loyalty.reps.teams import service_team
from loyalty.rewards import eligibility as rewards
from loyalty.tiers import service as tiers


async def brief(member_id: UUID, principal: Principal) -> schemas.Brief:
    """Everything a rep needs before a visit, in one call."""
    member = await members.get_member(member_id, principal)
    await audit_view(principal, member_id, "brief")
    tier = await tiers.status(member_id, principal)
    balance = await points.balance(member_id, principal)
    catalog = await rewards.member_catalog(member_id, principal)
    made = await referrals.member_referrals(member_id, principal)
    async with db.connection() as conn:
        purchases = await conn.fetch(
            """
            SELECT external_id, occurred_at, store, total, returned_amount, points
            FROM purchases WHERE member = $1 ORDER BY occurred_at DESC LIMIT 5
            """,
            member_id,
        )
        contacts = await conn.fetch(
            "SELECT * FROM contacts WHERE member = $1 ORDER BY occurred_at DESC LIMIT 5",
            member_id,
        )
        follow_ups = await conn.fetch(
            "SELECT * FROM follow_ups WHERE member = $1 AND closed_at IS NULL ORDER BY due_on",
            member_id,
        )
        rep = await conn.fetchrow(
            "SELECT id, username, display_name FROM staff WHERE id = $1", member.assigned_rep_id
        )
    return schemas.Brief(
        member=member,
        rep=schemas.RepRef(rep["id"], rep["username"], rep["display_name"]) if rep else None,
        tier=tier.tier,
        tier_name=tier.name,
        service_level=tier.service_level,
        qualifying_value=tier.qualifying_value,
        needed_to_keep=tier.needed_to_keep,
        next_tier=tier.next_tier,
        points=balance,
        recent_purchases=[
            schemas.PurchaseLine(
                external_id=row["external_id"],
                occurred_at=row["occurred_at"],
                store=row["store"],
                total=row["total"],
                returned_amount=row["returned_amount"],
                points=row["points"],
            )
            for row in purchases
        ],
        last_contacts=[contact_schema(row) for row in contacts],
        open_follow_ups=[
            schemas.FollowUpRef(id=row["id"], rule=row["rule"], due_on=row["due_on"])
            for row in follow_ups
        ],
        redeemable_rewards=[item.reward.name for item in catalog.items if item.redeemable],
        referrals=made.stats,
        referred_by=made.referred_by.referrer_id if made.referred_by else None,
        service_team=(await service_team(member_id, principal)).people,
        executive_sponsor=tier.service_level.executive_sponsor_role,
    )
