"""Marketing edges: retries skip members merged or erased since, an offer past its validity
is not sent, a points ceiling includes negative balances, and the movement report counts
net tier moves."""

from __future__ import annotations

from datetime import UTC, datetime

from loyalty.auth import member_principal
from loyalty.infrastructure import db
from loyalty.marketing import delivery
from loyalty.members import privacy
from loyalty.settings import get_settings
from tests.helpers.marketing import approve, consenting, count, enrol, make_offer
from tests.helpers.members import merge
from tests.helpers.purchases import purchase_body


async def test_a_member_erased_after_a_failed_send_is_not_retried(
    client, author, admin, bearer, sms
):
    """README (Sending): failures are retried, but not for a member who withdrew consent;
    an erased member's personal data is removed everywhere, so the retry must not text the
    phone number the member had before erasure."""
    member = await enrol(
        client,
        admin,
        "Leaving Soon",
        phone="+8613800000077",
        contact_preferences=consenting(["sms"], ["sms"]),
    )
    offer = await make_offer(client, author)
    await approve(client, admin, offer["id"])
    sms.fail = True
    await delivery.send_offer(offer["id"])
    assert sms.received == []

    await privacy.request_closure(member_principal(member["id"], member["number"]), "moving")
    pending = (await client.get("/api/v1/closure-requests?status=pending", headers=admin)).json()
    approved = await client.post(
        f"/api/v1/closure-requests/{pending[0]['id']}/approve", headers=admin
    )
    assert approved.status_code == 200, approved.text
    erased = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert erased["phone"] is None

    sms.fail = False
    async with db.connection() as conn:
        await conn.execute("UPDATE offer_deliveries SET next_attempt_at = now()")
    await delivery.retry_failed()
    assert [m["to"] for m in sms.received] == []  # sent to the erased member's old number


async def test_a_merged_duplicate_is_not_retried_so_the_person_gets_the_offer_once(
    client,
    author,
    admin,
    bearer,
    mailbox,
    sms,
):
    """One person, two records: the survivor got the offer by email; the duplicate's text
    failed. After the merge the retry must not send the same offer to the person again."""
    survivor = await enrol(
        client,
        admin,
        "Wang Fang",
        email="wang@example.com",
        contact_preferences=consenting(["email"], ["email"]),
    )
    duplicate = await enrol(
        client,
        admin,
        "Wang Fang (dup)",
        phone="+8613800000088",
        contact_preferences=consenting(["sms"], ["sms"]),
    )
    offer = await make_offer(client, author)
    await approve(client, admin, offer["id"])
    sms.fail = True
    await delivery.send_offer(offer["id"])
    assert len(mailbox.to("wang@example.com")) == 1 and sms.received == []

    await merge(client, admin, survivor["id"], duplicate["id"])

    sms.fail = False
    async with db.connection() as conn:
        await conn.execute("UPDATE offer_deliveries SET next_attempt_at = now()")
    await delivery.retry_failed()
    assert sms.received == []  # the person has the offer already, by email as the survivor


async def test_points_max_selects_members_whose_balance_is_negative(client, admin, pos, bearer):
    """README: points_min/points_max filter on the balance. A member in debt (balance -100)
    has a balance at most 100."""
    marketing = await bearer("marketing")
    member = await enrol(client, admin, "In Debt")
    old = purchase_body(member["id"], ("OLD", 1, "100.00", "general"), days_ago=30)
    assert (await client.post("/api/v1/purchases", json=old, headers=pos)).status_code == 201
    spent = await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"points": -100, "reason": "redeemed at the counter"},
        headers=admin,
    )
    assert spent.status_code in (200, 201), spent.text
    returned = await client.post(
        f"/api/v1/purchases/{old['external_id']}/returns",
        json={"return_id": "R-OLD", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert returned.status_code in (200, 201), returned.text
    balance = (await client.get(f"/api/v1/members/{member['id']}/points", headers=admin)).json()
    assert balance["total"] == -100

    assert await count(client, marketing) == 1
    assert await count(client, marketing, points_max=100) == 1


async def test_an_offer_whose_validity_has_ended_is_not_delivered(client, author, admin, mailbox):
    """DESIGN: offers carry a validity. Approval refuses an ended validity; a send after the
    validity ended (the offer approved earlier, sent late) must not mail members an offer
    that can no longer be used, nor put it in their portal inbox."""
    await enrol(
        client,
        admin,
        "Late Reader",
        email="late@example.com",
        contact_preferences=consenting(["email"], ["email"]),
    )
    offer = await make_offer(client, author)
    await approve(client, admin, offer["id"])
    # Time passes: the offer's validity ends before anyone sends it.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE offers SET valid_from = now() - interval '10 days',"
            " valid_until = now() - interval '1 day' WHERE id = $1",
            offer["id"],
        )
    await delivery.send_offer(offer["id"])
    async with db.connection() as conn:
        inbox = await conn.fetchval(
            "SELECT count(*) FROM member_notifications WHERE kind = 'offer'"
        )
    assert mailbox.to("late@example.com") == []
    assert inbox == 0


async def test_movement_report_counts_net_tier_moves(client, admin, bearer):
    """README: `up` and `down` are NET tier moves over the month. A member downgraded
    gold -> silver at evaluation and back up silver -> gold later the same month did not
    move."""
    marketing = await bearer("marketing")
    member = await enrol(client, admin, "Back And Forth")
    tz = get_settings().tz
    now = datetime.now(UTC)
    local = now.astimezone(tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor, at)
            VALUES (gen_random_uuid(), $1, 'gold', 'silver', 'downgrade', '', 'evaluation', $2),
                   (gen_random_uuid(), $1, 'silver', 'gold', 'upgrade', '', 'system', $3)
            """,
            member["id"],
            start + (now - start) / 3,
            start + 2 * (now - start) / 3,
        )
    response = await client.get(
        f"/api/v1/reports/movement/{local.strftime('%Y-%m')}", headers=marketing
    )
    assert response.status_code == 200, response.text
    report = response.json()
    moves = [
        (r["movement"], r["detail"]) for r in report["members"] if r["member_id"] == member["id"]
    ]
    assert moves == []
    assert report["totals"]["up"] == 0 and report["totals"]["down"] == 0
