"""The member's own API: sign-in by a code caught from a real SMTP server, single-use codes,
rate limits, a member reaching only their own data, and the portal functions through it."""

from __future__ import annotations

import asyncio

from loyalty.members.tables import ClosureRequest
from loyalty.reps.tables import Contact
from tests.helpers.portal import enrol, sign_in
from tests.helpers.purchases import purchase_body


async def test_sign_in_with_a_code_from_the_email(client, admin, mailbox):
    member = await enrol(client, admin, email="Chen@Example.com")
    headers = await sign_in(client, mailbox, "chen@example.com")
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200 and me.json()["id"] == member["id"]
    assert mailbox.to("chen@example.com")[-1]["Subject"].startswith("Your code")


async def test_a_code_works_once(client, admin, mailbox):
    await enrol(client, admin)
    await client.post("/api/v1/me/sign-in/code", json={"identifier": "chen@example.com"})
    code = mailbox.last_code("chen@example.com")
    body = {"identifier": "chen@example.com", "code": code}
    first, second = await asyncio.gather(
        client.post("/api/v1/me/sign-in", json=body), client.post("/api/v1/me/sign-in", json=body)
    )
    assert sorted([first.status_code, second.status_code]) == [201, 401]


async def test_unknown_account_and_wrong_code_look_the_same(client, admin, mailbox):
    await enrol(client, admin)
    unknown = await client.post(
        "/api/v1/me/sign-in/code", json={"identifier": "nobody@example.com"}
    )
    known = await client.post("/api/v1/me/sign-in/code", json={"identifier": "chen@example.com"})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    assert mailbox.to("nobody@example.com") == []
    wrong_known = await client.post(
        "/api/v1/me/sign-in", json={"identifier": "chen@example.com", "code": "000000"}
    )
    wrong_unknown = await client.post(
        "/api/v1/me/sign-in", json={"identifier": "nobody@example.com", "code": "000000"}
    )
    assert wrong_known.status_code == wrong_unknown.status_code == 401
    assert wrong_known.json()["detail"] == wrong_unknown.json()["detail"]


async def test_guessing_codes_is_stopped_by_the_rate_limit(client, admin, mailbox):
    await enrol(client, admin)
    await client.post("/api/v1/me/sign-in/code", json={"identifier": "chen@example.com"})
    code = mailbox.last_code("chen@example.com")
    statuses = []
    for guess in range(6):
        response = await client.post(
            "/api/v1/me/sign-in", json={"identifier": "chen@example.com", "code": f"{guess:06d}"}
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    # Even the right code is refused while the limit holds.
    right = await client.post(
        "/api/v1/me/sign-in", json={"identifier": "chen@example.com", "code": code}
    )
    assert right.status_code == 429 and "Retry-After" in right.headers


async def test_sending_codes_is_rate_limited(client, admin, mailbox):
    await enrol(client, admin)
    statuses = [
        (
            await client.post("/api/v1/me/sign-in/code", json={"identifier": "chen@example.com"})
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    assert len(mailbox.to("chen@example.com")) == 3


async def test_a_member_sees_only_their_own_data(client, admin, mailbox, pos):
    first = await enrol(client, admin)
    second = await enrol(client, admin, name="Li Na", email="li@example.com")
    headers = await sign_in(client, mailbox, "li@example.com")
    assert (await client.get("/api/v1/me", headers=headers)).json()["id"] == second["id"]
    # The staff API is closed to members, whatever id they try.
    for url in (
        f"/api/v1/members/{first['id']}",
        f"/api/v1/members/{first['id']}/points",
        f"/api/v1/members/{first['id']}/tier",
        "/api/v1/members?q=Chen",
    ):
        response = await client.get(url, headers=headers)
        assert response.status_code == 403, url
    # Someone else's redemption cannot be cancelled either.
    await client.post(
        f"/api/v1/members/{first['id']}/points/adjustments",
        json={"points": 500, "reason": "gift", "idempotency_key": "g1"},
        headers=admin,
    )
    reward = (
        await client.post(
            "/api/v1/rewards",
            json={"name": "Cup", "kind": "goods", "points_cost": 100},
            headers=admin,
        )
    ).json()
    theirs = (
        await client.post(
            f"/api/v1/members/{first['id']}/redemptions",
            json={"reward_id": reward["id"], "idempotency_key": "k"},
            headers=admin,
        )
    ).json()
    response = await client.post(
        f"/api/v1/redemptions/{theirs['id']}/cancel", json={"reason": "mine now"}, headers=headers
    )
    assert response.status_code in (403, 404)
    response = await client.post(
        f"/api/v1/me/redemptions/{theirs['id']}/cancel",
        json={"reason": "mine now"},
        headers=headers,
    )
    assert response.status_code == 404


async def test_points_tier_rewards_and_redemption_through_the_member_api(
    client, admin, mailbox, pos
):
    member = await enrol(client, admin)
    await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
        json={"points": 300, "reason": "gift", "idempotency_key": "g1"},
        headers=admin,
    )
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    reward = (
        await client.post(
            "/api/v1/rewards",
            json={"name": "Cup", "kind": "voucher", "points_cost": 200},
            headers=admin,
        )
    ).json()
    headers = await sign_in(client, mailbox, "chen@example.com")
    balance = (await client.get("/api/v1/me/points", headers=headers)).json()
    assert balance["available"] == 300 and balance["pending"] == 100
    entries = (await client.get("/api/v1/me/points/entries", headers=headers)).json()["items"]
    assert [e["kind"] for e in entries] == ["purchase_earn", "adjustment"]
    assert (await client.get("/api/v1/me/tier", headers=headers)).json()["tier"] == "normal"
    catalog = (await client.get("/api/v1/me/rewards", headers=headers)).json()
    assert catalog["items"][0]["redeemable"] is True
    made = await client.post(
        "/api/v1/me/redemptions",
        json={"reward_id": reward["id"], "idempotency_key": "app-1"},
        headers=headers,
    )
    assert made.status_code == 201 and made.json()["codes"][0].startswith("V-")
    cancelled = await client.post(
        f"/api/v1/me/redemptions/{made.json()['id']}/cancel",
        json={"reason": "changed my mind"},
        headers=headers,
    )
    assert cancelled.status_code == 200
    assert (await client.get("/api/v1/me/points", headers=headers)).json()["available"] == 300


async def test_changing_email_needs_the_code_sent_to_the_new_address(client, admin, mailbox):
    await enrol(client, admin)
    headers = await sign_in(client, mailbox, "chen@example.com")
    response = await client.post(
        "/api/v1/me/contact-change",
        json={"field": "email", "value": "chen.new@example.com"},
        headers=headers,
    )
    assert response.status_code == 202
    assert (await client.get("/api/v1/me", headers=headers)).json()["email"] == "chen@example.com"
    wrong = await client.post(
        "/api/v1/me/contact-change/confirm", json={"code": "000000"}, headers=headers
    )
    assert wrong.status_code == 401
    code = mailbox.last_code("chen.new@example.com")
    confirmed = await client.post(
        "/api/v1/me/contact-change/confirm", json={"code": code}, headers=headers
    )
    assert confirmed.status_code == 200 and confirmed.json()["email"] == "chen.new@example.com"


async def test_sign_up_with_a_referral_code(client, admin, mailbox):
    friend = await enrol(client, admin, name="Zhou Min", email="zhou@example.com")
    code = (await client.get(f"/api/v1/members/{friend['id']}/referrals", headers=admin)).json()[
        "code"
    ]
    started = await client.post(
        "/api/v1/me/sign-up",
        json={
            "name": "Li Na",
            "email": "li@example.com",
            "referral_code": code,
            "consents": ["email"],
        },
    )
    assert started.status_code == 202, started.text
    token = started.json()["sign_up_token"]
    created = await client.post(
        "/api/v1/me/sign-up/confirm",
        json={"sign_up_token": token, "code": mailbox.last_code("li@example.com")},
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    me = (await client.get("/api/v1/me", headers=headers)).json()
    assert me["registration"]["channel"] == "portal"
    assert me["contact_preferences"]["consents"][0]["channel"] == "email"
    referred_by = (await client.get("/api/v1/me/referrals", headers=headers)).json()["referred_by"]
    assert referred_by["referrer_id"] == friend["id"]


async def test_signing_up_again_signs_in_without_saying_so_on_screen(client, admin, mailbox):
    member = await enrol(client, admin)
    started = await client.post(
        "/api/v1/me/sign-up", json={"name": "Chen Again", "email": "chen@example.com"}
    )
    assert started.status_code == 202
    mail = mailbox.to("chen@example.com")[-1].get_body(preferencelist=("plain",)).get_content()
    assert "already have an account" in mail
    signed_in = await client.post(
        "/api/v1/me/sign-up/confirm",
        json={
            "sign_up_token": started.json()["sign_up_token"],
            "code": mailbox.last_code("chen@example.com"),
        },
    )
    headers = {"Authorization": f"Bearer {signed_in.json()['token']}"}
    assert (await client.get("/api/v1/me", headers=headers)).json()["id"] == member["id"]


async def test_requests_export_and_closure(client, admin, mailbox):
    member = await enrol(client, admin)
    headers = await sign_in(client, mailbox, "chen@example.com")
    sent = await client.post(
        "/api/v1/me/requests",
        json={"kind": "complaint", "subject": "Late delivery", "body": "Two weeks late."},
        headers=headers,
    )
    assert sent.status_code == 201
    logged = await Contact.select().first()
    assert logged["kind"] == "complaint" and logged["channel"] == "portal"
    assert str(logged["member"]) == member["id"] and logged["direction"] == "inbound"
    export = (await client.get("/api/v1/me/export", headers=headers)).json()
    assert export["member"]["email"] == "chen@example.com"
    assert export["contacts"][0]["subject"] == "Late delivery"
    assert {"points_ledger", "purchases", "tier_changes", "referrals", "redemptions"} <= set(export)
    closure = await client.post(
        "/api/v1/me/closure", json={"reason": "moving abroad"}, headers=headers
    )
    assert closure.status_code == 202
    again = await client.post("/api/v1/me/closure", json={}, headers=headers)
    assert again.status_code == 409
    assert await ClosureRequest.count() == 1


async def test_staff_tokens_cannot_use_the_member_api(client, admin):
    response = await client.get("/api/v1/me", headers=admin)
    assert response.status_code == 403
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_signed_out_token_stops_working(client, admin, mailbox):
    await enrol(client, admin)
    headers = await sign_in(client, mailbox, "chen@example.com")
    assert (await client.post("/api/v1/me/sign-out", headers=headers)).status_code == 204
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
