"""Administration pages for rewards, redemptions, referrals and points adjustments: bad input
shown beside its field with nothing saved, CSRF, double submits acting once, who may open
what, and a member out of reach being a 404 page; English and Chinese."""

from __future__ import annotations

import re

from tests.helpers.console import post_form, sign_in
from tests.helpers.pages import csrf_from
from tests.helpers.rewards import add_reward, give_points, redeem


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', html)
    return found.group(1) if found else ""


def key_of(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, name
    return found.group(1)


async def rewards_named(client, admin, name: str) -> list[dict]:
    catalog = await client.get("/api/v1/rewards?include_inactive=true", headers=admin)
    return [r for r in catalog.json() if r["name"] == name]


EVENT = {
    "kind": "event_seat",
    "name": "Autumn tea tasting",
    "points_cost": "300",
    "stock": "20",
    "per_member_limit": "2",
    "event_at": "2031-10-01T19:00",
    "description": "An evening with the growers",
    "active": "on",
}


async def test_an_admin_adds_an_event_with_seats_once_and_edits_it(
    make_client, team, client, admin
):
    browser = await sign_in(make_client(), "ada")
    page = (await browser.get("/console/rewards")).text
    assert "Add a reward" in page and "No rewards yet." in page
    key = key_of(page, "form_key")

    # Bad input: the problem under its field, the typed values kept, nothing saved.
    bad = await post_form(
        browser,
        "/console/rewards",
        {**EVENT, "points_cost": "0", "form_key": key},
        "/console/rewards",
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "points_cost") == "is too small"
    assert 'value="An evening' not in bad.text and "An evening with the growers" in bad.text
    late = await post_form(
        browser,
        "/console/rewards",
        {**EVENT, "valid_from": "2031-09-01T00:00", "valid_until": "2031-08-01T00:00"},
        "/console/rewards",
    )
    assert late.status_code == 422  # no form key: refused before anything else
    assert field_error(late.text, "form_key")
    assert key_of(late.text, "form_key")  # a new key: the corrected form can be sent
    late = await post_form(
        browser,
        "/console/rewards",
        {**EVENT, "form_key": key, "valid_from": "2031-09-01T00:00", "valid_until": "2031-08-01"},
        "/console/rewards",
    )
    assert late.status_code == 422 and field_error(late.text, "valid_until")
    assert await rewards_named(client, admin, EVENT["name"]) == []

    # Without the CSRF token: refused, nothing saved.
    forged = await browser.post("/console/rewards", data={**EVENT, "form_key": key})
    assert forged.status_code == 403
    assert await rewards_named(client, admin, EVENT["name"]) == []

    # Sent twice with the same form key: one reward.
    first = await post_form(browser, "/console/rewards", {**EVENT, "form_key": key})
    again = await post_form(browser, "/console/rewards", {**EVENT, "form_key": key})
    assert first.status_code == again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    [event] = await rewards_named(client, admin, EVENT["name"])
    assert event["kind"] == "event_seat" and event["stock"] == 20
    assert event["event_at"].startswith("2031-10-01T")
    assert first.headers["location"] == f"/console/rewards/{event['id']}?saved=created"

    shown = await browser.get(first.headers["location"])
    assert "The reward is added to the catalog." in shown.text
    assert 'value="2031-10-01T19:00"' in shown.text

    # Editing: a bad stock is shown beside the field and changes nothing; a good one saves.
    url = f"/console/rewards/{event['id']}"
    edit = {**EVENT, "stock": "-1"}
    edit.pop("kind")
    refused = await post_form(browser, url, edit, url)
    assert refused.status_code == 422 and field_error(refused.text, "stock") == "is too small"
    saved = await post_form(browser, url, {**edit, "stock": "25", "active": ""}, url)
    assert saved.status_code == 303
    changed = (await client.get(f"/api/v1/rewards/{event['id']}", headers=admin)).json()
    assert changed["stock"] == 25 and changed["active"] is False

    chinese = await browser.get(url, headers={"Accept-Language": "zh-CN"})
    assert chinese.status_code == 200 and "保存" in chinese.text


async def test_voucher_codes_upload_reports_blank_and_repeated_lines(
    make_client, team, client, admin
):
    browser = await sign_in(make_client(), "ada")
    reward = await add_reward(
        client, admin, name="Tea voucher", kind="voucher", voucher_source="pool"
    )
    url = f"/console/rewards/{reward['id']}"
    page = (await browser.get(url)).text

    async def upload(body: bytes):
        return await browser.post(
            f"{url}/vouchers",
            data={"_csrf_token": csrf_from(page)},
            files={"file": ("codes.csv", body, "text/csv")},
        )

    broken = await upload(b"code\nTEA-001\n\nTEA-002\nTEA-001\nTEA 3\n")
    assert broken.status_code == 422
    assert field_error(broken.text, "file") == "some lines need fixing; nothing was imported"
    assert "Line 3 is blank." in broken.text
    assert "Line 5 repeats TEA-001 from line 2." in broken.text
    assert "Line 6: TEA 3 is not a code" in broken.text
    left = (await client.get(f"/api/v1/rewards/{reward['id']}", headers=admin)).json()
    assert left["vouchers_left"] == 0

    good = await upload(b"TEA-001\r\nTEA-002\r\nTEA-003\r\n")
    assert good.status_code == 200
    assert "3 codes imported, 0 already in the pool; 3 codes left." in good.text
    again = await upload(b"TEA-001\r\nTEA-002\r\nTEA-003\r\n")
    assert "0 codes imported, 3 already in the pool; 3 codes left." in again.text

    # The line report in Chinese.
    chinese = await browser.post(
        f"{url}/vouchers",
        data={"_csrf_token": csrf_from(page)},
        files={"file": ("codes.csv", b"A\n\n", "text/csv")},
        headers={"Accept-Language": "zh-CN"},
    )
    assert chinese.status_code == 422 and "第 2 行" in chinese.text


async def test_who_may_open_the_catalog_and_the_queues(make_client, team, make_staff):
    await make_staff("mo", "marketing", "marketing")
    await make_staff("sam", "service")
    rep = await sign_in(make_client(), "ravi")
    for url in (
        "/console/rewards",
        "/console/redemptions",
        "/console/referrals",
        "/console/referral-settings",
        "/console/referral-figures",
    ):
        assert (await rep.get(url)).status_code == 403, url
    refused = await post_form(rep, "/console/rewards", {**EVENT, "form_key": "k"})
    assert refused.status_code == 403
    home = (await rep.get("/console")).text
    assert 'href="/console/rewards"' not in home

    marketing = await sign_in(make_client("10.7.7.7"), "mo")
    assert (await marketing.get("/console/rewards")).status_code == 200
    assert (await marketing.get("/console/referral-figures")).status_code == 200
    assert (await marketing.get("/console/redemptions")).status_code == 403
    assert (await marketing.get("/console/referrals")).status_code == 403

    service = await sign_in(make_client("10.8.8.8"), "sam")
    assert (await service.get("/console/redemptions")).status_code == 200
    assert (await service.get("/console/referrals")).status_code == 200
    assert (await service.get("/console/rewards")).status_code == 403
    assert (await service.get("/console/referral-settings")).status_code == 403


async def test_redemptions_are_fulfilled_and_cancelled_once_within_reach(
    make_client, team, client, admin
):
    chen = team["members"]["Chen Jie"]["id"]  # east (ravi)
    zhao = team["members"]["Zhao Lei"]["id"]  # west (wei)
    seat = await add_reward(client, admin, name="Tasting seat", kind="event_seat", stock=5)
    for member in (chen, zhao):
        await give_points(client, admin, member, 1000)
    chen_seat = (await redeem(client, admin, chen, seat["id"], "c1")).json()
    zhao_seat = (await redeem(client, admin, zhao, seat["id"], "z1")).json()

    # The east manager sees the department's redemption only, and cannot fulfil the other.
    mia = await sign_in(make_client(), "mia")
    queue = (await mia.get("/console/redemptions")).text
    assert f'data-redemption="{chen_seat["id"]}"' in queue
    assert f'data-redemption="{zhao_seat["id"]}"' not in queue
    outside = await post_form(mia, f"/console/redemptions/{zhao_seat['id']}/fulfil", {})
    assert outside.status_code == 404
    assert (await mia.get(f"/console/members/{zhao}/redemptions")).status_code == 404

    # Fulfil, sent twice: fulfilled once, both answers say so.
    url = f"/console/redemptions/{chen_seat['id']}/fulfil"
    back_to = f"/console/redemptions?reward={seat['id']}"
    first = await post_form(mia, url, {"next": back_to})
    again = await post_form(mia, url, {"next": back_to})
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == f"{back_to}&saved=fulfilled"
    made = (await client.get(f"/api/v1/members/{chen}/redemptions", headers=admin)).json()
    assert [r["status"] for r in made] == ["fulfilled"]
    # An outside address is not followed.
    elsewhere = await post_form(
        mia, f"/console/redemptions/{chen_seat['id']}/fulfil", {"next": "https://evil.example"}
    )
    assert elsewhere.headers["location"] == "/console/redemptions?saved=fulfilled"

    # Cancelling needs a reason, shown beside it; nothing changes without one.
    ada = await sign_in(make_client("10.6.6.6"), "ada")
    cancel = f"/console/redemptions/{zhao_seat['id']}/cancel"
    missing = await post_form(ada, cancel, {"reason": " "})
    assert missing.status_code == 422 and field_error(missing.text, "reason") == "is required"
    assert (await client.get(f"/api/v1/members/{zhao}/points", headers=admin)).json()[
        "available"
    ] == 1000 - seat["points_cost"]
    done = await post_form(ada, cancel, {"reason": "cannot come"})
    twice = await post_form(ada, cancel, {"reason": "cannot come"})
    assert done.status_code == twice.status_code == 303
    balance = (await client.get(f"/api/v1/members/{zhao}/points", headers=admin)).json()
    assert balance["available"] == 1000
    stock = (await client.get(f"/api/v1/rewards/{seat['id']}", headers=admin)).json()["stock"]
    assert stock == 4  # Chen's seat taken, Zhao's given back


async def test_staff_redeem_for_a_member_once_from_the_member_page(
    make_client, team, client, admin
):
    chen = team["members"]["Chen Jie"]["id"]
    tin = await add_reward(client, admin, name="Jasmine tin", points_cost=150)
    await give_points(client, admin, chen, 400)
    ravi = await sign_in(make_client(), "ravi")
    member_page = (await ravi.get(f"/console/members/{chen}")).text
    assert f'href="/console/members/{chen}/redemptions"' in member_page
    assert f'href="/console/members/{chen}/points"' in member_page

    url = f"/console/members/{chen}/redemptions"
    page = (await ravi.get(url)).text
    assert "Jasmine tin" in page and "No redemptions yet." in page
    key = key_of(page, "key")
    too_many = await post_form(
        ravi, url, {"reward_id": tin["id"], "quantity": "3", "key": key}, url
    )
    assert too_many.status_code == 409
    assert field_error(too_many.text, "reward_id") == "the member has too few available points"
    assert key_of(too_many.text, "key") == key  # the corrected form keeps its key
    first = await post_form(ravi, url, {"reward_id": tin["id"], "quantity": "2", "key": key}, url)
    again = await post_form(ravi, url, {"reward_id": tin["id"], "quantity": "2", "key": key}, url)
    assert first.status_code == again.status_code == 303
    made = (await client.get(f"/api/v1/members/{chen}/redemptions", headers=admin)).json()
    assert len(made) == 1 and made[0]["quantity"] == 2
    assert made[0]["requested_by"].endswith("ravi")
    no_reward = await post_form(ravi, url, {"reward_id": "", "quantity": "1", "key": "k2"}, url)
    assert no_reward.status_code == 422 and field_error(no_reward.text, "reward_id")

    # Another department's rep: 404, and cannot redeem there.
    wei = await sign_in(make_client("10.4.4.4"), "wei")
    assert (await wei.get(url)).status_code == 404
    refused = await post_form(wei, url, {"reward_id": tin["id"], "quantity": "1", "key": "x"})
    assert refused.status_code == 404


async def held_referral(client, admin) -> tuple[dict, dict]:
    home = {"line1": "12 Garden Road", "city": "Shanghai", "postcode": "200000"}
    referrer = (
        await client.post(
            "/api/v1/members", json={"name": "Zhou Min", "address": home}, headers=admin
        )
    ).json()
    code = (await client.get(f"/api/v1/members/{referrer['id']}/referrals", headers=admin)).json()
    friend = (
        await client.post(
            "/api/v1/members",
            json={"name": "Zhou Lei", "address": home, "referral_code": code["code"]},
            headers=admin,
        )
    ).json()
    return referrer, friend


async def test_held_referrals_are_reviewed_with_a_reason(make_client, team, client, admin):
    await held_referral(client, admin)
    ada = await sign_in(make_client(), "ada")
    queue = await ada.get("/console/referrals")
    assert "Zhou Lei" in queue.text and 'data-hold="shared_address"' in queue.text
    assert "shares an address with the referrer" in queue.text
    referral_id = re.search(r'data-referral="([^"]+)"', queue.text).group(1)

    missing = await post_form(ada, f"/console/referrals/{referral_id}/reject", {"reason": ""})
    assert missing.status_code == 422 and field_error(missing.text, "reason") == "is required"
    forged = await ada.post(f"/console/referrals/{referral_id}/approve", data={"reason": "ok"})
    assert forged.status_code == 403
    held = (await client.get("/api/v1/referrals?status=held", headers=admin)).json()["items"]
    assert len(held) == 1

    url = f"/console/referrals/{referral_id}/approve"
    first = await post_form(ada, url, {"reason": "different flats", "status": "held"})
    again = await post_form(ada, url, {"reason": "different flats", "status": "held"})
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == "/console/referrals?saved=approved&status=held"
    after = (await client.get("/api/v1/referrals?status=pending", headers=admin)).json()
    assert [r["review_reason"] for r in after["items"]] == ["different flats"]
    page = (await ada.get(first.headers["location"])).text
    assert "The referral is approved." in page and "No referrals here." in page
    # Rejecting an approved (pending) referral still works, but not approving it again.
    rejected = await post_form(ada, f"/console/referrals/{referral_id}/reject", {"reason": "no"})
    assert rejected.status_code == 303

    chinese = await ada.get("/console/referrals", headers={"Accept-Language": "zh-CN"})
    assert chinese.status_code == 200 and "推荐" in chinese.text


async def test_referral_settings_and_figures(make_client, team, client, admin):
    ada = await sign_in(make_client(), "ada")
    before = (await client.get("/api/v1/referral-settings", headers=admin)).json()
    url = "/console/referral-settings"
    values = {
        "referrer_points": "600",
        "referred_points": "300",
        "min_purchase": "abc",
        "monthly_cap": "5",
    }
    bad = await post_form(ada, url, values, url)
    assert bad.status_code == 422 and field_error(bad.text, "min_purchase") == "must be a number"
    assert 'value="600"' in bad.text  # typed values kept
    cents = await post_form(ada, url, {**values, "min_purchase": "1.005"}, url)
    assert field_error(cents.text, "min_purchase") == "has more than 2 decimal places"
    assert (await client.get("/api/v1/referral-settings", headers=admin)).json() == before
    saved = await post_form(ada, url, {**values, "min_purchase": "80"}, url)
    assert saved.status_code == 303
    after = (await client.get("/api/v1/referral-settings", headers=admin)).json()
    assert after["referrer_points"] == 600 and after["min_purchase"] == "80.00"

    await held_referral(client, admin)
    stats = (await ada.get("/console/referral-figures")).text
    assert re.search(r'data-testid="signed-up">1<', stats)
    assert "Sign-ups and rewards per month" in stats and "team-row" in stats
    chinese = await ada.get("/console/referral-figures", headers={"Accept-Language": "zh-CN"})
    assert chinese.status_code == 200


async def test_points_adjustment_needs_a_reason_and_happens_once(make_client, team, client, admin):
    chen = team["members"]["Chen Jie"]["id"]
    mia = await sign_in(make_client(), "mia")
    url = f"/console/members/{chen}/points"
    page = (await mia.get(url)).text
    assert "Adjust the points" in page and "No entries." in page
    key = key_of(page, "key")
    post = f"{url}/adjustments"

    no_reason = await post_form(mia, post, {"points": "250", "reason": "", "key": key}, url)
    assert no_reason.status_code == 422 and field_error(no_reason.text, "reason") == "is required"
    assert 'value="250"' in no_reason.text
    zero = await post_form(mia, post, {"points": "0", "reason": "nothing", "key": key}, url)
    assert field_error(zero.text, "points") == "must not be zero"
    word = await post_form(mia, post, {"points": "lots", "reason": "nothing", "key": key}, url)
    assert field_error(word.text, "points") == "must be a number"
    balance = (await client.get(f"/api/v1/members/{chen}/points", headers=admin)).json()
    assert balance["available"] == 0

    body = {"points": "+250", "reason": "goodwill for a late delivery", "key": key}
    first = await post_form(mia, post, body, url)
    again = await post_form(mia, post, body, url)
    assert first.status_code == again.status_code == 303
    entries = await client.get(f"{url.replace('/console', '/api/v1')}/entries", headers=admin)
    assert [(e["points"], e["note"]) for e in entries.json()["items"]] == [
        (250, "goodwill for a late delivery")
    ]
    shown = (await mia.get(first.headers["location"])).text
    assert "The adjustment is recorded." in shown and 'data-testid="available">250<' in shown
    assert 'data-kind="adjustment"' in shown and "goodwill for a late delivery" in shown

    # A rep reads the own member's statement but cannot adjust; another rep's member: 404.
    ravi = await sign_in(make_client("10.3.3.3"), "ravi")
    own = (await ravi.get(url)).text
    assert "goodwill for a late delivery" in own and "Adjust the points" not in own
    refused = await post_form(ravi, post, {"points": "5", "reason": "please", "key": "r"})
    assert refused.status_code == 403
    lin = team["members"]["Lin Fang"]["id"]
    assert (await ravi.get(f"/console/members/{lin}/points")).status_code == 404
    # The west manager cannot reach east's member: 404, nothing adjusted.
    wu = await sign_in(make_client("10.2.2.2"), "wu")
    outside = await post_form(wu, post, {"points": "5", "reason": "please", "key": "w"})
    assert outside.status_code == 404
    chinese = await mia.get(url, headers={"Accept-Language": "zh-CN"})
    assert chinese.status_code == 200 and "积分" in chinese.text
