"""Single purchases that arrive together are posted in one transaction (group commit), yet
each is answered on its own, and the database still decides races between transactions."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import msgspec

from loyalty.auth import Principal
from loyalty.errors import ServiceUnavailable
from loyalty.infrastructure import db
from loyalty.points import schemas
from loyalty.points.tables import LedgerEntry, Purchase
from loyalty.workflows import sales
from tests.helpers.purchases import purchase_body

POS = Principal(kind="api_key", id=uuid4(), label="api_key:till")


async def test_purchases_arriving_together_share_a_transaction_and_keep_their_own_answers(
    client, pos, admin, balance_of
):
    members = [
        (await client.post("/api/v1/members", json={"name": f"Shopper {i}"}, headers=admin)).json()
        for i in range(3)
    ]
    good = [
        purchase_body(members[i % 3]["id"], ("TEA", 1, f"{10 + i}.00", "general"))
        for i in range(24)
    ]
    unknown_member = purchase_body(str(uuid4()))
    wrong_currency = purchase_body(members[0]["id"], currency="USD")
    taken = purchase_body(members[1]["id"], ("MUG", 1, "5.00", "general"))
    same_id_other_body = {**purchase_body(members[2]["id"]), "external_id": taken["external_id"]}
    bodies = [*good[:12], unknown_member, taken, wrong_currency, same_id_other_body, *good[12:]]

    responses = await asyncio.gather(
        *(client.post("/api/v1/purchases", json=body, headers=pos) for body in bodies)
    )

    by_id = {body["external_id"]: r for body, r in zip(bodies, responses, strict=True)}
    assert all(by_id[b["external_id"]].status_code == 201 for b in good)
    assert responses[12].status_code == 422 and responses[12].json()["field"] == "member_id"
    assert responses[14].status_code == 422 and responses[14].json()["field"] == "currency"
    # The first of the two bodies with one external_id is posted; the second is refused.
    assert sorted([responses[13].status_code, responses[15].status_code]) == [201, 409]
    kept = bodies[13] if responses[13].status_code == 201 else bodies[15]
    assert (await Purchase.count()) == 25
    for i, member in enumerate(members):
        earned = sum(10 + j for j in range(24) if j % 3 == i)
        earned += int(float(kept["total"])) if kept["member_id"] == member["id"] else 0
        assert (await balance_of(member["id"]))["total"] == earned
    # They were posted together: fewer transactions (purchases share their start) than sales.
    transactions = await Purchase.count(distinct=[Purchase.created_at])
    assert transactions < 25


async def test_identical_posts_in_separate_transactions_earn_once(client, pos, member, balance_of):
    body = msgspec.convert(
        purchase_body(member["id"], ("TV", 1, "4999.00", "general")), schemas.PurchaseCreate
    )
    # Straight to the posting, one transaction each: the database decides the race.
    outcomes = await asyncio.gather(*(sales.post_purchases([body], POS) for _ in range(20)))
    statuses = sorted(outcome.status for (outcome,) in outcomes)  # type: ignore[union-attr]
    assert statuses == ["created"] + ["replayed"] * 19
    assert (await balance_of(member["id"]))["total"] == 4999
    assert await LedgerEntry.count() == 1 and await Purchase.count() == 1


async def test_a_purchase_posted_inside_a_transaction_is_part_of_it(member, balance_of):
    body = msgspec.convert(purchase_body(member["id"]), schemas.PurchaseCreate)

    class Undo(Exception):
        pass

    try:
        async with db.transaction():
            posted = await sales.post_purchase(body, POS)
            assert posted.status == "created"
            raise Undo
    except Undo:
        pass
    assert await Purchase.count() == 0
    assert (await balance_of(member["id"]))["total"] == 0


async def test_a_failed_group_fails_its_purchases_only_and_the_next_group_posts(
    client, pos, member, balance_of, monkeypatch
):
    real = sales.post_purchases
    calls = 0

    async def failing_once(*args, **kwargs):
        nonlocal calls
        calls += 1
        outcomes = await real(*args, **kwargs)  # written in the group's transaction...
        if calls == 1:
            raise ServiceUnavailable("the database went away")  # ...which is not committed
        return outcomes

    monkeypatch.setattr(sales, "post_purchases", failing_once)
    first = purchase_body(member["id"], ("TEA", 1, "30.00", "general"))
    response = await client.post("/api/v1/purchases", json=first, headers=pos)
    assert response.status_code == 503
    second = purchase_body(member["id"], ("TEA", 1, "40.00", "general"))
    response = await client.post("/api/v1/purchases", json=second, headers=pos)
    assert response.status_code == 201
    assert await Purchase.count() == 1
    assert (await balance_of(member["id"]))["total"] == 40
    # Sent again, the failed purchase is posted now (it was never stored).
    response = await client.post("/api/v1/purchases", json=first, headers=pos)
    assert response.status_code == 201
    assert (await balance_of(member["id"]))["total"] == 70
