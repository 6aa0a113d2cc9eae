"""Catalog and earning-rule edges: rules the column cannot hold are refused, validity times
must carry a time zone, cancelling puts back only stock that was taken, per-member limits
count merged duplicates, and a purchase keeps the pending window it was posted under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty.infrastructure import db
from tests.helpers.ledger import assert_ledger_consistent
from tests.helpers.members import merge
from tests.helpers.purchases import purchase_body
from tests.helpers.rewards import add_reward, give_points, redeem

RULES = {
    "points_per_unit": "1",
    "category_multipliers": {},
    "pending_days": 14,
    "expiry_months": 24,
}


async def test_rules_points_per_unit_too_small_is_not_silently_stored_as_zero(client, admin):
    """points_per_unit must be above 0: a value the column would round to 0.0000 is refused,
    not stored (every purchase afterwards would earn nothing)."""
    response = await client.put(
        "/api/v1/points/rules", json={**RULES, "points_per_unit": "0.00001"}, headers=admin
    )
    if response.status_code == 200:
        stored = (await client.get("/api/v1/points/rules", headers=admin)).json()
        from decimal import Decimal

        assert Decimal(stored["points_per_unit"]) > 0, stored
    else:
        assert response.status_code == 422 and response.json()["field"] == "points_per_unit"


async def test_reward_with_naive_and_aware_validity_is_not_a_500(client, admin):
    response = await client.post(
        "/api/v1/rewards",
        json={
            "name": "Tea set",
            "kind": "goods",
            "points_cost": 100,
            "valid_from": "2030-01-01T00:00:00",
            "valid_until": "2031-01-01T00:00:00+00:00",
        },
        headers=admin,
    )
    assert response.status_code < 500, response.text


async def test_patching_validity_with_a_naive_date_is_not_a_500(client, admin):
    reward = await add_reward(
        client, admin, valid_from=(datetime.now(UTC) + timedelta(days=1)).isoformat()
    )
    response = await client.patch(
        f"/api/v1/rewards/{reward['id']}",
        json={"valid_until": "2031-01-01T00:00:00"},
        headers=admin,
    )
    assert response.status_code < 500, response.text


async def test_cancel_does_not_restore_stock_that_was_never_taken(client, admin, member):
    """README: cancelling restores the stock. A redemption made while the reward was
    unlimited took no stock; once staff set a stock, cancelling it must not add a unit."""
    await give_points(client, admin, member["id"], 500)
    reward = await add_reward(client, admin, kind="event_seat", points_cost=100)
    made = await redeem(client, admin, member["id"], reward["id"], "k")
    assert made.status_code == 201, made.text
    patched = await client.patch(
        f"/api/v1/rewards/{reward['id']}", json={"stock": 5}, headers=admin
    )
    assert patched.status_code == 200 and patched.json()["stock"] == 5
    cancelled = await client.post(
        f"/api/v1/redemptions/{made.json()['id']}/cancel",
        json={"reason": "cannot come"},
        headers=admin,
    )
    assert cancelled.status_code == 200, cancelled.text
    reward_now = (await client.get(f"/api/v1/rewards/{reward['id']}", headers=admin)).json()
    assert reward_now["stock"] == 5, reward_now


async def test_per_member_limit_counts_redemptions_of_a_merged_duplicate(
    client, admin, member, balance_of
):
    await give_points(client, admin, member["id"], 500)
    once = await add_reward(client, admin, per_member_limit=1, points_cost=100)
    assert (await redeem(client, admin, member["id"], once["id"], "k")).status_code == 201
    survivor = (
        await client.post("/api/v1/members", json={"name": "Chen Jie (2)"}, headers=admin)
    ).json()
    await merge(client, admin, survivor["id"], member["id"])
    catalog = (await client.get(f"/api/v1/members/{survivor['id']}/rewards", headers=admin)).json()
    item = next(i for i in catalog["items"] if i["reward"]["id"] == once["id"])
    assert "limit_reached" in item["reasons"], item
    again = await redeem(client, admin, survivor["id"], once["id"], "k2")
    assert again.status_code == 409, again.text


async def test_purchase_pending_until_does_not_follow_later_rule_changes(
    client, admin, pos, member
):
    """Rules apply to purchases posted afterwards: a purchase posted under a 14-day window
    keeps it (its lot is released after 14 days); GET must not report the new window."""
    body = purchase_body(member["id"])
    posted = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert posted.status_code == 201, posted.text
    first = posted.json()["pending_until"]
    changed = await client.put(
        "/api/v1/points/rules", json={**RULES, "pending_days": 30}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    async with db.connection() as conn:
        available_at = await conn.fetchval("SELECT available_at FROM points_lots")
    got = (await client.get(f"/api/v1/purchases/{body['external_id']}", headers=pos)).json()
    assert datetime.fromisoformat(got["pending_until"]) == available_at, (first, got)
    replay = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert datetime.fromisoformat(replay.json()["pending_until"]) == available_at
    await assert_ledger_consistent()
