"""The rewards catalog that staff manage: each reward, its rules of sale and, for voucher
rewards with a pool, the pool's size. What a member may redeem is in `eligibility.py`."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import msgspec

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.rewards import schemas
from loyalty.tiers import service as tiers


def reward_schema(row: Any) -> schemas.Reward:
    return db.from_row(
        schemas.Reward,
        row,
        eligible_tiers=row["eligible_tiers"] or [],
        vouchers_left=row["vouchers_left"] if row["voucher_source"] == "pool" else None,
    )


REWARD_SELECT = """
SELECT r.*,
    CASE WHEN r.voucher_source = 'pool' THEN (
        SELECT count(*) FROM reward_vouchers v WHERE v.reward = r.id AND v.redemption IS NULL
    ) END AS vouchers_left
FROM rewards r
"""


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
        after = await conn.fetchrow("SELECT * FROM rewards WHERE id = $1", reward_id)
        await audit.record("rewards.create", "reward", reward_id, after=after)
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
        after = await conn.fetchrow("SELECT * FROM rewards WHERE id = $1", reward_id)
        await audit.record("rewards.update", "reward", reward_id, before=row, after=after)
    return await get_reward(reward_id)


async def get_reward(reward_id: UUID) -> schemas.Reward:
    async with db.connection() as conn:
        row = await conn.fetchrow(f"{REWARD_SELECT} WHERE r.id = $1", reward_id)
    if row is None:
        raise NotFound("no such reward")
    return reward_schema(row)


async def list_rewards(include_inactive: bool) -> list[schemas.Reward]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            f"{REWARD_SELECT} WHERE r.active OR $1 ORDER BY r.points_cost, r.name",
            include_inactive,
        )
    return [reward_schema(row) for row in rows]
