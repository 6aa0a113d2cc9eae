"""A reward_price offer: members it was sent to redeem the reward for fewer points while it
is valid; everyone else pays the catalog price."""

from __future__ import annotations

from loyalty.infrastructure import db
from loyalty.marketing import delivery
from tests.helpers.marketing import approve, enrol, make_offer


async def give(client, admin, member_id: str, points: int) -> None:
    response = await client.post(
        f"/api/v1/members/{member_id}/points/adjustments",
        json={"points": points, "reason": "gift", "idempotency_key": f"g-{member_id}"},
        headers=admin,
    )
    assert response.status_code == 201, response.text


async def test_targeted_members_redeem_for_the_offer_price(client, author, admin, mailbox):
    targeted = await enrol(client, admin, "Targeted")
    other = await enrol(client, admin, "Other")
    reward = (
        await client.post(
            "/api/v1/rewards",
            json={"name": "Tea set", "kind": "goods", "points_cost": 500},
            headers=admin,
        )
    ).json()
    for member in (targeted, other):
        await give(client, admin, member["id"], 300)
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE member_tiers SET tier = 'silver' WHERE member = $1::uuid", targeted["id"]
        )
    offer = await make_offer(
        client,
        author,
        target_tiers=["silver"],
        benefit="reward_price",
        reward_id=reward["id"],
        reward_points_cost=200,
    )
    await approve(client, admin, offer["id"])
    await delivery.snapshot(offer["id"])
    await delivery.send_offer(offer["id"])

    catalog = (await client.get(f"/api/v1/members/{targeted['id']}/rewards", headers=admin)).json()
    (item,) = catalog["items"]
    assert item["points_cost"] == 200 and item["redeemable"] is True
    elsewhere = (await client.get(f"/api/v1/members/{other['id']}/rewards", headers=admin)).json()
    assert elsewhere["items"][0]["points_cost"] == 500
    assert elsewhere["items"][0]["reasons"] == ["not_enough_points"]

    made = await client.post(
        f"/api/v1/members/{targeted['id']}/redemptions",
        json={"reward_id": reward["id"], "idempotency_key": "k"},
        headers=admin,
    )
    assert made.status_code == 201 and made.json()["points"] == 200
    refused = await client.post(
        f"/api/v1/members/{other['id']}/redemptions",
        json={"reward_id": reward["id"], "idempotency_key": "k"},
        headers=admin,
    )
    assert refused.status_code == 409
