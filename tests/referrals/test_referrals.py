"""Referrals: a code for every member, two-sided rewards at the first qualifying purchase
paid exactly once, guards that hold suspicious referrals for review, reversal on a full
return, and the statistics."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from loyalty.points.tables import LedgerEntry
from tests.helpers.ledger import assert_ledger_consistent
from tests.helpers.members import merge
from tests.helpers.purchases import purchase_body


async def enrol(client, headers, name: str, code: str | None = None, **fields) -> dict:
    body = {"name": name, **fields}
    if code is not None:
        body["referral_code"] = code
    response = await client.post("/api/v1/members", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def referrals_of(client, headers, member_id: str) -> dict:
    response = await client.get(f"/api/v1/members/{member_id}/referrals", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def buy(client, pos, member_id: str, amount: str = "150.00", **extra) -> dict:
    body = purchase_body(member_id, ("SKU-1", 1, amount, "general"), **extra)
    response = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert response.status_code in (200, 201), response.text
    return body


async def referral_points(member_id: str) -> int:
    entries = await LedgerEntry.select(LedgerEntry.points).where(
        (LedgerEntry.member == member_id) & (LedgerEntry.cause_type == "referral")
    )
    return sum(e["points"] for e in entries)


async def test_every_member_has_a_readable_code_and_a_sign_up_link(client, admin, member):
    mine = await referrals_of(client, admin, member["id"])
    code = mine["code"]
    assert len(code) == 8 and not set(code) & set("01OIL")
    assert mine["link"].endswith(f"/portal/signup?ref={code}")
    assert mine["stats"] == {"invited": 0, "joined": 0, "rewarded": 0, "held": 0}
    again = await referrals_of(client, admin, member["id"])
    assert again["code"] == code


async def test_first_qualifying_purchase_rewards_both_sides_once(
    client, admin, pos, member, balance_of
):
    code = (await referrals_of(client, admin, member["id"]))["code"]
    # Typed by hand: lower case with a dash still works.
    friend = await enrol(client, admin, "Li Na", f"{code[:4].lower()}-{code[4:].lower()}")
    waiting = (await referrals_of(client, admin, member["id"]))["referrals"][0]
    assert waiting["status"] == "pending" and waiting["referred_id"] == friend["id"]

    await buy(client, pos, friend["id"], "99.99")  # below the 100 minimum: not yet
    assert await referral_points(member["id"]) == 0
    body = await buy(client, pos, friend["id"], "150.00")
    await client.post("/api/v1/purchases", json=body, headers=pos)  # a replay pays nothing more
    await buy(client, pos, friend["id"], "300.00")  # only the first qualifying one counts

    assert await referral_points(member["id"]) == 500
    assert await referral_points(friend["id"]) == 200
    referrer_balance = await balance_of(member["id"])
    assert referrer_balance["pending"] == 500  # pending for the return window like purchases
    stats = (await referrals_of(client, admin, member["id"]))["stats"]
    assert stats == {"invited": 1, "joined": 1, "rewarded": 1, "held": 0}
    await assert_ledger_consistent()


async def test_the_reward_is_paid_once_when_the_purchase_races_itself(client, admin, pos, member):
    code = (await referrals_of(client, admin, member["id"]))["code"]
    friend = await enrol(client, admin, "Li Na", code)
    body = purchase_body(friend["id"], ("TV", 1, "999.00", "general"))
    others = [purchase_body(friend["id"], ("TV", 1, "999.00", "general")) for _ in range(5)]
    await asyncio.gather(
        *(client.post("/api/v1/purchases", json=body, headers=pos) for _ in range(10)),
        *(client.post("/api/v1/purchases", json=b, headers=pos) for b in others),
    )
    assert await referral_points(member["id"]) == 500
    assert await referral_points(friend["id"]) == 200
    await assert_ledger_consistent()


async def test_new_member_is_served_by_the_referrers_rep(client, admin, bearer, make_staff):
    rep_headers = await bearer("rep", username="rep_wu")
    referrer = await enrol(client, rep_headers, "Zhou Min")
    assert referrer["assigned_rep_id"] is not None
    friend = await enrol(
        client, admin, "Li Na", (await referrals_of(client, admin, referrer["id"]))["code"]
    )
    assert friend["assigned_rep_id"] == referrer["assigned_rep_id"]
    history = (await client.get(f"/api/v1/members/{friend['id']}/changes", headers=admin)).json()
    assert history[-1]["changes"]["assigned_rep"]["new"] == referrer["assigned_rep_id"]
    # The rep sees the referred member in their book.
    assert (
        await client.get(f"/api/v1/members/{friend['id']}", headers=rep_headers)
    ).status_code == 200


async def test_unknown_code_is_422_and_enrols_nobody(client, admin):
    for code, reason in (("ZZZZZZZZ", "no member"), ("abc", "is not a referral code")):
        response = await client.post(
            "/api/v1/members", json={"name": "Li Na", "referral_code": code}, headers=admin
        )
        assert response.status_code == 422
        assert response.json()["field"] == "referral_code" and reason in response.json()["detail"]
    listed = (await client.get("/api/v1/members?q=Li", headers=admin)).json()
    assert listed["items"] == []


async def test_self_referral_is_refused(client, admin, member):
    code = (await referrals_of(client, admin, member["id"]))["code"]
    response = await client.put(
        f"/api/v1/members/{member['id']}/referrer", json={"referral_code": code}, headers=admin
    )
    assert response.status_code == 422 and "themselves" in response.json()["detail"]


async def test_shared_address_is_held_and_approval_pays(client, admin, pos):
    home = {"line1": "12 Garden Road", "city": "Shanghai", "postcode": "200000"}
    referrer = await enrol(client, admin, "Zhou Min", address=home)
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    same_home = {"line1": "12  garden road", "city": "SHANGHAI", "postcode": "200000"}
    friend = await enrol(client, admin, "Zhou Lei", code, address=same_home)
    held = (await client.get("/api/v1/referrals?status=held", headers=admin)).json()["items"]
    assert [r["referred_id"] for r in held] == [friend["id"]]
    assert held[0]["hold_reasons"] == ["shared_address"]

    await buy(client, pos, friend["id"])
    assert await referral_points(referrer["id"]) == 0  # held: not paid at the purchase

    approved = await client.post(
        f"/api/v1/referrals/{held[0]['id']}/approve",
        json={"reason": "different flats, checked by phone"},
        headers=admin,
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "rewarded"
    assert approved.json()["reviewed_by"].startswith("staff:")
    assert await referral_points(referrer["id"]) == 500
    again = await client.post(
        f"/api/v1/referrals/{held[0]['id']}/approve", json={"reason": "again"}, headers=admin
    )
    assert again.status_code == 409
    assert await referral_points(referrer["id"]) == 500
    await assert_ledger_consistent()


async def test_rejected_referral_never_pays(client, admin, pos):
    home = {"line1": "1 Lane", "postcode": "100000"}
    referrer = await enrol(client, admin, "Zhou Min", address=home)
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    friend = await enrol(client, admin, "Zhou Lei", code, address=home)
    referral = (await referrals_of(client, admin, referrer["id"]))["referrals"][0]
    assert referral["status"] == "held"
    missing_reason = await client.post(
        f"/api/v1/referrals/{referral['id']}/reject", json={}, headers=admin
    )
    assert missing_reason.status_code == 400 and missing_reason.json()["field"] == "reason"
    rejected = await client.post(
        f"/api/v1/referrals/{referral['id']}/reject", json={"reason": "same person"}, headers=admin
    )
    assert (
        rejected.json()["status"] == "rejected"
        and rejected.json()["review_reason"] == "same person"
    )
    await buy(client, pos, friend["id"])
    assert await referral_points(referrer["id"]) == 0 and await referral_points(friend["id"]) == 0


async def test_a_phone_the_referrer_used_before_is_a_shared_contact(client, admin):
    referrer = await enrol(client, admin, "Zhou Min", phone="+8613800000001")
    moved = await client.patch(
        f"/api/v1/members/{referrer['id']}", json={"phone": "+8613800000002"}, headers=admin
    )
    assert moved.status_code == 200
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    await enrol(client, admin, "Second Zhou", code, phone="+8613800000001")
    referral = (await referrals_of(client, admin, referrer["id"]))["referrals"][0]
    assert referral["status"] == "held" and referral["hold_reasons"] == ["shared_contact"]


async def test_someone_elses_old_email_signing_up_again_is_held(client, admin):
    old = await enrol(client, admin, "Old Account", email="wang@example.com")
    await client.patch(
        f"/api/v1/members/{old['id']}", json={"email": "wang.new@example.com"}, headers=admin
    )
    referrer = await enrol(client, admin, "Zhou Min")
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    await enrol(client, admin, "Wang Again", code, email="WANG@example.com")
    referral = (await referrals_of(client, admin, referrer["id"]))["referrals"][0]
    assert referral["hold_reasons"] == ["existing_member"]


async def test_an_existing_customer_recorded_as_referred_is_held(client, admin, pos):
    referrer = await enrol(client, admin, "Zhou Min")
    customer = await enrol(client, admin, "Long Time Customer")
    await buy(client, pos, customer["id"])
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    response = await client.put(
        f"/api/v1/members/{customer['id']}/referrer", json={"referral_code": code}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "held"
    assert response.json()["hold_reasons"] == ["existing_member"]
    twice = await client.put(
        f"/api/v1/members/{customer['id']}/referrer", json={"referral_code": code}, headers=admin
    )
    assert twice.status_code == 409


async def test_a_loop_is_held(client, admin):
    a = await enrol(client, admin, "Member A")
    b = await enrol(client, admin, "Member B", (await referrals_of(client, admin, a["id"]))["code"])
    b_code = (await referrals_of(client, admin, b["id"]))["code"]
    response = await client.put(
        f"/api/v1/members/{a['id']}/referrer", json={"referral_code": b_code}, headers=admin
    )
    assert response.json()["status"] == "held" and "loop" in response.json()["hold_reasons"]


async def test_referrals_over_the_monthly_cap_are_held(client, admin):
    settings = (await client.get("/api/v1/referral-settings", headers=admin)).json()
    response = await client.put(
        "/api/v1/referral-settings",
        json={
            "referrer_points": settings["referrer_points"],
            "referred_points": settings["referred_points"],
            "min_purchase": settings["min_purchase"],
            "monthly_cap": 2,
        },
        headers=admin,
    )
    assert response.status_code == 200, response.text
    referrer = await enrol(client, admin, "Zhou Min")
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    for i in range(3):
        await enrol(client, admin, f"Friend {i}", code)
    made = (await referrals_of(client, admin, referrer["id"]))["referrals"]
    statuses = sorted((r["status"], tuple(r["hold_reasons"])) for r in made)
    assert statuses == [("held", ("over_cap",)), ("pending", ()), ("pending", ())]


async def test_concurrent_sign_ups_respect_the_cap(client, admin):
    referrer = await enrol(client, admin, "Zhou Min")
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    await asyncio.gather(*(enrol(client, admin, f"Friend {i}", code) for i in range(14)))
    made = (await referrals_of(client, admin, referrer["id"]))["referrals"]
    assert sum(1 for r in made if r["status"] == "pending") == 10  # the default cap
    assert sum(1 for r in made if r["hold_reasons"] == ["over_cap"]) == 4


async def test_full_return_of_the_first_purchase_reverses_both_rewards(
    client, admin, pos, member, balance_of
):
    code = (await referrals_of(client, admin, member["id"]))["code"]
    friend = await enrol(client, admin, "Li Na", code)
    body = await buy(client, pos, friend["id"], "150.00")
    assert await referral_points(member["id"]) == 500
    url = f"/api/v1/purchases/{body['external_id']}/returns"
    partial = await client.post(url, json={"return_id": "R-0", "lines": []}, headers=pos)
    assert partial.status_code in (400, 422)
    response = await client.post(
        url, json={"return_id": "R-1", "lines": [{"line_no": 1, "quantity": 1}]}, headers=pos
    )
    assert response.status_code == 201, response.text
    assert await referral_points(member["id"]) == 0
    assert await referral_points(friend["id"]) == 0
    referral = (await referrals_of(client, admin, member["id"]))["referrals"][0]
    assert referral["status"] == "reversed" and referral["reversed_at"]
    assert (await balance_of(member["id"]))["total"] == 0
    # The reversal happens once, even if the return is sent again.
    await client.post(
        url, json={"return_id": "R-1", "lines": [{"line_no": 1, "quantity": 1}]}, headers=pos
    )
    assert await referral_points(member["id"]) == 0
    await assert_ledger_consistent()


async def test_partial_return_keeps_the_reward(client, admin, pos, member):
    code = (await referrals_of(client, admin, member["id"]))["code"]
    friend = await enrol(client, admin, "Li Na", code)
    body = purchase_body(friend["id"], ("A", 2, "100.00", "general"))
    await client.post("/api/v1/purchases", json=body, headers=pos)
    await client.post(
        f"/api/v1/purchases/{body['external_id']}/returns",
        json={"return_id": "R-1", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert await referral_points(member["id"]) == 500


async def test_reward_spent_before_the_return_becomes_debt(client, admin, pos, member, balance_of):
    code = (await referrals_of(client, admin, member["id"]))["code"]
    friend = await enrol(client, admin, "Li Na", code)
    body = await buy(client, pos, friend["id"], "150.00")
    spent = await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"points": -500, "reason": "used at the counter", "idempotency_key": "k1"},
        headers=admin,
    )
    assert spent.status_code == 201, spent.text
    await client.post(
        f"/api/v1/purchases/{body['external_id']}/returns",
        json={"return_id": "R-1", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    balance = await balance_of(member["id"])
    assert balance["debt"] == 500 and balance["total"] == -500
    await assert_ledger_consistent()


async def test_programme_statistics_by_month(client, admin, pos, bearer, member):
    code = (await referrals_of(client, admin, member["id"]))["code"]
    paying = await enrol(client, admin, "Li Na", code)
    await enrol(client, admin, "Not Yet", code)
    await buy(client, pos, paying["id"])
    marketing = await bearer("marketing")
    response = await client.get("/api/v1/referrals/stats", headers=marketing)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["signed_up"] == 2 and stats["rewarded"] == 1 and stats["points_paid"] == 700
    (month,) = stats["months"]
    assert month["signed_up"] == 2 and month["joined"] == 1 and month["conversion"] == 0.5


@pytest.mark.parametrize("role", ["rep", "marketing"])
async def test_only_reviewers_see_the_queue_and_decide(client, bearer, role):
    headers = await bearer(role)
    assert (await client.get("/api/v1/referrals?status=held", headers=headers)).status_code == 403
    response = await client.post(
        "/api/v1/referrals/00000000-0000-0000-0000-000000000000/approve",
        json={"reason": "x"},
        headers=headers,
    )
    assert response.status_code == 403


async def test_a_rep_cannot_read_referrals_of_someone_elses_member(client, admin, bearer, member):
    rep = await bearer("rep")
    response = await client.get(f"/api/v1/members/{member['id']}/referrals", headers=rep)
    assert response.status_code == 404


async def test_both_members_are_told_through_the_worker(app, settings, client, admin, pos, member):
    from loyalty.events.tables import Notification
    from loyalty.worker import create_worker

    code = (await referrals_of(client, admin, member["id"]))["code"]
    friend = await enrol(client, admin, "Li Na", code)
    await buy(client, pos, friend["id"])
    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    await app.state.redis.enqueue_job("relay_outbox", _job_id="relay-referral")
    try:
        await worker.main()
        await worker.main()  # the deliveries the relay queued
    finally:
        await worker.close()
    told = {
        row["member"]: row["title"]
        for row in await Notification.select().where(Notification.kind == "referral.rewarded")
    }
    assert told == {
        UUID(member["id"]): "Thank you for your referral",
        UUID(friend["id"]): "Welcome bonus",
    }


async def test_full_return_after_the_referrer_was_merged_takes_the_reward_from_the_survivor(
    client, admin, pos, member, balance_of
):
    """The referrer's 500-point reward moved with its lot to the survivor at the merge; when
    the qualifying purchase comes back in full, it is taken back there, not left as a debt
    on the closed duplicate that nobody could ever repay."""
    code = (await referrals_of(client, admin, member["id"]))["code"]
    friend = (
        await client.post(
            "/api/v1/members", json={"name": "Li Na", "referral_code": code}, headers=admin
        )
    ).json()
    body = purchase_body(friend["id"], ("SKU-1", 1, "150.00", "general"))
    assert (await client.post("/api/v1/purchases", json=body, headers=pos)).status_code == 201
    assert (await balance_of(member["id"]))["pending"] == 500

    survivor = (
        await client.post("/api/v1/members", json={"name": "Chen Jie (2)"}, headers=admin)
    ).json()
    await merge(client, admin, survivor["id"], member["id"])
    assert (await balance_of(survivor["id"]))["total"] == 500

    returned = await client.post(
        f"/api/v1/purchases/{body['external_id']}/returns",
        json={"return_id": "R-1", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert returned.status_code == 201, returned.text

    await assert_ledger_consistent()
    referral = (await referrals_of(client, admin, survivor["id"]))["referrals"][0]
    assert referral["status"] == "reversed"
    duplicate = await balance_of(member["id"])
    kept = await balance_of(survivor["id"])
    assert (duplicate["debt"], duplicate["total"]) == (0, 0), duplicate
    assert kept["total"] == 0, kept


async def test_big_batch_qualifies_the_first_purchase_even_when_named_by_phone(
    client, admin, pos, member
):
    """In a batch of more than 250, the referred member's first purchase (named by phone)
    still comes before their second (named by member_id): it qualifies the referral, and
    its full return takes both rewards back."""
    code = (await referrals_of(client, admin, member["id"]))["code"]
    friend = await enrol(client, admin, "Li Na", code, phone="+8613800000077")
    first = purchase_body(friend["id"], ("A", 1, "150.00", "general"), days_ago=2)
    del first["member_id"]
    first["member_phone"] = "+8613800000077"
    second = purchase_body(friend["id"], ("B", 1, "200.00", "general"), days_ago=1)
    filler = [purchase_body(member["id"], ("F", 1, "1.00", "general")) for _ in range(250)]
    response = await client.post(
        "/api/v1/purchases/batch", json={"purchases": [first, second, *filler]}, headers=pos
    )
    assert response.status_code in (200, 201), response.text
    assert response.json()["created"] == 252
    assert await referral_points(friend["id"]) == 200  # paid once

    returned = await client.post(
        f"/api/v1/purchases/{first['external_id']}/returns",
        json={"return_id": "R-1", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=pos,
    )
    assert returned.status_code == 201, returned.text
    referral = (await referrals_of(client, admin, member["id"]))["referrals"][0]
    # The first qualifying purchase came back in full: both rewards are taken back.
    assert referral["status"] == "reversed", referral["status"]
    assert await referral_points(member["id"]) == 0
    assert await referral_points(friend["id"]) == 0


async def test_a_blank_address_line_does_not_hide_a_shared_address(client, admin):
    """The same address, compared without case and spaces: a line of only spaces is the
    same as no line."""
    referrer = await enrol(
        client,
        admin,
        "Zhou Min",
        address={"line1": "12 Garden Road", "line2": " ", "city": "Shanghai"},
    )
    code = (await referrals_of(client, admin, referrer["id"]))["code"]
    await enrol(
        client, admin, "Zhou Lei", code, address={"line1": "12 garden road", "city": "SHANGHAI"}
    )
    referral = (await referrals_of(client, admin, referrer["id"]))["referrals"][0]
    assert referral["status"] == "held", referral["status"]
    assert referral["hold_reasons"] == ["shared_address"]


async def test_a_loop_down_a_long_chain_is_held(client, admin):
    """A loop is the referred member having referred the referrer, directly or down a
    chain of any length (here 53 members)."""
    first = await enrol(client, admin, "M0")
    previous = first
    for i in range(1, 53):  # M0 -> M1 -> ... -> M52
        code = (await referrals_of(client, admin, previous["id"]))["code"]
        previous = await enrol(client, admin, f"M{i}", code)
    last_code = (await referrals_of(client, admin, previous["id"]))["code"]
    response = await client.put(  # M52 -> M0 closes the loop
        f"/api/v1/members/{first['id']}/referrer", json={"referral_code": last_code}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "held"
    assert "loop" in response.json()["hold_reasons"]
