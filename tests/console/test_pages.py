"""Console pages over HTTP: who may open which page, a manager seeing only the department,
forms posting with CSRF through the same services as the API, both languages."""

from __future__ import annotations

import re

from tests.helpers.console import post_form, sign_in
from tests.helpers.purchases import purchase_body
from tests.helpers.staff import TEST_PASSWORD

REP_PAGES = ["/console", "/console/members", "/console/search", "/console/tasks"]
MANAGER_PAGES = [
    "/console/pool",
    "/console/handovers",
    "/console/swaps",
    "/console/reclaims",
    "/console/team",
]
ADMIN_PAGES = [
    "/console/staff",
    "/console/departments",
    "/console/api-keys",
    "/console/tiers",
    "/console/earning",
]


async def test_signed_out_pages_go_to_the_sign_in(client):
    for url in REP_PAGES + MANAGER_PAGES + ADMIN_PAGES:
        response = await client.get(url, follow_redirects=False)
        assert response.status_code == 302 and response.headers["location"] == "/console/login"


async def test_every_page_renders_for_an_admin_in_english_and_chinese(make_client, team):
    browser = await sign_in(make_client(), "ada")
    member_id = team["members"]["Chen Jie"]["id"]
    pages = REP_PAGES + MANAGER_PAGES + ADMIN_PAGES + [f"/console/members/{member_id}"]
    for url in pages:
        english = await browser.get(url, headers={"Accept-Language": "en"})
        assert english.status_code == 200, (url, english.text[:800])
        assert '<html lang="en">' in english.text
    for url in pages:
        chinese = await browser.get(url, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert chinese.status_code == 200, url
        assert '<html lang="zh-Hans">' in chinese.text and "退出登录" in chinese.text, url
    switched = await browser.get("/console?lang=zh")
    assert "loyalty_lang=zh; Path=/console" in switched.headers["set-cookie"]
    assert "我的任务" in (await browser.get("/console/tasks")).text


async def test_a_rep_cannot_open_manager_or_admin_pages(make_client, team):
    browser = await sign_in(make_client(), "ravi")
    for url in REP_PAGES:
        assert (await browser.get(url)).status_code == 200, url
    for url in MANAGER_PAGES + ADMIN_PAGES:
        response = await browser.get(url)
        assert response.status_code == 403, url
        assert "Not allowed" in response.text
    # Nor post to them.
    pooled = team["members"]["Pool Person"]["id"]
    response = await post_form(
        browser,
        "/console/pool",
        {"member_ids": pooled, "rep_id": str(team["staff"]["ravi"].id), "reason": "me"},
    )
    assert response.status_code == 403
    # The navigation offers only what the rep may open.
    home = (await browser.get("/console")).text
    assert 'href="/console/pool"' not in home and 'href="/console/tasks"' in home


async def test_a_rep_sees_own_members_only(make_client, team):
    browser = await sign_in(make_client(), "ravi")
    mine = (await browser.get("/console/members")).text
    assert "Chen Jie" in mine and "Lin Fang" not in mine and "Zhao Lei" not in mine
    other = team["members"]["Lin Fang"]["id"]
    assert (await browser.get(f"/console/members/{other}")).status_code == 404
    found = await browser.get("/console/search", params={"q": "Lin", "by": "q"})
    assert found.status_code == 200 and "Lin Fang" not in found.text
    found = await browser.get("/console/search", params={"q": "Chen", "by": "q"})
    assert "Chen Jie" in found.text
    bad = await browser.get("/console/search", params={"q": "not-an-email", "by": "email"})
    assert bad.status_code == 200 and 'role="alert"' in bad.text


async def test_a_manager_sees_only_the_department(make_client, team, client, admin):
    browser = await sign_in(make_client(), "mia")
    listed = (await browser.get("/console/members")).text
    assert "Chen Jie" in listed and "Lin Fang" in listed and "Zhao Lei" not in listed
    west = team["members"]["Zhao Lei"]["id"]
    assert (await browser.get(f"/console/members/{west}")).status_code == 404
    activity = (await browser.get("/console/team")).text
    assert 'data-rep="ravi"' in activity and 'data-rep="rosa"' in activity
    assert 'data-rep="wei"' not in activity
    pool = (await browser.get("/console/pool")).text
    assert "Pool Person" in pool and "wei" not in pool  # only the department's reps to give to
    # A west swap is neither listed nor decidable by the east manager.
    wu = await sign_in(make_client("10.4.4.4"), "wei")
    assert wu is not None
    token = (
        await client.post(
            "/api/v1/auth/tokens", json={"username": "wei", "password": TEST_PASSWORD}
        )
    ).json()["token"]
    other_west = (
        await client.post("/api/v1/members", json={"name": "Qian Yu"}, headers=admin)
    ).json()
    await client.put(
        f"/api/v1/members/{other_west['id']}/assignment",
        json={"rep_id": str(team["staff"]["wei"].id), "reason": "test"},
        headers=admin,
    )
    # wei's swap with a rep of the east: across departments, only a general manager decides.
    swap = await client.post(
        "/api/v1/swaps",
        json={"member_a": west, "member_b": team["members"]["Chen Jie"]["id"], "reason": "x"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert swap.status_code == 201, swap.text
    swaps = (await browser.get("/console/swaps")).text
    response = await post_form(browser, f"/console/swaps/{swap.json()['id']}/approve", {})
    assert response.status_code == 403
    assert "general manager" in response.text
    assert swaps  # the page renders


async def test_a_manager_hands_out_the_pool_and_approves_a_swap(
    make_client, team, client, make_staff
):
    manager = await sign_in(make_client(), "mia")
    pooled = team["members"]["Pool Person"]["id"]
    newcomer = await make_staff("nina", "rep", "east")
    # A new rep gets no pool members in the first month: the page says why.
    refused = await post_form(
        manager,
        "/console/pool",
        {"member_ids": pooled, "rep_id": str(newcomer.id), "reason": "area"},
        "/console/pool",
    )
    assert refused.status_code == 409 and "first 30 days" in refused.text
    assert "Pool Person" in refused.text  # the pool is shown again

    rep = await sign_in(make_client("10.3.3.3"), "ravi")
    chen = team["members"]["Chen Jie"]["id"]
    lin_number = team["members"]["Lin Fang"]["number"]
    asked = await post_form(
        rep,
        f"/console/members/{chen}/swap",
        {"other_number": lin_number, "reason": "Lin lives next to me"},
        f"/console/members/{chen}",
    )
    assert asked.status_code == 303
    page = (await manager.get("/console/swaps")).text
    swap_id = re.search(r'data-swap="([0-9a-f-]+)"', page).group(1)
    assert "Lin lives next to me" in page
    approved = await post_form(manager, f"/console/swaps/{swap_id}/approve", {"note": "ok"})
    assert approved.status_code == 303
    assert "Lin Fang" in (await rep.get("/console/members")).text


async def test_logging_a_visit_closes_the_task(make_client, team, client, pos):
    from loyalty.reps.follow_ups import plan_follow_ups

    chen = team["members"]["Chen Jie"]["id"]
    await client.post("/api/v1/purchases", json=purchase_body(chen, days_ago=8), headers=pos)
    await plan_follow_ups()
    rep = await sign_in(make_client(), "ravi")
    tasks = (await rep.get("/console/tasks")).text
    assert "Chen Jie" in tasks
    member_page = await rep.get(f"/console/members/{chen}")
    assert "data-follow-up" in member_page.text
    bad = await post_form(
        rep, f"/console/members/{chen}/contacts", {"kind": "dance", "channel": "visit"}
    )
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    logged = await post_form(
        rep,
        f"/console/members/{chen}/contacts",
        {"kind": "visit", "channel": "visit", "subject": "Tea tasting", "outcome": "Happy"},
    )
    assert logged.status_code == 303
    after = await rep.get(logged.headers["location"])
    assert "The contact is logged." in after.text and "Tea tasting" in after.text
    assert "data-follow-up" not in after.text
    assert "Chen Jie" not in (await rep.get("/console/tasks")).text
    # The view of the brief was audited.
    views = await client.get(f"/api/v1/members/{chen}/views", headers=await _admin(client))
    assert any(v["staff"] == "ravi" for v in views.json())


async def _admin(client):
    token = (
        await client.post(
            "/api/v1/auth/tokens", json={"username": "ada", "password": TEST_PASSWORD}
        )
    ).json()["token"]
    return {"Authorization": f"Bearer {token}"}


async def test_messages_and_archive_edits_from_the_member_page(make_client, team, client):
    chen = team["members"]["Chen Jie"]["id"]
    rep = await sign_in(make_client(), "ravi")
    sent = await post_form(
        rep,
        f"/console/members/{chen}/messages",
        {"channel": "portal", "subject": "Autumn tea", "body": "New leaves arrived."},
    )
    assert sent.status_code == 303
    refused = await post_form(
        rep,
        f"/console/members/{chen}/messages",
        {"channel": "sms", "subject": "Hi", "body": "Text?"},
    )
    assert refused.status_code == 422 and "consent" in refused.text
    saved = await post_form(
        rep,
        f"/console/members/{chen}/archive",
        {
            "name": "Chen Jie",
            "email": "chen@example.com",
            "phone": "",
            "city": "Hangzhou",
            "spouse": "Wang Fang",
            "hobbies": "tea, go",
            "consumption_preferences": "oolong",
            "notes": "Prefers mornings",
        },
    )
    assert saved.status_code == 303
    member = (await client.get(f"/api/v1/members/{chen}", headers=await _admin(client))).json()
    assert member["hobbies"] == ["tea", "go"] and member["household"]["spouse"] == "Wang Fang"
    assert member["address"]["city"] == "Hangzhou"


async def test_admin_pages_create_keys_staff_and_change_configuration(make_client, team, client):
    admin = await sign_in(make_client(), "ada")
    created = await post_form(
        admin, "/console/api-keys", {"name": "Shop", "scopes": ["purchases:write"]}
    )
    assert created.status_code == 201
    key = re.search(r'<code class="secret">(lk_[^<]+)</code>', created.text).group(1)
    assert (
        await client.get("/api/v1/members", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 403
    staff = await post_form(
        admin, "/console/staff", {"username": "newbie", "role": "rep", "department": "east"}
    )
    assert staff.status_code == 201 and 'data-username="newbie"' in staff.text
    moved = await post_form(
        admin,
        "/console/departments",
        {"staff_id": str(team["staff"]["rosa"].id), "department": "west"},
    )
    assert moved.status_code == 303
    queue = (await (await sign_in(make_client("10.6.6.6"), "mia")).get("/console/handovers")).text
    assert "Lin Fang" in queue  # rosa's member waits in the east queue
    rules = await post_form(
        admin,
        "/console/earning",
        {
            "points_per_unit": "2",
            "pending_days": "7",
            "expiry_months": "24",
            "category_multipliers": "tea = 1.5\n",
        },
    )
    assert rules.status_code == 303
    assert "tea = 1.5" in (await admin.get("/console/earning")).text
    bad = await post_form(
        admin,
        "/console/tiers/silver",
        {
            "name": "Silver",
            "rank": "1",
            "threshold": "abc",
            "earn_multiplier": "1",
            "contact_cadence_days": "30",
            "response_time_hours": "24",
            "enabled": "on",
        },
    )
    assert bad.status_code == 422
    tier = await post_form(
        admin,
        "/console/tiers/silver",
        {
            "name": "Silver",
            "rank": "1",
            "threshold": "6000",
            "earn_multiplier": "1.1",
            "contact_cadence_days": "20",
            "response_time_hours": "24",
            "enabled": "on",
        },
    )
    assert tier.status_code == 303, tier.text[:2000]
    assert 'value="6000' in (await admin.get("/console/tiers")).text


async def test_managers_cannot_open_admin_pages_but_see_their_staff(make_client, team):
    browser = await sign_in(make_client(), "mia")
    staff = await browser.get("/console/staff")
    assert staff.status_code == 200
    assert 'data-username="ravi"' in staff.text and 'data-username="wei"' not in staff.text
    for url in ADMIN_PAGES[1:]:
        assert (await browser.get(url)).status_code == 403, url
