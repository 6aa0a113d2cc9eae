"""Bonus points offers change earning only inside their validity and only for the offer's
audience; the extra points show in the offer's results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty.marketing import delivery
from tests.helpers.ledger import assert_ledger_consistent
from tests.helpers.marketing import approve, enrol, make_offer, results
from tests.helpers.purchases import purchase_body


async def post(client, pos, member_id: str, days_ago: float) -> dict:
    body = purchase_body(member_id, ("TEA", 1, "100.00", "tea"), days_ago=days_ago)
    response = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert response.status_code == 201, response.text
    return response.json()


async def test_bonus_only_inside_the_window_and_only_for_targeted_members(
    client, admin, pos, bearer, mailbox
):
    marketing = await bearer("marketing")
    vip = await enrol(client, admin, "Targeted", tags=["tea"])
    other = await enrol(client, admin, "Not Targeted")
    segment = await client.post(
        "/api/v1/segments", json={"name": "Tea", "filter": {"tags": ["tea"]}}, headers=marketing
    )
    at = datetime.now(UTC)
    offer = await make_offer(
        client,
        marketing,
        segment_id=segment.json()["id"],
        benefit="bonus_points",
        bonus_multiplier="2",
        valid_from=(at - timedelta(days=3)).isoformat(),
        valid_until=(at + timedelta(days=3)).isoformat(),
    )
    # Before the offer is sent nobody earns more.
    assert (await post(client, pos, vip["id"], days_ago=1))["points"] == 100
    await approve(client, admin, offer["id"])
    await delivery.send_offer(offer["id"])

    assert (await post(client, pos, vip["id"], days_ago=1))["points"] == 200
    assert (await post(client, pos, vip["id"], days_ago=5))["points"] == 100  # before the window
    assert (await post(client, pos, other["id"], days_ago=1))["points"] == 100
    res = await results(client, marketing, offer["id"])
    assert res["points_issued"] == 100 and res["redeemed"] == 1
    await assert_ledger_consistent()
