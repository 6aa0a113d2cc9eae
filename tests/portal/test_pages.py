"""Portal pages over HTTP: every page renders for a signed-in member in both languages, forms
need the CSRF token, security headers are set, and a member never reaches another's data."""

from __future__ import annotations

import re

import pytest

from tests.helpers.pages import csrf_from
from tests.helpers.portal import signed_in_browser
from tests.helpers.purchases import purchase_body

PAGES = [
    "/portal",
    "/portal/points",
    "/portal/rewards",
    "/portal/referrals",
    "/portal/messages",
    "/portal/profile",
    "/portal/preferences",
    "/portal/service",
    "/portal/privacy",
]


@pytest.fixture
async def member_with_history(client, admin, pos):
    response = await client.post(
        "/api/v1/members", json={"name": "Chen Jie", "email": "chen@example.com"}, headers=admin
    )
    member = response.json()
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    await client.post(
        "/api/v1/rewards",
        json={"name": "Tea cup", "kind": "goods", "points_cost": 50},
        headers=admin,
    )
    return member


async def test_every_page_renders_in_english_and_chinese(make_client, mailbox, member_with_history):
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    for url in PAGES:
        english = await browser.get(url, headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert english.status_code == 200, (url, english.text[:500])
        assert '<html lang="en">' in english.text
    home = await browser.get("/portal", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-Hans">' in home.text and "您的积分" in home.text
    assert "近 12 个月有效消费：¥100.00" in home.text  # money in the locale's format
    for url in PAGES:
        chinese = await browser.get(url, headers={"Accept-Language": "zh-CN"})
        assert chinese.status_code == 200, url
        assert "退出登录" in chinese.text  # the navigation is translated everywhere


async def test_the_language_switch_is_remembered(make_client, mailbox, member_with_history):
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    switched = await browser.get("/portal?lang=zh")
    assert "您的积分" in switched.text and "loyalty_lang=zh" in switched.headers["set-cookie"]
    again = await browser.get("/portal/points", headers={"Accept-Language": "en"})
    assert "积分明细" in again.text


async def test_home_shows_points_and_tier_progress(make_client, mailbox, member_with_history):
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    home = (await browser.get("/portal", headers={"Accept-Language": "en"})).text
    assert re.search(r'data-testid="pending">100<', home)
    assert "Spend CN¥4,900.00 more to reach Silver." in home  # en_US spells out the currency


async def test_forms_need_the_csrf_token(make_client, mailbox, member_with_history):
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    response = await browser.post("/portal/profile", data={"name": "Forged"})
    assert response.status_code == 403
    profile = await browser.get("/portal/profile")
    assert "Forged" not in profile.text


async def test_security_headers(make_client):
    response = await make_client().get("/portal/sign-in")
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_pages_need_a_signed_in_member(make_client, bearer):
    anonymous = make_client()
    for url in PAGES:
        response = await anonymous.get(url)
        assert response.status_code == 302 and response.headers["location"] == "/portal/sign-in"


async def test_a_member_cannot_touch_another_members_redemption(
    client, admin, make_client, mailbox, member_with_history
):
    other = (
        await client.post(
            "/api/v1/members", json={"name": "Li Na", "email": "li@example.com"}, headers=admin
        )
    ).json()
    await client.post(
        f"/api/v1/members/{other['id']}/points/adjustments",
        json={"points": 100, "reason": "gift", "idempotency_key": "x"},
        headers=admin,
    )
    reward = (await client.get("/api/v1/rewards", headers=admin)).json()[0]
    theirs = (
        await client.post(
            f"/api/v1/members/{other['id']}/redemptions",
            json={"reward_id": reward["id"], "idempotency_key": "k"},
            headers=admin,
        )
    ).json()
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    page = await browser.get("/portal/rewards")
    response = await browser.post(
        f"/portal/redemptions/{theirs['id']}/cancel", data={"_csrf_token": csrf_from(page.text)}
    )
    assert response.status_code == 404
    listed = (await client.get(f"/api/v1/members/{other['id']}/redemptions", headers=admin)).json()
    assert listed[0]["status"] == "requested"


async def test_sign_up_page_prefills_the_referral_code(make_client):
    page = await make_client().get("/portal/signup?ref=ABCD2345")
    assert 'value="ABCD2345"' in page.text


async def test_data_export_downloads_json(make_client, mailbox, member_with_history):
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    response = await browser.get("/portal/privacy/export")
    assert response.headers["content-disposition"].startswith("attachment")
    data = response.json()
    assert data["member"]["email"] == "chen@example.com" and len(data["purchases"]) == 1
