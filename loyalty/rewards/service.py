"""Rewards: the catalog, voucher pools, and redemption that can never overdraw.

A redemption runs in one transaction: the member's points account is locked first (so one
member's redemptions are serialised and the balance read is the balance spent), the checks
run, then stock is taken with a conditional UPDATE (so the hot reward row is locked only
from that point to commit and can never go below zero), vouchers are taken from the pool
with SKIP LOCKED, and the points leave through a ledger entry, oldest lots first.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from loyalty.auth import Principal
from loyalty.errors import Conflict, DomainError, InvalidInput, NotFound, PermissionDenied
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.members import service as members
from loyalty.points import ledger
from loyalty.points.service import get_rules
from loyalty.rewards import schemas
from loyalty.tiers import service as tiers
from loyalty.webhooks import service as webhooks

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_PREFIX = {"voucher": "V", "event_seat": "S"}

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
_SAME_PERSON = "SELECT $1::uuid UNION ALL SELECT id FROM members WHERE merged_into = $1"


def _reward_schema(row: Any) -> schemas.Reward:
    return schemas.Reward(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        image_url=row["image_url"],
        kind=row["kind"],
        points_cost=row["points_cost"],
        stock=row["stock"],
        valid_from=row["valid_from"],
        valid_until=row["valid_until"],
        eligible_tiers=list(row["eligible_tiers"] or []),
        per_member_limit=row["per_member_limit"],
        event_at=row["event_at"],
        voucher_source=row["voucher_source"],
        vouchers_left=row["vouchers_left"] if row["voucher_source"] == "pool" else None,
        active=row["active"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


_REWARD_SELECT = """
SELECT r.*,
    CASE WHEN r.voucher_source = 'pool' THEN (
        SELECT count(*) FROM reward_vouchers v WHERE v.reward = r.id AND v.redemption IS NULL
    ) END AS vouchers_left
FROM rewards r
"""


# --- catalog management -------------------------------------------------------------------


async def _check_reward(values: dict[str, Any]) -> None:
    if (
        values.get("valid_from")
        and values.get("valid_until")
        and values["valid_until"] <= values["valid_from"]
    ):
        raise InvalidInput("must be after valid_from", field="valid_until")
    if values.get("voucher_source") == "pool" and values.get("kind") != "voucher":
        raise InvalidInput("only voucher rewards take codes from a pool", field="voucher_source")
    if values.get("event_at") and values.get("kind") != "event_seat":
        raise InvalidInput("only event seats have an event date", field="event_at")
    known = {tier.code for tier in (await tiers.ladder()).tiers}
    for i, code in enumerate(values.get("eligible_tiers") or []):
        if code not in known:
            raise InvalidInput(f"no tier {code!r}", field=f"eligible_tiers[{i}]")


async def create_reward(data: schemas.RewardCreate, principal: Principal) -> schemas.Reward:
    values = msgspec.structs.asdict(data)
    values["eligible_tiers"] = sorted(set(data.eligible_tiers))
    await _check_reward(values)
    reward_id = uuid4()
    async with db.transaction() as conn:
        await conn.execute(
            """
            INSERT INTO rewards (id, name, description, image_url, kind, points_cost, stock,
                valid_from, valid_until, eligible_tiers, per_member_limit, event_at,
                voucher_source, active, created_at, updated_at, updated_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now(), now(),
                    $15)
            """,
            reward_id,
            values["name"],
            values["description"],
            values["image_url"],
            values["kind"],
            values["points_cost"],
            values["stock"],
            values["valid_from"],
            values["valid_until"],
            values["eligible_tiers"],
            values["per_member_limit"],
            values["event_at"],
            values["voucher_source"],
            values["active"],
            principal.label,
        )
    return await get_reward(reward_id)


async def update_reward(
    reward_id: UUID, data: schemas.RewardUpdate, principal: Principal
) -> schemas.Reward:
    changes = {
        name: value
        for name, value in msgspec.structs.asdict(data).items()
        if value is not msgspec.UNSET
    }
    if "eligible_tiers" in changes:
        changes["eligible_tiers"] = sorted(set(changes["eligible_tiers"]))
    async with db.transaction() as conn:
        row = await conn.fetchrow("SELECT * FROM rewards WHERE id = $1 FOR UPDATE", reward_id)
        if row is None:
            raise NotFound("no such reward")
        await _check_reward({**dict(row), **changes})
        if changes:
            names = list(changes)
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, 2))
            await conn.execute(
                f"UPDATE rewards SET {assignments}, updated_at = now(),"
                f" updated_by = ${len(names) + 2} WHERE id = $1",
                reward_id,
                *changes.values(),
                principal.label,
            )
    return await get_reward(reward_id)


async def get_reward(reward_id: UUID) -> schemas.Reward:
    async with db.connection() as conn:
        row = await conn.fetchrow(f"{_REWARD_SELECT} WHERE r.id = $1", reward_id)
    if row is None:
        raise NotFound("no such reward")
    return _reward_schema(row)


async def list_rewards(include_inactive: bool) -> list[schemas.Reward]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"{_REWARD_SELECT} WHERE r.active OR $1 ORDER BY r.points_cost, r.name",
            include_inactive,
        )
    return [_reward_schema(row) for row in rows]


async def import_vouchers(
    reward_id: UUID, data: schemas.VoucherImport, principal: Principal
) -> schemas.VoucherImportResult:
    """Add codes to a voucher reward's pool; codes already there are skipped."""
    async with db.transaction() as conn:
        reward = await conn.fetchrow("SELECT * FROM rewards WHERE id = $1", reward_id)
        if reward is None:
            raise NotFound("no such reward")
        if reward["voucher_source"] != "pool":
            raise InvalidInput("this reward does not take codes from a pool", field="codes")
        codes = list(dict.fromkeys(data.codes))
        inserted = await conn.fetch(
            """
            INSERT INTO reward_vouchers (id, reward, code, imported_at)
            SELECT gen_random_uuid(), $1, code, now() FROM unnest($2::text[]) AS code
            ON CONFLICT (reward, code) DO NOTHING RETURNING id
            """,
            reward_id,
            codes,
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM reward_vouchers WHERE reward = $1 AND redemption IS NULL",
            reward_id,
        )
        await conn.execute(
            "UPDATE rewards SET updated_at = now(), updated_by = $2 WHERE id = $1",
            reward_id,
            principal.label,
        )
    return schemas.VoucherImportResult(
        imported=len(inserted), already_there=len(data.codes) - len(inserted), vouchers_left=left
    )


# --- what a member may redeem -------------------------------------------------------------


def _blockers(
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
            {_REWARD_SELECT}
            WHERE r.active AND (r.valid_until IS NULL OR r.valid_until > $1)
            ORDER BY r.points_cost, r.name
            """,
            at,
        )
        redeemed = dict(
            await conn.fetch(
                f"""
                SELECT reward, sum(quantity) FROM redemptions
                WHERE member IN ({_SAME_PERSON}) AND status <> 'cancelled' GROUP BY reward
                """,
                member_id,
            )
        )
        prices = await _offer_prices(conn, member_id)
    items = []
    for row in rows:
        unit_cost = min(row["points_cost"], prices.get(row["id"], row["points_cost"]))
        blockers = _blockers(
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
                reward=_reward_schema(row),
                redeemable=not blockers,
                reasons=[reason for reason, _ in blockers],
                explanations=[text for _, text in blockers],
            )
        )
    return schemas.MemberCatalog(
        member_id=member_id, available_points=account["available"], tier=tier, items=items
    )


# --- redemption ---------------------------------------------------------------------------


async def _offer_prices(conn: asyncpg.Connection, member_id: UUID) -> dict[UUID, int]:
    from loyalty.marketing.service import offer_prices

    return await offer_prices(conn, member_id)


def _redemption_schema(row: Any, **extra: Any) -> schemas.Redemption:
    return schemas.Redemption(
        id=row["id"],
        member_id=row["member"],
        reward_id=row["reward"],
        reward_name=row["reward_name"],
        kind=row["kind"],
        quantity=row["quantity"],
        points=row["points"],
        status=row["status"],
        codes=list(row["codes"] or []),
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        fulfilled_at=row["fulfilled_at"],
        cancelled_at=row["cancelled_at"],
        cancelled_by=row["cancelled_by"],
        cancel_reason=row["cancel_reason"],
        **extra,
    )


_REDEMPTION_SELECT = """
SELECT d.*, r.name AS reward_name, r.kind FROM redemptions d JOIN rewards r ON r.id = d.reward
"""


def _new_code(kind: str) -> str:
    body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    return f"{CODE_PREFIX[kind]}-{body[:5]}-{body[5:]}"


def _refusal(reason: str, explanation: str) -> DomainError:
    error_type = InvalidInput if reason in UNPROCESSABLE else Conflict
    field = "quantity" if reason in {"limit_reached", "out_of_stock"} else "reward_id"
    return error_type(f"{explanation} ({reason})", field=field)


async def redeem(
    member_id: UUID, data: schemas.RedemptionIn, principal: Principal
) -> tuple[schemas.Redemption, bool]:
    """Spend the member's available points on a reward; (redemption, created)."""
    await members.get_member(member_id, principal)
    key = f"{member_id}:{data.idempotency_key}"
    request_hash = hashlib.sha256(f"{data.reward_id}|{data.quantity}".encode()).hexdigest()
    ladder = await tiers.ladder()
    at = now()
    async with db.transaction() as conn:
        account = await ledger.lock_account(conn, member_id)
        if account.merged_into is not None:
            raise Conflict("this member was merged; redeem for the survivor", field="member_id")
        previous = await conn.fetchrow(f"{_REDEMPTION_SELECT} WHERE d.idempotency_key = $1", key)
        if previous is not None:
            if previous["request_hash"] != request_hash:
                raise Conflict(
                    "a different redemption was already made with this idempotency_key",
                    field="idempotency_key",
                )
            return _redemption_schema(previous, replayed=True), False
        reward = await conn.fetchrow(f"{_REWARD_SELECT} WHERE r.id = $1", data.reward_id)
        if reward is None:
            raise InvalidInput("no such reward", field="reward_id")
        tier = await conn.fetchval("SELECT tier FROM member_tiers WHERE member = $1", member_id)
        redeemed = await conn.fetchval(
            f"""
            SELECT coalesce(sum(quantity), 0) FROM redemptions
            WHERE member IN ({_SAME_PERSON}) AND reward = $2 AND status <> 'cancelled'
            """,
            member_id,
            data.reward_id,
        )
        # A live reward_price offer addressed to this member lowers the cost.
        unit_cost = min(
            reward["points_cost"],
            (await _offer_prices(conn, member_id)).get(reward["id"], reward["points_cost"]),
        )
        blockers = _blockers(
            reward,
            tier=tier,
            available=account.available,
            debt=account.debt,
            redeemed=redeemed,
            quantity=data.quantity,
            at=at,
            tier_names={t.code: t.name for t in ladder.tiers},
            unit_cost=unit_cost,
        )
        if blockers:
            raise _refusal(*blockers[0])
        if reward["stock"] is not None:
            taken = await conn.fetchval(
                """
                UPDATE rewards SET stock = stock - $2 WHERE id = $1 AND stock >= $2
                RETURNING stock
                """,
                data.reward_id,
                data.quantity,
            )
            if taken is None:
                raise _refusal("out_of_stock", EXPLANATIONS["out_of_stock"])
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
        codes = await _issue_codes(conn, reward, redemption_id, data.quantity)
        if codes:
            await conn.execute(
                "UPDATE redemptions SET codes = $2 WHERE id = $1", redemption_id, codes
            )
        entry = ledger.NewEntry(
            member_id,
            -points,
            kind="redemption",
            cause_type="redemption",
            cause_id=str(redemption_id),
            key=f"redemption:{redemption_id}",
            occurred_at=at,
            actor=principal.label,
            note=f"{data.quantity} x {reward['name']}",
        )
        await ledger.insert_entries(conn, [entry])
        await ledger.consume(conn, account, points, order=ledger.AVAILABLE_ONLY)
        await ledger.save_account(conn, account)
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
        row = await conn.fetchrow(f"{_REDEMPTION_SELECT} WHERE d.id = $1", redemption_id)
    return _redemption_schema(row, balance_after=account.available), True


async def _issue_codes(
    conn: asyncpg.Connection, reward: Any, redemption_id: UUID, quantity: int
) -> list[str]:
    if reward["voucher_source"] == "pool":
        codes = [
            row["code"]
            for row in await conn.fetch(
                """
                UPDATE reward_vouchers SET redemption = $2
                WHERE id IN (
                    SELECT id FROM reward_vouchers WHERE reward = $1 AND redemption IS NULL
                    ORDER BY imported_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
                )
                RETURNING code
                """,
                reward["id"],
                redemption_id,
                quantity,
            )
        ]
        if len(codes) < quantity:
            raise _refusal("out_of_stock", EXPLANATIONS["out_of_stock"])
        return sorted(codes)
    if reward["kind"] in CODE_PREFIX:
        return [_new_code(reward["kind"]) for _ in range(quantity)]
    return []


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
    redemption_id: UUID, data: schemas.CancelIn, principal: Principal
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
