"""Offers: approval, delivery through each member's consented channel against a real SMTP
server and a local SMS endpoint, the portal inbox, unsubscribe without signing in, once per
member under retries and reruns, the frequency cap, retries with backoff."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from loyalty.infrastructure import db
from loyalty.marketing import delivery
from tests.helpers.marketing import approve, consenting, enrol, make_offer, results


async def test_approval_needs_a_manager_of_marketing(client, bearer, admin):
    await enrol(client, admin, "Someone")  # an offer that reaches nobody is not approved
    marketing = await bearer("marketing")
    other_manager = await bearer("manager", department="sales")
    marketing_manager = await bearer("manager", department="marketing")
    offer = await make_offer(client, marketing)
    assert offer["status"] == "draft"
    send = await client.post(f"/api/v1/offers/{offer['id']}/send", headers=marketing)
    assert send.status_code == 409
    for headers in (marketing, other_manager):
        refused = await client.post(f"/api/v1/offers/{offer['id']}/approve", headers=headers)
        assert refused.status_code == 403
    await approve(client, marketing_manager, offer["id"])
    changed = await client.put(
        f"/api/v1/offers/{offer['id']}", json={"title_en": "x"}, headers=marketing
    )
    assert changed.status_code == 409
    send = await client.post(f"/api/v1/offers/{offer['id']}/send", headers=marketing)
    assert send.status_code == 202, send.text


async def test_delivery_by_channel_once_with_inbox_and_unsubscribe(
    client, admin, bearer, mailbox, sms, app, settings
):
    marketing = await bearer("marketing")
    by_email = await enrol(
        client,
        admin,
        "Email Fan",
        email="fan@example.com",
        phone="+8613800000001",
        contact_preferences=consenting(["email", "sms"], ["email", "sms"]),
    )
    by_sms = await enrol(
        client,
        admin,
        "Text Fan",
        email="text@example.com",
        phone="+8613800000002",
        contact_preferences={**consenting(["sms", "email"], ["sms"]), "language": "zh"},
    )
    no_consent = await enrol(
        client,
        admin,
        "Quiet One",
        email="quiet@example.com",
        contact_preferences={"channels": ["email"], "consents": []},
    )
    offer = await make_offer(client, marketing)
    await approve(client, admin, offer["id"])

    # The real job on a real worker, queued twice: it runs once per job id, and a rerun of
    # the send itself finds nothing left to send.
    from loyalty.worker import create_worker

    for _ in range(2):
        response = await client.post(f"/api/v1/offers/{offer['id']}/send", headers=marketing)
        assert response.status_code == 202
    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker.jobs_failed == 0
    assert await delivery.send_offer(offer["id"]) == 0

    assert len(mailbox.messages) == 1
    mail = mailbox.to("fan@example.com")[0]
    assert "Autumn tea week" in mail["Subject"]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    page = mail.get_body(preferencelist=("html",)).get_content()
    # In the member's language: no choice stored, so the default (English) alone.
    assert "Double points on tea." in text and "茶叶双倍积分" not in text and "<h1>" in page
    link = re.search(r"(https?://\S+/unsubscribe/\S+)", text).group(1)
    assert link in page
    assert [m["to"] for m in sms.received] == ["+8613800000002"]
    assert "秋茶周" in sms.received[0]["text"]  # the member chose Chinese
    assert "Autumn" not in sms.received[0]["text"]

    async with db.connection() as conn:
        inbox = await conn.fetch(
            "SELECT member, kind, title FROM member_notifications WHERE kind = 'offer'"
        )
    assert {str(r["member"]) for r in inbox} == {by_email["id"], by_sms["id"], no_consent["id"]}
    assert all(r["title"] == "Autumn tea week" for r in inbox)

    res = await results(client, marketing, offer["id"])
    assert res["audience"] == 3 and res["status"] == "sent"
    assert res["delivered"] == {"email": 1, "sms": 1, "portal": 3}
    assert res["failed"] == 0 and res["opened"] == 0

    # Unsubscribe from the email's link, signed out.
    path = "/" + link.split("/", 3)[3]
    page = await client.get(path)
    assert page.status_code == 200 and "unsubscribed" in page.text
    member = (await client.get(f"/api/v1/members/{by_email['id']}", headers=admin)).json()
    email_consent = [
        c for c in member["contact_preferences"]["consents"] if c["channel"] == "email"
    ]
    assert email_consent[0]["granted"] is False
    assert (await client.get(path[:-3] + "xyz")).status_code == 404

    # The next offer goes to the next consented channel.
    second = await make_offer(client, marketing, title_en="Second")
    await approve(client, admin, second["id"])
    await delivery.send_offer(second["id"])
    assert len(mailbox.messages) == 1
    assert sorted(m["to"] for m in sms.received[1:]) == ["+8613800000001", "+8613800000002"]


async def test_frequency_cap_holds_back_messages_but_not_the_inbox(
    client, author, admin, bearer, mailbox, sms
):
    await enrol(
        client,
        admin,
        "Busy",
        email="busy@example.com",
        contact_preferences=consenting(["email"], ["email"]),
    )
    ids = []
    for i in range(3):
        offer = await make_offer(client, author, title_en=f"Offer {i}")
        await approve(client, admin, offer["id"])
        await delivery.send_offer(offer["id"])
        ids.append(offer["id"])
    assert len(mailbox.to("busy@example.com")) == 2  # the cap: 2 a week
    third = await results(client, admin, ids[2])
    assert third["capped"] == 1 and third["delivered"] == {"email": 0, "sms": 0, "portal": 1}


async def test_failed_deliveries_are_retried_with_backoff_and_reported(
    client, author, admin, bearer, mailbox, sms
):
    await enrol(
        client,
        admin,
        "Texter",
        phone="+8613800000009",
        contact_preferences=consenting(["sms"], ["sms"]),
    )
    offer = await make_offer(client, author)
    await approve(client, admin, offer["id"])
    sms.fail = True
    await delivery.send_offer(offer["id"])
    res = await results(client, admin, offer["id"])
    assert (
        res["failed"] == 1 and res["waiting_retry"] == 1 and res["failures"][0]["channel"] == "sms"
    )
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT attempts, next_attempt_at FROM offer_deliveries")
    assert row["attempts"] == 1 and row["next_attempt_at"] > datetime.now(UTC)
    assert await delivery.retry_failed() == 0  # not due yet
    sms.fail = False
    async with db.connection() as conn:
        await conn.execute("UPDATE offer_deliveries SET next_attempt_at = now()")
    assert await delivery.retry_failed() == 1
    assert await delivery.retry_failed() == 0
    assert len(sms.received) == 1
    res = await results(client, admin, offer["id"])
    assert res["failed"] == 0 and res["delivered"]["sms"] == 1


async def test_vouchers_one_per_member(client, author, admin, mailbox, sms):
    for i in range(3):
        await enrol(
            client,
            admin,
            f"V{i}",
            email=f"v{i}@example.com",
            contact_preferences=consenting(["email"], ["email"]),
        )
    offer = await make_offer(client, author, benefit="voucher")
    imported = await client.post(
        f"/api/v1/offers/{offer['id']}/vouchers", json={"codes": ["A1", "A2"]}, headers=admin
    )
    assert imported.json()["imported"] == 2
    await approve(client, admin, offer["id"])
    await delivery.send_offer(offer["id"])
    codes = [
        re.search(r"Your voucher code: (\S+)", m.get_body(preferencelist=("plain",)).get_content())
        for m in mailbox.messages
    ]
    assert sorted(c.group(1) for c in codes if c) == ["A1", "A2"]
    used = await client.post(
        f"/api/v1/offers/{offer['id']}/vouchers/use", json={"code": "A1"}, headers=admin
    )
    assert used.status_code == 200
    assert (await results(client, admin, offer["id"]))["redeemed"] == 1


async def test_a_send_waits_for_another_send_to_the_same_member(
    client, author, admin, mailbox, sms
):
    """The cap is counted under a per-member lock: while another send holds it (here a raw
    connection standing in for a concurrent send), this one waits, then counts what the
    other one sent."""
    import os

    import asyncpg

    member = await enrol(
        client,
        admin,
        "Busy",
        email="busy@example.com",
        contact_preferences=consenting(["email"], ["email"]),
    )
    offers = []
    for i in range(3):
        offer = await make_offer(client, author, title_en=f"Offer {i}")
        await approve(client, admin, offer["id"])
        offers.append(offer["id"])
    await delivery.send_offer(offers[0])
    await delivery.send_offer(offers[1])
    other = await asyncpg.connect(os.environ["LOYALTY_DATABASE_URL"])
    try:
        await other.execute(
            "SELECT pg_advisory_lock(hashtext('offer-cap:' || $1::text))", member["id"]
        )
        sending = asyncio.create_task(delivery.send_offer(offers[2]))
        await asyncio.sleep(0.5)
        assert not sending.done()  # waiting for the member's lock
        await other.execute(
            "SELECT pg_advisory_unlock(hashtext('offer-cap:' || $1::text))", member["id"]
        )
        await asyncio.wait_for(sending, 10)
    finally:
        await other.close()
    assert len(mailbox.to("busy@example.com")) == 2  # the third is capped
