"""Purchases earn exactly once; returns reverse pending points first and leave debt for
points already spent; bad input writes nothing."""

from __future__ import annotations

import asyncio

from loyalty.points import ledger, service
from loyalty.points.tables import LedgerEntry, Purchase, PurchaseLine
from tests.helpers.ledger import assert_ledger_consistent
from tests.helpers.purchases import purchase_body


async def test_purchase_earns_floor_of_amount_and_is_pending(client, pos, member, balance_of):
    body = purchase_body(member["id"], ("TEA-1", 3, "33.33", "general"))
    response = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert response.status_code == 201, response.text
    purchase = response.json()
    assert purchase["points"] == 99  # floor(99.99)
    assert purchase["status"] == "created"
    balance = await balance_of(member["id"])
    assert balance["pending"] == 99 and balance["available"] == 0
    assert balance["total"] == 99 and balance["lifetime_earned"] == 99
    assert balance["can_redeem"] is False


async def test_category_multipliers_apply_per_line(client, pos, admin, member):
    rules = (await client.get("/api/v1/points/rules", headers=admin)).json()
    del rules["updated_at"], rules["updated_by"]
    rules["category_multipliers"] = {"wine": "2", "gift-card": "0"}
    response = await client.put("/api/v1/points/rules", json=rules, headers=admin)
    assert response.status_code == 200, response.text
    body = purchase_body(
        member["id"],
        ("WINE-1", 1, "50.50", "wine"),
        ("GC-100", 1, "100.00", "gift-card"),
        ("TEA-1", 1, "10.99", "general"),
    )
    response = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert response.json()["points"] == 101 + 0 + 10


async def test_replay_returns_the_original_and_changes_nothing(client, pos, member, balance_of):
    body = purchase_body(member["id"])
    first = await client.post("/api/v1/purchases", json=body, headers=pos)
    again = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == {**first.json(), "status": "replayed"}
    assert (await balance_of(member["id"]))["total"] == 100
    assert await LedgerEntry.count() == 1


async def test_same_external_id_with_another_body_is_409(client, pos, member, balance_of):
    body = purchase_body(member["id"])
    await client.post("/api/v1/purchases", json=body, headers=pos)
    changed = {**body, "lines": [{**body["lines"][0], "unit_price": "200.00"}], "total": "200.00"}
    response = await client.post("/api/v1/purchases", json=changed, headers=pos)
    assert response.status_code == 409 and response.json()["field"] == "external_id"
    assert (await balance_of(member["id"]))["total"] == 100


async def test_fifty_concurrent_copies_earn_once(client, pos, member, balance_of):
    body = purchase_body(member["id"], ("TV", 1, "4999.00", "general"))
    responses = await asyncio.gather(
        *(client.post("/api/v1/purchases", json=body, headers=pos) for _ in range(50))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 49 + [201]
    assert (await balance_of(member["id"]))["total"] == 4999
    assert await LedgerEntry.count() == 1 and await Purchase.count() == 1


async def test_concurrent_purchases_and_returns_lose_no_update(client, pos, member, balance_of):
    bodies = [purchase_body(member["id"], ("A", 2, "50.00", "general")) for _ in range(20)]
    await asyncio.gather(*(client.post("/api/v1/purchases", json=b, headers=pos) for b in bodies))
    more = [purchase_body(member["id"], ("B", 1, "30.00", "general")) for _ in range(20)]
    returns = [
        client.post(
            f"/api/v1/purchases/{b['external_id']}/returns",
            json={"return_id": f"R-{b['external_id']}", "lines": [{"line_no": 1, "quantity": 1}]},
            headers=pos,
        )
        for b in bodies
    ]
    results = await asyncio.gather(
        *returns, *(client.post("/api/v1/purchases", json=b, headers=pos) for b in more)
    )
    assert all(r.status_code == 201 for r in results), [
        r.text for r in results if r.status_code != 201
    ]
    balance = await balance_of(member["id"])
    assert balance["total"] == 20 * 100 - 20 * 50 + 20 * 30
    assert balance["pending"] == balance["total"] and balance["debt"] == 0


async def test_member_by_number_or_phone(client, pos, admin):
    member = (
        await client.post(
            "/api/v1/members", json={"name": "Zhao Lei", "phone": "13900001111"}, headers=admin
        )
    ).json()
    by_number = purchase_body(None, member_number=member["number"])
    del by_number["member_id"]
    response = await client.post("/api/v1/purchases", json=by_number, headers=pos)
    assert response.status_code == 201 and response.json()["member_id"] == member["id"]
    by_phone = purchase_body(None, member_phone="+86 139 0000 1111")
    del by_phone["member_id"]
    response = await client.post("/api/v1/purchases", json=by_phone, headers=pos)
    assert response.status_code == 201 and response.json()["member_id"] == member["id"]


async def test_partial_then_full_return_reverses_exactly_the_line_points(
    client, pos, member, balance_of
):
    body = purchase_body(
        member["id"], ("CUP", 3, "33.33", "general"), ("POT", 1, "10.00", "general")
    )
    purchase = (await client.post("/api/v1/purchases", json=body, headers=pos)).json()
    assert purchase["points"] == 99 + 10
    url = f"/api/v1/purchases/{body['external_id']}/returns"
    first = await client.post(
        url, json={"return_id": "R1", "lines": [{"sku": "CUP", "quantity": 1}]}, headers=pos
    )
    assert first.status_code == 201 and first.json()["points_reversed"] == 33
    assert first.json()["amount"] == "33.33"
    second = await client.post(
        url,
        json={
            "return_id": "R2",
            "lines": [{"line_no": 1, "quantity": 2}, {"sku": "POT", "quantity": 1}],
        },
        headers=pos,
    )
    assert second.json()["points_reversed"] == 66 + 10
    balance = await balance_of(member["id"])
    assert balance["total"] == 0 and balance["pending"] == 0 and balance["debt"] == 0
    replay = await client.post(
        url, json={"return_id": "R1", "lines": [{"sku": "CUP", "quantity": 1}]}, headers=pos
    )
    assert replay.status_code == 200 and replay.json()["points_reversed"] == 33
    assert (await balance_of(member["id"]))["total"] == 0


async def test_returning_more_than_bought_is_422_and_writes_nothing(
    client, pos, member, balance_of
):
    body = purchase_body(member["id"], ("CUP", 2, "10.00", "general"))
    await client.post("/api/v1/purchases", json=body, headers=pos)
    response = await client.post(
        f"/api/v1/purchases/{body['external_id']}/returns",
        json={"return_id": "R1", "lines": [{"line_no": 1, "quantity": 3}]},
        headers=pos,
    )
    assert response.status_code == 422 and response.json()["field"] == "lines[0].quantity"
    assert (await balance_of(member["id"]))["total"] == 20
    line = await PurchaseLine.select().first()
    assert line["returned_quantity"] == 0


async def test_return_of_spent_points_leaves_debt_repaid_by_later_earning(
    client, pos, admin, member, balance_of
):
    old = purchase_body(member["id"], ("OLD", 1, "100.00", "general"), days_ago=30)
    await client.post("/api/v1/purchases", json=old, headers=pos)
    # Spend the (now available) 100 points with a manual deduction standing in for a redemption.
    await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"points": -100, "reason": "redeemed a kettle at the counter"},
        headers=admin,
    )
    response = await client.post(
        f"/api/v1/purchases/{old['external_id']}/returns",
        json={"return_id": "R-OLD", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert response.json()["debt_after"] == 100
    balance = await balance_of(member["id"])
    assert balance == {**balance, "available": 0, "pending": 0, "debt": 100, "total": -100}
    assert balance["can_redeem"] is False
    new = purchase_body(member["id"], ("NEW", 1, "150.00", "general"))
    await client.post("/api/v1/purchases", json=new, headers=pos)
    balance = await balance_of(member["id"])
    assert balance["debt"] == 0 and balance["pending"] == 50 and balance["total"] == 50


async def test_the_sale_is_credited_to_the_assigned_rep(client, pos, bearer):
    rep = await bearer("rep", department="east")
    member = (await client.post("/api/v1/members", json={"name": "Rep's"}, headers=rep)).json()
    response = await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    assert response.json()["rep_id"] == member["assigned_rep_id"] is not None


async def test_bad_input_is_a_clear_problem_and_writes_nothing(client, pos, member):
    good = purchase_body(member["id"])
    cases = [
        ({k: v for k, v in good.items() if k != "member_id"}, 422, "member_id"),
        ({**good, "member_id": "00000000-0000-0000-0000-000000000000"}, 422, "member_id"),
        ({**good, "lines": [{**good["lines"][0], "quantity": -1}]}, 400, "lines[0].quantity"),
        ({**good, "total": "99.00"}, 422, "total"),
        ({**good, "currency": "USD"}, 422, "currency"),
        ({**good, "occurred_at": "2099-01-01T00:00:00+00:00"}, 422, "occurred_at"),
        ({**good, "occurred_at": "2026-01-01T00:00:00"}, 400, "occurred_at"),
        (
            {**good, "lines": [{**good["lines"][0], "unit_price": "1.001"}], "total": "1.001"},
            422,
            "lines[0].unit_price",
        ),
        ({**good, "lines": [good["lines"][0]] * 10_000, "total": "1000000.00"}, 400, "lines"),
        ({**good, "lines": []}, 400, "lines"),
        ({**good, "coupon": "FREE"}, 400, "coupon"),
    ]
    for body, status, field in cases:
        response = await client.post("/api/v1/purchases", json=body, headers=pos)
        assert response.status_code == status, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field, (field, response.json())
    assert await Purchase.count() == 0 and await LedgerEntry.count() == 0


async def test_unknown_purchase_return_is_404(client, pos):
    response = await client.post(
        "/api/v1/purchases/NOPE/returns",
        json={"return_id": "R", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert response.status_code == 404


async def test_posting_needs_the_purchases_scope(client, admin, member):
    key = (
        await client.post(
            "/api/v1/api-keys", json={"name": "Reader", "scopes": ["members:read"]}, headers=admin
        )
    ).json()["key"]
    response = await client.post(
        "/api/v1/purchases",
        json=purchase_body(member["id"]),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 403
    assert await Purchase.count() == 0


async def test_the_answer_to_a_post_is_the_purchase_as_stored(client, pos, member):
    """Answers are built from what was posted, not read back: they must still say what a
    later read of the stored purchase says, however the body spelled it."""
    spelled = purchase_body(
        member["id"],
        ("SKU-1", 3, "33.3", "general"),
        occurred_at="2026-01-02T08:30:00+08:00",
        currency="cny",
        total="99.9",
    )
    single = await client.post("/api/v1/purchases", json=spelled, headers=pos)
    assert single.status_code == 201, single.text
    batch = [purchase_body(member["id"]) for _ in range(3)]
    posted = await client.post("/api/v1/purchases/batch", json={"purchases": batch}, headers=pos)
    answers = [single.json()] + [item["purchase"] for item in posted.json()["items"]]
    for answer in answers:
        stored = await client.get(f"/api/v1/purchases/{answer['external_id']}", headers=pos)
        assert stored.status_code == 200, stored.text
        assert {**answer, "status": "replayed"} == stored.json()
    assert single.json()["occurred_at"] == "2026-01-02T00:30:00Z"
    assert single.json()["total"] == "99.90" and single.json()["currency"] == "CNY"


async def _return_all(client, pos, body: dict, return_id: str):
    response = await client.post(
        f"/api/v1/purchases/{body['external_id']}/returns",
        json={
            "return_id": return_id,
            "lines": [
                {"line_no": n, "quantity": line["quantity"]}
                for n, line in enumerate(body["lines"], 1)
            ],
        },
        headers=pos,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_return_after_expiry_does_not_take_the_expired_points_a_second_time(
    client, pos, member, balance_of
):
    """The purchase's 100 points already left the account through expiry. Returning the
    purchase must not take another 100 from the member's other points: a fully returned
    purchase nets to zero, not to minus its points."""
    old = purchase_body(member["id"], ("OLD", 1, "100.00", "general"), days_ago=740)
    recent = purchase_body(member["id"], ("NEW", 1, "50.00", "general"), days_ago=30)
    assert (await client.post("/api/v1/purchases", json=old, headers=pos)).status_code == 201
    assert (await client.post("/api/v1/purchases", json=recent, headers=pos)).status_code == 201
    assert await service.expire_points() == 100
    before = await balance_of(member["id"])
    assert (before["available"], before["total"]) == (50, 50)

    await _return_all(client, pos, old, "R-OLD")

    after = await balance_of(member["id"])
    await assert_ledger_consistent()
    # The old purchase's ledger: +100 earned, -100 expired, nothing more to take back.
    assert (after["available"], after["debt"], after["total"]) == (50, 0, 50), after


async def test_one_return_id_sent_for_two_members_purchases_at_once_is_a_409_not_a_500(
    client, admin, pos, member, monkeypatch
):
    """The return_id is checked under the purchase member's account lock only, so two
    returns with one return_id for purchases of two members can both pass the check; the
    second meets the unique index and answers 409, as it would one after the other."""
    other = (await client.post("/api/v1/members", json={"name": "Li Na"}, headers=admin)).json()
    mine = purchase_body(member["id"], ("A", 1, "10.00", "general"))
    theirs = purchase_body(other["id"], ("B", 1, "10.00", "general"))
    for body in (mine, theirs):
        assert (await client.post("/api/v1/purchases", json=body, headers=pos)).status_code == 201

    real_consume = ledger.consume
    calls = 0

    async def slow_first_consume(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:  # the first return holds its transaction open a little
            await asyncio.sleep(0.5)
        return await real_consume(*args, **kwargs)

    monkeypatch.setattr(ledger, "consume", slow_first_consume)

    async def send(body: dict, delay: float):
        await asyncio.sleep(delay)
        return await client.post(
            f"/api/v1/purchases/{body['external_id']}/returns",
            json={"return_id": "R-SAME", "lines": [{"line_no": 1, "quantity": 1}]},
            headers=pos,
        )

    first, second = await asyncio.gather(send(mine, 0), send(theirs, 0.15))
    assert sorted([first.status_code, second.status_code]) == [201, 409], (
        first.status_code,
        second.status_code,
        second.text,
    )
