"""Redemption that can never overdraw, its cancellation and fulfilment.

A redemption runs in one transaction: the member's points account is locked first (so one
member's redemptions are serialised and the balance read is the balance spent), the checks
run, then stock is taken with a conditional UPDATE (so the hot reward row is locked only
from that point to commit and can never go below zero), vouchers are taken from the pool
with SKIP LOCKED, and the points leave through a ledger entry, oldest lots first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.members import service as members
from loyalty.members import visibility
from loyalty.points import ledger
from loyalty.points.service import get_rules
from loyalty.rewards import schemas
from loyalty.rewards.catalog import REWARD_SELECT
from loyalty.rewards.eligibility import (
    EXPLANATIONS,
    SAME_PERSON,
    blockers,
    offer_prices,
    refusal,
)
from loyalty.rewards.vouchers import issue_codes
from loyalty.tiers import service as tiers
from loyalty.webhooks import service as webhooks


def _redemption_schema(row: Any, **extra: Any) -> schemas.Redemption:
    return db.from_row(
        schemas.Redemption,
        row,
        member_id=row["member"],
        reward_id=row["reward"],
        codes=row["codes"] or [],
        **extra,
    )


_REDEMPTION_SELECT = """
SELECT d.*, r.name AS reward_name, r.kind FROM redemptions d JOIN rewards r ON r.id = d.reward
"""


async def redeem(
    member_id: UUID, data: schemas.RedemptionCreate, principal: Principal
) -> tuple[schemas.Redemption, bool]:
    """Spend the member's available points on a reward; (redemption, created)."""
    await members.get_member(member_id, principal)
    key = f"{member_id}:{data.idempotency_key}"
    request_hash = hashlib.sha256(f"{data.reward_id}|{data.quantity}".encode()).hexdigest()
    tier_names = {t.code: t.name for t in (await tiers.ladder()).tiers}
    at = now()
    async with db.transaction() as conn:
        account = await ledger.lock_account(conn, member_id)
        if account.merged_into is not None:
            raise Conflict("this member was merged; redeem for the survivor", field="member_id")
        previous = await _previous(conn, key, request_hash)
        if previous is not None:
            return _redemption_schema(previous, replayed=True), False
        reward, unit_cost = await _checked_reward(conn, account, data, tier_names, at)
        await _take_stock(conn, reward, data.quantity)
        points = unit_cost * data.quantity
        redemption_id = uuid4()
        await conn.execute(
            """
            INSERT INTO redemptions (id, member, reward, quantity, points, status, codes,
                idempotency_key, request_hash, requested_by, created_at, stock_taken)
            VALUES ($1, $2, $3, $4, $5, 'requested', '{}', $6, $7, $8, $9, $10)
            """,
            redemption_id,
            member_id,
            data.reward_id,
            data.quantity,
            points,
            key,
            request_hash,
            principal.label,
            at,
            reward["stock"] is not None,
        )
        codes = await issue_codes(conn, reward, redemption_id, data.quantity)
        if codes:
            await conn.execute(
                "UPDATE redemptions SET codes = $2 WHERE id = $1", redemption_id, codes
            )
        await _spend(
            conn,
            account,
            redemption_id,
            points,
            f"{data.quantity} x {reward['name']}",
            at=at,
            actor=principal.label,
        )
        await _announce(conn, member_id, redemption_id, data, points)
        row = await conn.fetchrow(f"{_REDEMPTION_SELECT} WHERE d.id = $1", redemption_id)
    return _redemption_schema(row, balance_after=account.available), True


async def _previous(conn: asyncpg.Connection, key: str, request_hash: str) -> Any | None:
    """The redemption already made with this idempotency key, if it asked for the same."""
    previous = await conn.fetchrow(f"{_REDEMPTION_SELECT} WHERE d.idempotency_key = $1", key)
    if previous is not None and previous["request_hash"] != request_hash:
        raise Conflict(
            "a different redemption was already made with this idempotency_key",
            field="idempotency_key",
        )
    return previous


async def _checked_reward(
    conn: asyncpg.Connection,
    account: ledger.Account,
    data: schemas.RedemptionCreate,
    tier_names: dict[str, str],
    at: datetime,
) -> tuple[Any, int]:
    """The reward and its points per item for this member, or the first reason they may not
    redeem it; read under the member's lock, so nothing changes before the points leave."""
    member_id = account.member_id
    reward = await conn.fetchrow(f"{REWARD_SELECT} WHERE r.id = $1", data.reward_id)
    if reward is None:
        raise InvalidInput("no such reward", field="reward_id")
    tier = await conn.fetchval("SELECT tier FROM member_tiers WHERE member = $1", member_id)
    redeemed = await conn.fetchval(
        f"""
        SELECT coalesce(sum(quantity), 0) FROM redemptions
        WHERE member IN ({SAME_PERSON}) AND reward = $2 AND status <> 'cancelled'
        """,
        member_id,
        data.reward_id,
    )
    # A live reward_price offer addressed to this member lowers the cost.
    unit_cost = min(
        reward["points_cost"],
        (await offer_prices(conn, member_id)).get(reward["id"], reward["points_cost"]),
    )
    found = blockers(
        reward,
        tier=tier,
        available=account.available,
        debt=account.debt,
        redeemed=redeemed,
        quantity=data.quantity,
        at=at,
        tier_names=tier_names,
        unit_cost=unit_cost,
    )
    if found:
        raise refusal(*found[0])
    return reward, unit_cost


async def _take_stock(conn: asyncpg.Connection, reward: Any, quantity: int) -> None:
    if reward["stock"] is None:
        return
    taken = await conn.fetchval(
        """
        UPDATE rewards SET stock = stock - $2 WHERE id = $1 AND stock >= $2
        RETURNING stock
        """,
        reward["id"],
        quantity,
    )
    if taken is None:
        raise refusal("out_of_stock", EXPLANATIONS["out_of_stock"])


async def _spend(
    conn: asyncpg.Connection,
    account: ledger.Account,
    redemption_id: UUID,
    points: int,
    note: str,
    *,
    at: datetime,
    actor: str,
) -> None:
    """The points leave through one ledger entry, from available lots only."""
    entry = ledger.NewEntry(
        account.member_id,
        -points,
        kind="redemption",
        cause_type="redemption",
        cause_id=str(redemption_id),
        key=f"redemption:{redemption_id}",
        occurred_at=at,
        actor=actor,
        note=note,
    )
    await ledger.insert_entries(conn, [entry])
    await ledger.consume(conn, account, points, order=ledger.AVAILABLE_ONLY)
    await ledger.save_account(conn, account)


async def _announce(
    conn: asyncpg.Connection,
    member_id: UUID,
    redemption_id: UUID,
    data: schemas.RedemptionCreate,
    points: int,
) -> None:
    # Through the outbox, so the webhook goes out only if the redemption commits.
    if await webhooks.subscribed("redemption.created"):
        await events.record(
            conn,
            "redemption.created",
            {
                "redemption_id": str(redemption_id),
                "reward_id": str(data.reward_id),
                "quantity": data.quantity,
                "points": points,
            },
            member_id,
        )


async def _locked_redemption(
    conn: asyncpg.Connection, redemption_id: UUID, principal: Principal
) -> tuple[Any, ledger.Account]:
    row = await conn.fetchrow("SELECT member FROM redemptions WHERE id = $1", redemption_id)
    if row is None:
        raise NotFound("no such redemption")
    await members.get_member(row["member"], principal)
    # A redemption made before its member was merged: the points live with the survivor.
    account = await ledger.lock_current_account(conn, row["member"])
    redemption = await conn.fetchrow(
        f"{_REDEMPTION_SELECT} WHERE d.id = $1 FOR UPDATE OF d", redemption_id
    )
    return redemption, account


async def cancel(
    redemption_id: UUID, data: schemas.CancellationCreate, principal: Principal
) -> schemas.Redemption:
    """Give the points back (a new ledger entry, spendable at once) and the stock; pool
    vouchers not yet handed over go back to the pool."""
    rules = await get_rules()
    async with db.transaction() as conn:
        redemption, account = await _locked_redemption(conn, redemption_id, principal)
        if redemption["status"] == "cancelled":
            raise Conflict("this redemption is already cancelled")
        if redemption["status"] != "requested" and not principal.is_staff:
            raise PermissionDenied("a fulfilled redemption can only be cancelled by staff")
        at = now()
        entry = ledger.NewEntry(
            account.member_id,
            redemption["points"],
            kind="reversal",
            cause_type="redemption",
            cause_id=str(redemption_id),
            key=f"redemption:{redemption_id}:cancel",
            occurred_at=at,
            actor=principal.label,
            note=data.reason,
        )
        await ledger.earn(
            conn, account, entry, now=at, pending_days=0, expiry_months=rules.expiry_months
        )
        await ledger.save_account(conn, account)
        if redemption["stock_taken"]:  # put back only what was taken
            await conn.execute(
                "UPDATE rewards SET stock = stock + $2 WHERE id = $1 AND stock IS NOT NULL",
                redemption["reward"],
                redemption["quantity"],
            )
        if redemption["status"] == "requested":
            await conn.execute(
                "UPDATE reward_vouchers SET redemption = NULL WHERE redemption = $1",
                redemption_id,
            )
        await conn.execute(
            """
            UPDATE redemptions SET status = 'cancelled', cancelled_at = $2, cancelled_by = $3,
                cancel_reason = $4
            WHERE id = $1
            """,
            redemption_id,
            at,
            principal.label,
            data.reason,
        )
        row = await conn.fetchrow(f"{_REDEMPTION_SELECT} WHERE d.id = $1", redemption_id)
    return _redemption_schema(row, balance_after=account.available)


async def fulfil(redemption_id: UUID, principal: Principal) -> schemas.Redemption:
    async with db.transaction() as conn:
        redemption, _ = await _locked_redemption(conn, redemption_id, principal)
        if redemption["status"] != "requested":
            raise Conflict(
                f"only a requested redemption can be fulfilled; this one is {redemption['status']}"
            )
        await conn.execute(
            """
            UPDATE redemptions SET status = 'fulfilled', fulfilled_at = now(), fulfilled_by = $2
            WHERE id = $1
            """,
            redemption_id,
            principal.label,
        )
        row = await conn.fetchrow(f"{_REDEMPTION_SELECT} WHERE d.id = $1", redemption_id)
    return _redemption_schema(row)


async def get_redemption(redemption_id: UUID, principal: Principal) -> schemas.Redemption:
    async with db.connection() as conn:
        row = await conn.fetchrow(f"{_REDEMPTION_SELECT} WHERE d.id = $1", redemption_id)
    if row is None:
        raise NotFound("no such redemption")
    try:
        await members.get_member(row["member"], principal)
    except NotFound:
        raise NotFound("no such redemption") from None
    return _redemption_schema(row)


async def member_redemptions(member_id: UUID, principal: Principal) -> list[schemas.Redemption]:
    await members.get_member(member_id, principal)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"{_REDEMPTION_SELECT} WHERE d.member = $1 ORDER BY d.created_at DESC", member_id
        )
    return [_redemption_schema(row) for row in rows]


STATUSES = ("requested", "fulfilled", "cancelled")


@dataclass(frozen=True)
class QueuedRedemption:
    """A redemption in the work list, with the member it is for."""

    redemption: schemas.Redemption
    member_name: str
    member_number: str


async def list_redemptions(
    principal: Principal,
    *,
    status: str | None = "requested",
    reward_id: UUID | None = None,
    limit: int = 200,
) -> list[QueuedRedemption]:
    """Redemptions to work through, oldest first (the first asked, the first served), of the
    members `principal` may see; `status` None means every status."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"must be one of {', '.join(STATUSES)}", field="status")
    visible, args = visibility.condition(principal, "m", first=4)
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"""
            SELECT d.*, r.name AS reward_name, r.kind, m.name AS member_name,
                m.number AS member_number
            FROM redemptions d JOIN rewards r ON r.id = d.reward
            JOIN members m ON m.id = d.member
            WHERE ($1::text IS NULL OR d.status = $1) AND ($2::uuid IS NULL OR d.reward = $2)
              AND {visible}
            ORDER BY d.created_at, d.id LIMIT $3
            """,
            status,
            reward_id,
            limit,
            *args,
        )
    return [
        QueuedRedemption(_redemption_schema(row), row["member_name"], row["member_number"])
        for row in rows
    ]
