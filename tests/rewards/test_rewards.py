"""Rewards and redemption: the catalog with reasons, redemption that can never overdraw the
balance or the stock (also under 64 concurrent requests), exactly-once by idempotency key,
vouchers and seats, cancellation and fulfilment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from loyalty.points.tables import LedgerEntry
from tests.helpers.ledger import assert_ledger_consistent
from tests.helpers.members import merge
from tests.helpers.purchases import purchase_body
from tests.helpers.rewards import add_reward, give_points, redeem


async def test_redemption_takes_points_and_stock_and_issues_a_voucher(
    client, admin, member, balance_of
):
    await give_points(client, admin, member["id"], 1000)
    reward = await add_reward(client, admin, kind="voucher", points_cost=300, stock=5)
    response = await redeem(client, admin, member["id"], reward["id"], "r1", quantity=2)
    assert response.status_code == 201, response.text
    redemption = response.json()
    assert redemption["points"] == 600 and redemption["status"] == "requested"
    assert len(set(redemption["codes"])) == 2 and all(
        c.startswith("V-") for c in redemption["codes"]
    )
    assert redemption["balance_after"] == 400
    balance = await balance_of(member["id"])
    assert balance["available"] == 400 and balance["total"] == 400
    assert (await client.get(f"/api/v1/rewards/{reward['id']}", headers=admin)).json()["stock"] == 3
    entry = await LedgerEntry.select().where(LedgerEntry.kind == "redemption").first()
    assert entry["points"] == -600 and entry["cause_id"] == redemption["id"]
    await assert_ledger_consistent()


async def test_replay_with_the_same_key_changes_nothing(client, admin, member, balance_of):
    await give_points(client, admin, member["id"], 1000)
    reward = await add_reward(client, admin, stock=10)
    first = await redeem(client, admin, member["id"], reward["id"], "same-key")
    again = await redeem(client, admin, member["id"], reward["id"], "same-key")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert (await balance_of(member["id"]))["available"] == 900
    other = await redeem(client, admin, member["id"], reward["id"], "same-key", quantity=2)
    assert other.status_code == 409 and other.json()["field"] == "idempotency_key"
    assert (await balance_of(member["id"]))["available"] == 900
    assert (await client.get(f"/api/v1/rewards/{reward['id']}", headers=admin)).json()["stock"] == 9


async def test_pending_points_and_debt_do_not_count(client, admin, pos, member, balance_of):
    body = purchase_body(member["id"], ("TV", 1, "5000.00", "general"))
    await client.post("/api/v1/purchases", json=body, headers=pos)
    reward = await add_reward(client, admin, points_cost=100)
    response = await redeem(client, admin, member["id"], reward["id"], "k")
    assert response.status_code == 409 and "not_enough_points" in response.json()["detail"]
    assert (await balance_of(member["id"]))["pending"] == 5000
    await assert_ledger_consistent()


async def test_failed_checks_say_why_and_change_nothing(client, admin, member, balance_of):
    await give_points(client, admin, member["id"], 250)
    gold_only = await add_reward(client, admin, eligible_tiers=["gold"])
    later = await add_reward(
        client, admin, valid_from=(datetime.now(UTC) + timedelta(days=3)).isoformat()
    )
    once = await add_reward(client, admin, per_member_limit=1)
    dear = await add_reward(client, admin, points_cost=1000)
    sold_out = await add_reward(client, admin, stock=0)
    cases = [
        (gold_only, 422, "tier_too_low"),
        (later, 422, "not_started"),
        (dear, 409, "not_enough_points"),
        (sold_out, 409, "out_of_stock"),
    ]
    for reward, status, reason in cases:
        response = await redeem(client, admin, member["id"], reward["id"], f"k-{reason}")
        assert response.status_code == status, (reason, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert reason in response.json()["detail"]
    assert (await redeem(client, admin, member["id"], once["id"], "once-1")).status_code == 201
    second = await redeem(client, admin, member["id"], once["id"], "once-2")
    assert second.status_code == 409 and "limit_reached" in second.json()["detail"]
    assert (await balance_of(member["id"]))["available"] == 150
    unknown = await redeem(
        client, admin, member["id"], "00000000-0000-0000-0000-000000000000", "k-unknown"
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "reward_id"
    await assert_ledger_consistent()


async def test_catalog_shows_what_the_member_may_redeem_and_why_not(client, admin, member):
    await give_points(client, admin, member["id"], 500)
    await add_reward(client, admin, name="Cup", points_cost=200)
    await add_reward(client, admin, name="Lamp", points_cost=800)
    await add_reward(client, admin, name="Gold dinner", points_cost=100, eligible_tiers=["gold"])
    await add_reward(client, admin, name="Withdrawn", active=False)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await add_reward(
        client,
        admin,
        name="Ended",
        valid_from=(datetime.now(UTC) - timedelta(days=9)).isoformat(),
        valid_until=past,
    )
    catalog = (await client.get(f"/api/v1/members/{member['id']}/rewards", headers=admin)).json()
    assert catalog["available_points"] == 500 and catalog["tier"] == "normal"
    by_name = {item["reward"]["name"]: item for item in catalog["items"]}
    assert set(by_name) == {"Cup", "Lamp", "Gold dinner"}
    assert by_name["Cup"]["redeemable"] is True and by_name["Cup"]["reasons"] == []
    assert by_name["Lamp"]["reasons"] == ["not_enough_points"]
    assert by_name["Lamp"]["explanations"] == ["300 more available points are needed"]
    assert by_name["Gold dinner"]["reasons"] == ["tier_too_low"]
    assert "Gold" in by_name["Gold dinner"]["explanations"][0]


async def test_64_concurrent_redemptions_never_overdraw_the_balance(
    client, admin, member, balance_of
):
    await give_points(client, admin, member["id"], 1000)
    reward = await add_reward(client, admin, points_cost=70)  # covers 14 of 64
    responses = await asyncio.gather(
        *(redeem(client, admin, member["id"], reward["id"], f"c{i}") for i in range(64))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 14 and statuses.count(409) == 50
    balance = await balance_of(member["id"])
    assert balance["available"] == 1000 - 14 * 70 and balance["total"] == 20
    await assert_ledger_consistent()


async def test_64_members_racing_for_limited_stock(client, admin, balance_of):
    reward = await add_reward(client, admin, kind="event_seat", points_cost=50, stock=9)
    people = []
    for i in range(64):
        response = await client.post("/api/v1/members", json={"name": f"Guest {i}"}, headers=admin)
        people.append(response.json()["id"])
        await give_points(client, admin, people[-1], 100)
    responses = await asyncio.gather(
        *(redeem(client, admin, m, reward["id"], "seat") for m in people)
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 9 and statuses.count(409) == 55
    seats = [code for r in responses if r.status_code == 201 for code in r.json()["codes"]]
    assert len(set(seats)) == 9 and all(s.startswith("S-") for s in seats)
    assert (await client.get(f"/api/v1/rewards/{reward['id']}", headers=admin)).json()["stock"] == 0
    spent = [m for m, r in zip(people, responses, strict=True) if r.status_code == 201]
    for m in people:
        expected = 50 if m in spent else 100
        assert (await balance_of(m))["available"] == expected
    await assert_ledger_consistent()


async def test_voucher_pool_is_never_issued_twice(client, admin):
    reward = await add_reward(client, admin, kind="voucher", voucher_source="pool", points_cost=10)
    imported = await client.post(
        f"/api/v1/rewards/{reward['id']}/vouchers",
        json={"codes": ["GIFT-1", "GIFT-2", "GIFT-3", "GIFT-3"]},
        headers=admin,
    )
    assert imported.json() == {"imported": 3, "already_there": 1, "vouchers_left": 3}
    again = await client.post(
        f"/api/v1/rewards/{reward['id']}/vouchers", json={"codes": ["GIFT-1"]}, headers=admin
    )
    assert again.json()["imported"] == 0
    people = []
    for i in range(8):
        people.append(
            (await client.post("/api/v1/members", json={"name": f"P{i}"}, headers=admin)).json()[
                "id"
            ]
        )
        await give_points(client, admin, people[-1], 100)
    responses = await asyncio.gather(*(redeem(client, admin, m, reward["id"], "v") for m in people))
    codes = sorted(c for r in responses if r.status_code == 201 for c in r.json()["codes"])
    assert codes == ["GIFT-1", "GIFT-2", "GIFT-3"]
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * 5


async def test_cancel_returns_points_stock_and_pool_voucher(client, admin, member, balance_of):
    await give_points(client, admin, member["id"], 500)
    reward = await add_reward(
        client, admin, kind="voucher", voucher_source="pool", points_cost=200, stock=1
    )
    await client.post(
        f"/api/v1/rewards/{reward['id']}/vouchers", json={"codes": ["X1"]}, headers=admin
    )
    made = (await redeem(client, admin, member["id"], reward["id"], "k")).json()
    cancelled = await client.post(
        f"/api/v1/redemptions/{made['id']}/cancel", json={"reason": "changed mind"}, headers=admin
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (
        cancelled.json()["status"] == "cancelled"
        and cancelled.json()["cancel_reason"] == "changed mind"
    )
    assert (await balance_of(member["id"]))["available"] == 500
    reward_now = (await client.get(f"/api/v1/rewards/{reward['id']}", headers=admin)).json()
    assert reward_now["stock"] == 1 and reward_now["vouchers_left"] == 1
    twice = await client.post(
        f"/api/v1/redemptions/{made['id']}/cancel", json={"reason": "again"}, headers=admin
    )
    assert twice.status_code == 409
    assert (await balance_of(member["id"]))["available"] == 500
    await assert_ledger_consistent()


async def test_fulfilment_is_tracked(client, admin, bearer, member):
    await give_points(client, admin, member["id"], 500)
    reward = await add_reward(client, admin)
    made = (await redeem(client, admin, member["id"], reward["id"], "k")).json()
    rep = await bearer("rep")
    assert (
        await client.post(f"/api/v1/redemptions/{made['id']}/fulfil", headers=rep)
    ).status_code == 403
    service = await bearer("service")
    done = await client.post(f"/api/v1/redemptions/{made['id']}/fulfil", headers=service)
    assert done.status_code == 200 and done.json()["status"] == "fulfilled"
    listed = (await client.get(f"/api/v1/members/{member['id']}/redemptions", headers=admin)).json()
    assert [r["status"] for r in listed] == ["fulfilled"]
    again = await client.post(f"/api/v1/redemptions/{made['id']}/fulfil", headers=service)
    assert again.status_code == 409


async def test_catalog_validation_and_permissions(client, admin, bearer):
    bad = [
        ({"points_cost": 0}, "points_cost"),
        ({"stock": -1}, "stock"),
        ({"eligible_tiers": ["bronze"]}, "eligible_tiers[0]"),
        ({"voucher_source": "pool"}, "voucher_source"),
        (
            {
                "valid_from": "2027-01-02T00:00:00Z",
                "valid_until": "2027-01-01T00:00:00Z",
            },
            "valid_until",
        ),
    ]
    for fields, field in bad:
        body = {"name": "X", "kind": "goods", "points_cost": 10, **fields}
        response = await client.post("/api/v1/rewards", json=body, headers=admin)
        assert response.status_code in (400, 422), (fields, response.text)
        assert response.json()["field"] == field
    rep = await bearer("rep")
    denied = await client.post(
        "/api/v1/rewards", json={"name": "X", "kind": "goods", "points_cost": 10}, headers=rep
    )
    assert denied.status_code == 403
    marketing = await bearer("marketing")
    reward = await add_reward(client, marketing)
    changed = await client.patch(
        f"/api/v1/rewards/{reward['id']}",
        json={"points_cost": 150, "active": False},
        headers=marketing,
    )
    assert changed.json()["points_cost"] == 150 and changed.json()["active"] is False
    listed = (await client.get("/api/v1/rewards", headers=admin)).json()
    assert listed == []


@pytest.mark.parametrize("role", ["rep"])
async def test_a_rep_cannot_redeem_for_someone_elses_member(client, admin, bearer, member, role):
    await give_points(client, admin, member["id"], 500)
    reward = await add_reward(client, admin)
    headers = await bearer(role)
    response = await redeem(client, headers, member["id"], reward["id"], "k")
    assert response.status_code == 404


async def test_cancelling_a_redemption_after_a_merge_gives_the_points_to_the_survivor(
    client, admin, member, balance_of
):
    """A redemption made before the member was merged and cancelled afterwards: the points
    go back where the member's points now are (the survivor), not to the closed duplicate,
    where nobody could ever spend them."""
    await give_points(client, admin, member["id"], 500)
    reward = await add_reward(client, admin, points_cost=200)
    made = await redeem(client, admin, member["id"], reward["id"], "k")
    assert made.status_code == 201, made.text
    survivor = (
        await client.post("/api/v1/members", json={"name": "Chen Jie (2)"}, headers=admin)
    ).json()
    await merge(client, admin, survivor["id"], member["id"])
    assert (await balance_of(survivor["id"]))["available"] == 300

    cancelled = await client.post(
        f"/api/v1/redemptions/{made.json()['id']}/cancel",
        json={"reason": "out of stock at the store"},
        headers=admin,
    )
    assert cancelled.status_code == 200, cancelled.text

    await assert_ledger_consistent()
    duplicate = await balance_of(member["id"])
    assert duplicate["total"] == 0, duplicate
    assert (await balance_of(survivor["id"]))["available"] == 500
