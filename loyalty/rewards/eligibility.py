"""What a member may redeem now, at what price, and for the rest the reason why not. The
redemption itself checks the same rules (`redemptions.py`), under the member's lock."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, DomainError, InvalidInput
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.members import service as members
from loyalty.rewards import schemas
from loyalty.rewards.catalog import REWARD_SELECT, reward_schema
from loyalty.tiers import service as tiers

# Why a member cannot redeem a reward (yet), in the order they are reported.
EXPLANATIONS = {
    "inactive": "this reward is not offered at the moment",
    "not_started": "this reward cannot be redeemed yet",
    "ended": "this reward can no longer be redeemed",
    "tier_too_low": "this reward is for {tiers} members",
    "limit_reached": "the limit of {limit} per member is reached",
    "out_of_stock": "this reward is out of stock",
    "points_in_debt": "points owed from a return ({debt}) must be repaid first",
    "not_enough_points": "{missing} more available points are needed",
}
# Failures a member can change by waiting or earning are conflicts with the current state.
UNPROCESSABLE = {"inactive", "not_started", "ended", "tier_too_low"}

# The member ($1) and the duplicates merged into them: one person for per-member limits.
SAME_PERSON = "SELECT $1::uuid UNION ALL SELECT id FROM members WHERE merged_into = $1"


def blockers(
    reward: Any,
    *,
    tier: str,
    available: int,
    debt: int,
    redeemed: int,
    quantity: int,
    at: datetime,
    tier_names: dict[str, str],
    unit_cost: int,
) -> list[tuple[str, str]]:
    """Why `quantity` of this reward cannot be redeemed now, as (reason, explanation) pairs
    in the order they are reported; empty when it can."""
    found: list[tuple[str, str]] = []

    def add(reason: str, **details: Any) -> None:
        found.append((reason, EXPLANATIONS[reason].format(**details)))

    if not reward["active"]:
        add("inactive")
    if reward["valid_from"] and at < reward["valid_from"]:
        add("not_started")
    if reward["valid_until"] and at >= reward["valid_until"]:
        add("ended")
    eligible = list(reward["eligible_tiers"] or [])
    if eligible and tier not in eligible:
        add("tier_too_low", tiers=", ".join(tier_names.get(code, code) for code in eligible))
    limit = reward["per_member_limit"]
    if limit is not None and redeemed + quantity > limit:
        add("limit_reached", limit=limit)
    in_stock = reward["stock"] if reward["stock"] is not None else None
    if reward["voucher_source"] == "pool":
        pool = reward["vouchers_left"]
        in_stock = pool if in_stock is None else min(in_stock, pool)
    if in_stock is not None and in_stock < quantity:
        add("out_of_stock")
    if debt > 0:
        add("points_in_debt", debt=debt)
    cost = unit_cost * quantity
    if available < cost:
        add("not_enough_points", missing=cost - available)
    return found


def refusal(reason: str, explanation: str) -> DomainError:
    """The error a redemption answers with when `reason` blocks it."""
    error_type = InvalidInput if reason in UNPROCESSABLE else Conflict
    field = "quantity" if reason in {"limit_reached", "out_of_stock"} else "reward_id"
    return error_type(f"{explanation} ({reason})", field=field)


async def offer_prices(conn: asyncpg.Connection, member_id: UUID) -> dict[UUID, int]:
    """Rewards this member may redeem for fewer points now, through a live reward_price offer
    addressed to them: reward id -> points per item (the lowest offer wins). Marketing owns
    the offers; rewards reads them here because marketing already builds on rewards."""
    rows = await conn.fetch(
        """
        SELECT o.reward, min(o.reward_points_cost) AS cost
        FROM offers o JOIN offer_audience a ON a.offer = o.id AND a.member = $1
        WHERE o.benefit = 'reward_price' AND o.status IN ('sending', 'sent')
          AND now() >= o.valid_from AND now() < o.valid_until
        GROUP BY o.reward
        """,
        member_id,
    )
    return {row["reward"]: int(row["cost"]) for row in rows}


async def member_catalog(member_id: UUID, principal: Principal) -> schemas.MemberCatalog:
    """Rewards on offer to this member now: those they may redeem, and for the rest the
    reason they cannot yet."""
    await members.get_member(member_id, principal)
    ladder = await tiers.ladder()
    tier_names = {t.code: t.name for t in ladder.tiers}
    at = now()
    async with db.connection() as conn:
        account = await conn.fetchrow(
            "SELECT available, debt FROM points_accounts WHERE member = $1", member_id
        )
        tier = await conn.fetchval("SELECT tier FROM member_tiers WHERE member = $1", member_id)
        rows = await conn.fetch(
            f"""
            {REWARD_SELECT}
            WHERE r.active AND (r.valid_until IS NULL OR r.valid_until > $1)
            ORDER BY r.points_cost, r.name
            """,
            at,
        )
        redeemed = dict(
            await conn.fetch(
                f"""
                SELECT reward, sum(quantity) FROM redemptions
                WHERE member IN ({SAME_PERSON}) AND status <> 'cancelled' GROUP BY reward
                """,
                member_id,
            )
        )
        prices = await offer_prices(conn, member_id)
    items = []
    for row in rows:
        unit_cost = min(row["points_cost"], prices.get(row["id"], row["points_cost"]))
        found = blockers(
            row,
            tier=tier,
            available=account["available"],
            debt=account["debt"],
            redeemed=redeemed.get(row["id"], 0),
            quantity=1,
            at=at,
            tier_names=tier_names,
            unit_cost=unit_cost,
        )
        items.append(
            schemas.CatalogItem(
                points_cost=unit_cost,
                reward=reward_schema(row),
                redeemable=not found,
                reasons=[reason for reason, _ in found],
                explanations=[text for _, text in found],
            )
        )
    return schemas.MemberCatalog(
        member_id=member_id, available_points=account["available"], tier=tier, items=items
    )
