"""Hermitage-style isolation tests of the platform's own read-modify-write paths.

Each test holds a row lock in an open transaction on a raw asyncpg connection of its own (a
separate PostgreSQL session), starts the service calls concurrently, checks that they wait
behind that lock, releases it, and checks the outcome: no lost update, nothing paid or
handed out twice, no balance or stock below zero."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from loyalty.infrastructure import db
from loyalty.tiers import evaluation as tier_evaluation
from loyalty.tiers import ladder
from tests.helpers.ledger import assert_ledger_consistent
from tests.helpers.purchases import purchase_body

WAIT = 0.5  # long enough for an unblocked call to have finished


@asynccontextmanager
async def holding(sql: str, *args) -> AsyncIterator[asyncpg.Connection]:
    """An open transaction on a separate connection that ran `sql` (taking row locks);
    rolled back on exit, which releases them."""
    conn = await asyncpg.connect(os.environ["LOYALTY_DATABASE_URL"])
    transaction = conn.transaction()
    await transaction.start()
    try:
        locked = await conn.fetch(sql, *args)
        assert locked, f"the blocker locked nothing: {sql}"
        yield conn
    finally:
        await transaction.rollback()
        await conn.close()


async def started(*calls: Awaitable) -> list[asyncio.Task]:
    """Start the calls one after another (so they queue in this order) and check that each
    waits behind the held lock."""
    tasks = []
    for call in calls:
        tasks.append(asyncio.ensure_future(call))
        await asyncio.sleep(WAIT)
        assert not any(t.done() for t in tasks), [t.result() for t in tasks if t.done()]
    return tasks


async def finished(tasks: list[asyncio.Task]) -> list:
    return await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def scalar(sql: str, *args):
    async with db.connection() as conn:
        return await conn.fetchval(sql, *args)


async def give_points(client, admin, member_id: str, points: int) -> None:
    response = await client.post(
        f"/api/v1/members/{member_id}/points/adjustments",
        json={"points": points, "reason": "welcome gift", "idempotency_key": f"{member_id}-g"},
        headers=admin,
    )
    assert response.status_code == 201, response.text


async def add_reward(client, admin, **fields) -> dict:
    body = {"name": "Tea set", "kind": "goods", "points_cost": 100, **fields}
    response = await client.post("/api/v1/rewards", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def redeem(client, headers, member_id: str, reward_id: str, key: str):
    return client.post(
        f"/api/v1/members/{member_id}/redemptions",
        json={"reward_id": reward_id, "quantity": 1, "idempotency_key": key},
        headers=headers,
    )


async def enrol(client, headers, name: str, **fields) -> dict:
    response = await client.post("/api/v1/members", json={"name": name, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def buy(client, pos, member_id: str, amount: str, days_ago: float = 0):
    body = purchase_body(member_id, ("ITEM", 1, amount, "general"), days_ago=days_ago)
    return client.post("/api/v1/purchases", json=body, headers=pos)


# --- (a) the last points of a balance ----------------------------------------------------


async def test_two_redemptions_racing_for_the_last_points_one_wins(
    client, admin, member, balance_of
):
    await give_points(client, admin, member["id"], 150)
    reward = await add_reward(client, admin, points_cost=100)
    async with holding(
        "SELECT 1 FROM points_accounts WHERE member = $1::uuid FOR UPDATE", member["id"]
    ):
        tasks = await started(
            redeem(client, admin, member["id"], reward["id"], "a"),
            redeem(client, admin, member["id"], reward["id"], "b"),
        )
    responses = await finished(tasks)
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    balance = await balance_of(member["id"])
    assert balance["available"] == 50 and balance["total"] == 50
    made = await scalar("SELECT count(*) FROM redemptions WHERE member = $1::uuid", member["id"])
    assert made == 1
    await assert_ledger_consistent()


# --- (b) the last unit of stock ------------------------------------------------------------


async def test_two_redemptions_racing_for_the_last_unit_of_stock_one_wins(
    client, admin, balance_of
):
    reward = await add_reward(client, admin, points_cost=50, stock=1)
    people = [await enrol(client, admin, f"Guest {i}") for i in range(2)]
    for person in people:
        await give_points(client, admin, person["id"], 100)
    async with holding("SELECT 1 FROM rewards WHERE id = $1::uuid FOR UPDATE", reward["id"]):
        tasks = await started(
            *(redeem(client, admin, p["id"], reward["id"], "seat") for p in people)
        )
    responses = await finished(tasks)
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert (await client.get(f"/api/v1/rewards/{reward['id']}", headers=admin)).json()["stock"] == 0
    spent = [(await balance_of(p["id"]))["available"] for p in people]
    assert sorted(spent) == [50, 100]
    await assert_ledger_consistent()


# --- (c) a purchase's tier upgrade racing the evaluation job -------------------------------


async def tier_history(member_id: str) -> list[tuple[str | None, str, str]]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT from_tier, to_tier, reason FROM tier_changes WHERE member = $1::uuid"
            " ORDER BY at, reason",
            member_id,
        )
    return [(r["from_tier"], r["to_tier"], r["reason"]) for r in rows]


async def test_a_purchase_upgrade_racing_the_evaluation_is_not_lost(client, admin, pos, member):
    # Silver from a purchase that leaves the window before the evaluation's day: the
    # evaluation wants to start the grace period on the same row the purchase upgrades.
    assert (await buy(client, pos, member["id"], "6000.00", days_ago=360)).status_code == 201
    assert await scalar("SELECT tier FROM member_tiers WHERE member = $1::uuid", member["id"]) == (
        "silver"
    )
    at = datetime.now(UTC) + timedelta(days=10)
    async with holding(
        "SELECT 1 FROM member_tiers WHERE member = $1::uuid FOR UPDATE", member["id"]
    ):
        evaluation, purchase = await started(
            tier_evaluation.evaluate(at=at), buy(client, pos, member["id"], "20000.00")
        )
    await finished([evaluation, purchase])
    assert purchase.result().status_code == 201, purchase.result().text
    assert await scalar("SELECT tier FROM member_tiers WHERE member = $1::uuid", member["id"]) == (
        "gold"
    )
    upgrades = [h for h in await tier_history(member["id"]) if h[1] == "gold"]
    assert upgrades == [("silver", "gold", "upgrade")]
    # Nothing left for the next run to repair.
    assert (await tier_evaluation.evaluate(at=at)).upgraded == 0


async def test_a_purchase_upgrade_racing_an_evaluation_upgrade_is_not_lost(
    client, admin, pos, member
):
    # Once lost: the purchase computed its upgrade from the tier read without a lock and
    # applied it only `WHERE tier = from_tier`, which the evaluation's upgrade had changed.
    assert (await buy(client, pos, member["id"], "3000.00")).status_code == 201
    # The programme lowers the silver threshold: the evaluation will upgrade the member.
    async with db.connection() as conn:
        await conn.execute("UPDATE tier_definitions SET threshold = 2000 WHERE code = 'silver'")
    ladder.forget_cache()
    async with holding(
        "SELECT 1 FROM member_tiers WHERE member = $1::uuid FOR UPDATE", member["id"]
    ):
        evaluation, purchase = await started(
            tier_evaluation.evaluate(), buy(client, pos, member["id"], "20000.00")
        )
    await finished([evaluation, purchase])
    assert purchase.result().status_code == 201, purchase.result().text
    assert await scalar("SELECT tier FROM member_tiers WHERE member = $1::uuid", member["id"]) == (
        "gold"
    )
    history = await tier_history(member["id"])
    assert [h for h in history if h[2] == "upgrade"] == [
        ("normal", "silver", "upgrade"),  # the evaluation, first in the lock queue
        ("silver", "gold", "upgrade"),  # the purchase, computed from the tier it then saw
    ]


async def test_two_purchases_that_cross_a_threshold_together_upgrade(client, admin, pos, member):
    # Each purchase reads the member's spend after it holds the member's lock: read with the
    # statement's own snapshot, the second would miss the first (committed while it waited)
    # and neither would upgrade.
    async with holding(
        "SELECT 1 FROM points_accounts WHERE member = $1::uuid FOR UPDATE", member["id"]
    ):
        first, second = await started(
            buy(client, pos, member["id"], "3000.00"), buy(client, pos, member["id"], "3000.00")
        )
    await finished([first, second])
    assert [first.result().status_code, second.result().status_code] == [201, 201]
    assert await scalar("SELECT tier FROM member_tiers WHERE member = $1::uuid", member["id"]) == (
        "silver"
    )
    assert [h for h in await tier_history(member["id"]) if h[2] == "upgrade"] == [
        ("normal", "silver", "upgrade")
    ]


# --- (d) the referral reward ----------------------------------------------------------------


async def referral_points(member_id: str) -> int:
    return await scalar(
        "SELECT coalesce(sum(points), 0) FROM points_ledger"
        " WHERE member = $1::uuid AND cause_type = 'referral'",
        member_id,
    )


async def test_two_first_purchases_of_a_referred_member_pay_the_referral_once(
    client, admin, pos, member
):
    code = (await client.get(f"/api/v1/members/{member['id']}/referrals", headers=admin)).json()[
        "code"
    ]
    friend = await enrol(client, admin, "Li Na", referral_code=code)
    async with holding(
        "SELECT 1 FROM referrals WHERE referred = $1::uuid FOR UPDATE", friend["id"]
    ):
        tasks = await started(
            buy(client, pos, friend["id"], "999.00"), buy(client, pos, friend["id"], "888.00")
        )
    responses = await finished(tasks)
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert await referral_points(member["id"]) == 500
    assert await referral_points(friend["id"]) == 200
    status = await scalar("SELECT status FROM referrals WHERE referred = $1::uuid", friend["id"])
    assert status == "rewarded"
    await assert_ledger_consistent()


# --- (e) pool assignment of one member to two reps ------------------------------------------


@pytest.fixture
async def team(client, bearer):
    """A manager and two reps of one department, old enough to receive pool members."""
    headers = {
        "manager": await bearer("manager", username="mgr_iso", department="east"),
        "rep1": await bearer("rep", username="rep_iso1", department="east"),
        "rep2": await bearer("rep", username="rep_iso2", department="east"),
    }
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET created_at = now() - interval '90 days'")
        ids = dict(await conn.fetch("SELECT username, id FROM staff"))
    return {"headers": headers, "ids": {k: str(v) for k, v in ids.items()}}


async def test_one_pool_member_handed_to_two_reps_at_once_goes_to_one(client, admin, team):
    pooled = await enrol(client, admin, "Pool member")
    assert pooled["assigned_rep_id"] is None

    def hand_out(rep: str):
        return client.post(
            "/api/v1/pool/assignments",
            json={"member_ids": [pooled["id"]], "rep_id": team["ids"][rep], "reason": "x"},
            headers=team["headers"]["manager"],
        )

    async with holding("SELECT 1 FROM members WHERE id = $1::uuid FOR UPDATE", pooled["id"]):
        tasks = await started(hand_out("rep_iso1"), hand_out("rep_iso2"))
    responses = await finished(tasks)
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    winner = "rep_iso1" if responses[0].status_code == 200 else "rep_iso2"
    open_assignments = await scalar(
        "SELECT array_agg(rep) FROM assignments WHERE member = $1::uuid AND ended_at IS NULL",
        pooled["id"],
    )
    assert [str(r) for r in open_assignments] == [team["ids"][winner]]
    assigned = await scalar("SELECT assigned_rep FROM members WHERE id = $1::uuid", pooled["id"])
    assert str(assigned) == team["ids"][winner]
