"""Member portal and member API edges: odd cursors and form values are refused (never a
500), consents changed by the member are recorded by the server, sign-up keeps only the
verified address, and tier progress speaks the qualification basis."""

from __future__ import annotations

import base64
import uuid

from tests.helpers.pages import csrf_from
from tests.helpers.portal import enrol, sign_in, signed_in_browser
from tests.helpers.purchases import purchase_body


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_points_history_with_an_out_of_range_cursor_is_not_a_500(
    client, admin, mailbox, make_client
):
    """A cursor the API never gave out (here a date out of range) is refused with 422, as
    any other such cursor, on the API and on the page; never a 500."""
    await enrol(client, admin)
    headers = await sign_in(client, mailbox, "chen@example.com")
    cursor = _cursor(f"0001-01-01T00:00:00+05:00|{uuid.uuid4()}")
    api = await client.get(f"/api/v1/me/points/entries?cursor={cursor}", headers=headers)
    assert api.status_code == 422 and api.json()["field"] == "cursor", api.text
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    page = await browser.get(f"/portal/points?cursor={cursor}")
    assert page.status_code == 422, page.text[:300]


async def test_redeem_form_with_a_non_numeric_quantity_is_not_a_500(
    client, admin, mailbox, make_client
):
    """The redeem form is input like any other: a bad quantity is refused, not a 500."""
    member = await enrol(client, admin)
    await client.post(
        f"/api/v1/members/{member['id']}/points/adjustments",
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
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    page = await browser.get(f"/portal/rewards/{reward['id']}")
    assert page.status_code == 200
    response = await browser.post(
        f"/portal/rewards/{reward['id']}",
        data={"quantity": "two", "key": "k1", "_csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 400, response.text[:300]


async def test_consent_changed_through_the_member_api_records_how(client, admin, mailbox):
    """Consents are kept with when and how they were given (DESIGN 2; README: 'time and
    method are recorded'); a member's own change through the app must say how."""
    await enrol(client, admin)
    headers = await sign_in(client, mailbox, "chen@example.com")
    response = await client.put(
        "/api/v1/me/preferences",
        json={"channels": ["email"], "consents": [{"channel": "email", "granted": True}]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    consent = response.json()["contact_preferences"]["consents"][0]
    assert consent["at"]
    assert consent["method"], consent


async def test_a_member_cannot_backdate_their_own_consent(client, admin, mailbox):
    """The time recorded for a consent is evidence: it is when the member gave it, not a
    date the member types in."""
    await enrol(client, admin)
    headers = await sign_in(client, mailbox, "chen@example.com")
    response = await client.put(
        "/api/v1/me/preferences",
        json={
            "channels": ["sms"],
            "consents": [
                {
                    "channel": "sms",
                    "granted": True,
                    "at": "2001-01-01T00:00:00+00:00",
                    "method": "signed paper form",
                }
            ],
        },
        headers=headers,
    )
    assert response.status_code in (200, 400), response.text
    me = (await client.get("/api/v1/me", headers=headers)).json()
    for consent in me["contact_preferences"]["consents"]:
        assert not consent["at"].startswith("2001"), consent


async def test_sign_up_does_not_claim_a_phone_nobody_verified(client, admin, mailbox, pos):
    """A phone belongs to one member, the first to register it (DESIGN 2), and a phone or
    email on a portal account takes effect only when the code sent to it comes back
    (README). Signing up with one's own email and someone else's phone must not take that
    phone: the code only went to the email."""
    started = await client.post(
        "/api/v1/me/sign-up",
        json={"name": "Squatter", "email": "squat@example.com", "phone": "+8613800138000"},
    )
    assert started.status_code == 202, started.text
    created = await client.post(
        "/api/v1/me/sign-up/confirm",
        json={
            "sign_up_token": started.json()["sign_up_token"],
            "code": mailbox.last_code("squat@example.com"),
        },
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    me = (await client.get("/api/v1/me", headers=headers)).json()
    # The phone's real owner can no longer enrol with it, and purchases identified by that
    # phone at the till would earn for the squatter.
    assert me["phone"] is None, me["phone"]


async def test_tier_progress_on_the_portal_uses_the_qualification_basis(
    client, admin, mailbox, make_client, pos
):
    """With tiers qualified on points earned, the staff API says how many points are still
    needed; the portal must not tell the member to spend that many yuan."""
    changed = await client.put(
        "/api/v1/tier-settings",
        json={"basis": "points_earned", "window_months": 12, "grace_days": 30},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    member = await enrol(client, admin)
    await client.post(
        "/api/v1/purchases",
        json=purchase_body(member["id"], ("SKU-1", 1, "1000.00", "general")),
        headers=pos,
    )
    staff = (await client.get(f"/api/v1/members/{member['id']}/tier", headers=admin)).json()
    assert staff["basis"] == "points_earned"
    needed = int(float(staff["next_tier"]["still_needed"]))
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    home = (await browser.get("/portal", headers={"Accept-Language": "en"})).text
    assert f"Spend CN¥{needed:,}.00 more" not in home
    assert "Qualifying spend" not in home
