"""Offer review: submit, send back with a comment, approval refusals with their reason, and
results per tier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty.marketing import delivery
from tests.helpers.marketing import enrol, make_offer, results


async def test_submit_send_back_and_approve(client, admin, bearer):
    await enrol(client, admin, "Someone")
    author = await bearer("marketing")
    reviewer = await bearer("manager", department="marketing")
    offer = await make_offer(client, author)
    url = f"/api/v1/offers/{offer['id']}"

    # Only the reviewer sends back, only a submitted offer, and only with a comment.
    assert (
        await client.post(f"{url}/send-back", json={"comment": "x"}, headers=reviewer)
    ).status_code == 409
    submitted = await client.post(f"{url}/submit", headers=author)
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    assert submitted.json()["submitted_at"] is not None
    assert (await client.post(f"{url}/submit", headers=author)).status_code == 409
    locked = await client.put(url, json={"title_en": "Changed"}, headers=author)
    assert locked.status_code == 409  # awaiting approval: it no longer changes
    refused = await client.post(f"{url}/send-back", json={"comment": "x"}, headers=author)
    assert refused.status_code == 403
    empty = await client.post(f"{url}/send-back", json={"comment": ""}, headers=reviewer)
    assert empty.status_code == 400 and empty.json()["field"] == "comment"

    back = await client.post(
        f"{url}/send-back", json={"comment": "Say which teas."}, headers=reviewer
    )
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "draft"
    assert back.json()["review_comment"] == "Say which teas."
    changed = await client.put(url, json={"body_en": "Double points on green tea."}, headers=author)
    assert changed.status_code == 200
    assert (await client.post(f"{url}/submit", headers=author)).status_code == 200

    # The author never approves their own offer, not even an admin's own.
    own = await client.post(f"{url}/approve", headers=author)
    assert own.status_code == 403
    approved = await client.post(f"{url}/approve", headers=reviewer)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["review_comment"] is None
    mine = await make_offer(client, admin)
    refused = await client.post(f"/api/v1/offers/{mine['id']}/approve", headers=admin)
    assert refused.status_code == 403 and "author" in refused.json()["detail"]


async def test_approval_refusals_name_the_reason(client, admin, bearer):
    author = await bearer("marketing")
    nobody = await make_offer(client, author, target_tiers=["gold"])
    refused = await client.post(f"/api/v1/offers/{nobody['id']}/approve", headers=admin)
    assert refused.status_code == 409 and "reaches no member" in refused.json()["detail"]

    await enrol(client, admin, "Someone")
    voucher = await make_offer(client, author, benefit="voucher")
    refused = await client.post(f"/api/v1/offers/{voucher['id']}/approve", headers=admin)
    assert refused.status_code == 409 and "voucher pool is empty" in refused.json()["detail"]
    imported = await client.post(
        f"/api/v1/offers/{voucher['id']}/vouchers", json={"codes": ["A1"]}, headers=author
    )
    assert imported.status_code == 200
    ok = await client.post(f"/api/v1/offers/{voucher['id']}/approve", headers=admin)
    assert ok.status_code == 200, ok.text

    at = datetime.now(UTC)
    ended = await make_offer(
        client,
        author,
        valid_from=(at - timedelta(days=9)).isoformat(),
        valid_until=(at - timedelta(days=1)).isoformat(),
    )
    refused = await client.post(f"/api/v1/offers/{ended['id']}/approve", headers=admin)
    assert refused.status_code == 409 and "ended" in refused.json()["detail"]
    backwards = await client.post(
        "/api/v1/offers",
        json={
            "title_en": "Backwards",
            "body_en": "x",
            "valid_from": (at + timedelta(days=2)).isoformat(),
            "valid_until": (at + timedelta(days=1)).isoformat(),
        },
        headers=author,
    )
    assert backwards.status_code == 422 and backwards.json()["field"] == "valid_until"


async def test_cancel_a_submitted_offer(client, admin, bearer):
    await enrol(client, admin, "Someone")
    author = await bearer("marketing")
    offer = await make_offer(client, author)
    await client.post(f"/api/v1/offers/{offer['id']}/submit", headers=author)
    cancelled = await client.post(f"/api/v1/offers/{offer['id']}/cancel", headers=author)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/api/v1/offers/{offer['id']}/approve", headers=admin)
    assert again.status_code == 409


async def test_results_by_tier_and_voucher_cost(client, admin, bearer, mailbox, sms):
    author = await bearer("marketing")
    for name in ("One", "Two"):
        await enrol(client, admin, name, email=f"{name.lower()}@example.com")
    offer = await make_offer(client, author, benefit="voucher")
    await client.post(
        f"/api/v1/offers/{offer['id']}/vouchers", json={"codes": ["A1", "A2", "A3"]}, headers=author
    )
    assert (
        await client.post(f"/api/v1/offers/{offer['id']}/approve", headers=admin)
    ).status_code == 200
    await delivery.send_offer(offer["id"])
    res = await results(client, admin, offer["id"])
    assert res["vouchers_issued"] == 2
    assert res["by_tier"] == [
        {
            "tier": "normal",
            "audience": 2,
            "delivered": 0,
            "portal": 2,
            "opened": 0,
            "redeemed": 0,
            "points_issued": 0,
        }
    ]


def test_text_message_length_and_parts_as_carriers_count_them():
    from loyalty.marketing.preview import sms_parts

    assert sms_parts("a" * 160) == (160, "GSM-7", 1)
    assert sms_parts("a" * 161) == (161, "GSM-7", 2)  # 153 a part once split
    assert sms_parts("€" * 80) == (160, "GSM-7", 1)  # extended characters count twice
    assert sms_parts("茶" * 70) == (70, "UCS-2", 1)
    assert sms_parts("茶" * 71) == (71, "UCS-2", 2)  # 67 a part once split
    assert sms_parts("茶" * 135) == (135, "UCS-2", 3)
