"""The marketing workspace's segment pages: the builder with every filter, the live count
fragment, saving, editing and copying, errors next to their field with nothing saved, and
counts only: a marketer never sees who the members are."""

from __future__ import annotations

import re

from loyalty.marketing import segment_facts, segments
from tests.helpers.console import sign_in
from tests.helpers.marketing import buy
from tests.helpers.pages import csrf_from

EMAIL_CONSENT = {"channels": ["email"], "consents": [{"channel": "email", "granted": True}]}


async def people(client, admin, pos) -> dict:
    """Three members with names, phones and emails a marketer must never see."""
    made = {}
    for name, phone, email, amount in (
        ("Gao Gold", "+8613800000001", "gao@example.com", "25000.00"),
        ("Sun Silver", "+8613800000002", "sun@example.com", "6000.00"),
        ("Nie Normal", "+8613800000003", "nie@example.com", None),
    ):
        response = await client.post(
            "/api/v1/members",
            json={
                "name": name,
                "phone": phone,
                "email": email,
                "contact_preferences": EMAIL_CONSENT,
                "tags": ["vip"] if amount else [],
            },
            headers=admin,
        )
        assert response.status_code == 201, response.text
        made[name] = response.json()
        if amount:
            await buy(client, pos, made[name]["id"], amount, days_ago=2)
    return made


def never_shows_who(html: str, made: dict) -> None:
    for member in made.values():
        for private in (member["name"], member["phone"], member["email"], "13800000"):
            assert private not in html, private


async def test_the_count_fragment_follows_the_filter_with_its_breakdown(
    make_client, make_staff, client, admin, pos
):
    made = await people(client, admin, pos)
    await make_staff("mark", "marketing", "marketing")
    browser = await sign_in(make_client(), "mark")
    builder = await browser.get("/console/segments/new")
    assert builder.status_code == 200
    assert 'id="live-count"' in builder.text and "/static/console-marketing.js" in builder.text
    assert '<strong data-count="3">' in builder.text  # everyone, before any condition
    token = csrf_from(builder.text)

    fetch = {"X-Requested-With": "fetch"}  # as the page's script asks
    gold = await browser.post(
        "/console/segments/count", data={"_csrf_token": token, "tiers": "gold"}, headers=fetch
    )
    assert gold.status_code == 200, gold.text[-500:]
    assert "<html" not in gold.text  # a fragment, not a page
    assert '<strong data-count="1">' in gold.text
    assert '<tr data-tier="gold">' in gold.text and '<tr data-channel="email">' in gold.text
    both = await browser.post(
        "/console/segments/count",
        data={"_csrf_token": token, "tiers": ["gold", "silver"], "spend_min": "1000"},
        headers=fetch,
    )
    assert '<strong data-count="2">' in both.text
    assert '<tr data-tier="silver">' in both.text

    bad = await browser.post(
        "/console/segments/count", data={"_csrf_token": token, "spend_min": "lots"}, headers=fetch
    )
    assert bad.status_code == 422 and "spend_min" in bad.text and "data-count" not in bad.text
    # Without JavaScript, the Count button gets the whole builder with the count, as typed.
    whole = await browser.post(
        "/console/segments/count", data={"_csrf_token": token, "tiers": "gold", "name": "G"}
    )
    assert whole.status_code == 200 and "<html" in whole.text
    assert '<strong data-count="1">' in whole.text and 'value="gold" checked' in whole.text
    never_shows_who(builder.text + gold.text + both.text, made)


async def test_save_edit_and_copy_a_segment(make_client, make_staff, client, admin, pos):
    made = await people(client, admin, pos)
    await make_staff("mark", "marketing", "marketing")
    browser = await sign_in(make_client(), "mark")
    builder = await browser.get("/console/segments/new")
    key = re.search(r'name="key" value="([^"]+)"', builder.text).group(1)
    data = {
        "_csrf_token": csrf_from(builder.text),
        "key": key,
        "name": "Gold VIPs",
        "tiers": "gold",
        "tags": "vip, other",
        "value_groups": ["declining", "at_risk"],
        "lifecycle_stages": "new_customer",
        "consents": "email",
        "birthday_months": [],
        "window_days": "365",
    }
    saved = await browser.post("/console/segments", data=data)
    assert saved.status_code == 303, saved.text[-800:]
    url = saved.headers["location"].split("?")[0]
    # A double submit (same key) saves one segment.
    again = await browser.post("/console/segments", data=data)
    assert again.status_code == 303 and again.headers["location"].split("?")[0] == url
    assert len(await segments.list_segments()) == 1

    page = await browser.get(url + "?saved=created")
    assert "The segment is saved." in page.text
    assert 'value="Gold VIPs"' in page.text and 'value="gold" checked' in page.text
    assert 'value="vip, other"' in page.text and 'value="at_risk" checked' in page.text
    assert '<strong data-count="1">' in page.text

    edit = await browser.post(
        url,
        data={
            "_csrf_token": csrf_from(page.text),
            "name": "Gold and silver",
            "tiers": ["gold", "silver"],
        },
    )
    assert edit.status_code == 303
    changed = await segments.get(segments_id(url))
    assert changed.name == "Gold and silver" and changed.filter.tiers == ["gold", "silver"]
    assert changed.filter.tags == [] and changed.members == 2

    copy = await browser.get(f"/console/segments/new?copy={changed.id}")
    assert 'value="Gold and silver (copy)"' in copy.text
    assert 'value="silver" checked' in copy.text
    assert 'action="/console/segments"' in copy.text  # saved as a new segment
    listed = await browser.get("/console/segments")
    assert (
        "Gold and silver" in listed.text
        and f"/console/segments/new?copy={changed.id}" in listed.text
    )
    assert "<svg" in listed.text and 'data-group="valuable"' in listed.text
    never_shows_who(page.text + copy.text + listed.text, made)


def segments_id(url: str):
    from uuid import UUID

    return UUID(url.rsplit("/", 1)[1])


async def test_bad_input_shows_next_to_its_field_and_saves_nothing(
    make_client, make_staff, client, admin, pos
):
    await make_staff("mark", "marketing", "marketing")
    browser = await sign_in(make_client(), "mark")
    builder = await browser.get("/console/segments/new")
    token = csrf_from(builder.text)
    key = re.search(r'name="key" value="([^"]+)"', builder.text).group(1)
    for extra, field, words in (
        ({"name": "x", "spend_min": "100", "spend_max": "5"}, "spend_max", "must not be below"),
        ({"name": "x", "points_min": "-3"}, "points_min", "is too small"),
        ({"name": "", "tiers": "gold"}, "name", "is required"),
        ({"name": "x", "tiers": "bronze"}, "tiers", "no tier"),
    ):
        response = await browser.post(
            "/console/segments", data={"_csrf_token": token, "key": key, **extra}
        )
        assert response.status_code == 422, (extra, response.text[-500:])
        assert f'<p class="field-error" id="{field}-error">' in response.text, extra
        assert words in response.text.split(f'id="{field}-error">')[1][:200], extra
        # What was typed is still there.
        for name, value in extra.items():
            if value and name != "tiers":
                assert f'value="{value}"' in response.text, (name, value)
    assert await segments.list_segments() == []

    chinese = await browser.post(
        "/console/segments",
        data={"_csrf_token": token, "key": key, "name": "x", "points_min": "-3"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert chinese.status_code == 422 and "太小" in chinese.text


async def test_a_rep_cannot_open_segments_and_a_marketer_sees_no_archives(
    make_client, make_staff, client, admin, pos
):
    made = await people(client, admin, pos)
    await make_staff("ravi", "rep", "east")
    await make_staff("mark", "marketing", "marketing")
    rep = await sign_in(make_client(), "ravi")
    for url in ("/console/segments", "/console/segments/new"):
        assert (await rep.get(url)).status_code == 403
    assert "/console/segments" not in (await rep.get("/console")).text
    page = await rep.get("/console")
    refused = await rep.post(
        "/console/segments/count", data={"_csrf_token": csrf_from(page.text), "tiers": "gold"}
    )
    assert refused.status_code == 403 and "data-count" not in refused.text

    marketer = await sign_in(make_client(), "mark")
    for url in ("/console", "/console/segments", "/console/segments/new"):
        response = await marketer.get(url)
        assert response.status_code == 200, url
        never_shows_who(response.text, made)
    gao = made["Gao Gold"]["id"]
    assert (await marketer.get(f"/console/members/{gao}")).status_code == 403
    for language, heading in (("en", "Segments"), ("zh-CN", "人群细分")):
        response = await marketer.get("/console/segments", headers={"Accept-Language": language})
        assert heading in response.text


async def test_a_count_from_the_segment_facts_says_how_fresh_it_is(
    make_client, make_staff, client, admin, pos
):
    await people(client, admin, pos)
    await make_staff("mara", "marketing", "marketing")
    browser = await sign_in(make_client(), "mara")
    token = csrf_from((await browser.get("/console/segments/new")).text)
    fetch = {"X-Requested-With": "fetch"}
    live = await browser.post("/console/segments/count", data={"_csrf_token": token}, headers=fetch)
    assert "Counted in" in live.text and "data-as-of" not in live.text

    await segment_facts.rebuild()
    for language, words in (("en", "As of "), ("zh-CN", "截至 ")):
        counted = await browser.post(
            "/console/segments/count",
            data={"_csrf_token": token, "tiers": "gold"},
            headers={**fetch, "Accept-Language": language},
        )
        assert '<strong data-count="1">' in counted.text
        assert "data-as-of=" in counted.text and words in counted.text, counted.text
