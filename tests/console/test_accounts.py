"""Account-manager console pages over HTTP: scorecards (and the CSV), rotation (propose,
adjust, apply), incomplete archives, reassignment flags, and the member page's lifecycle and
service team."""

from __future__ import annotations

import re

from loyalty.infrastructure import db
from tests.helpers.console import post_form, sign_in
from tests.helpers.purchases import purchase_body

MANAGER_ONLY = ["/console/scorecards", "/console/scorecards.csv", "/console/rotations"]


async def test_a_rep_cannot_open_scorecards_rotation_or_flags(make_client, team):
    browser = await sign_in(make_client(), "ravi")
    for url in [*MANAGER_ONLY, "/console/flags"]:
        assert (await browser.get(url)).status_code == 403, url
    proposed = await post_form(browser, "/console/rotations", {"department": "east"})
    assert proposed.status_code == 403
    assert (await browser.get("/console/archives")).status_code == 200
    home = (await browser.get("/console")).text
    assert "/console/scorecards" not in home and "/console/archives" in home


async def test_a_manager_sees_the_department_scorecard_and_downloads_the_csv(
    make_client,
    team,
    client,
    pos,
):
    chen = team["members"]["Chen Jie"]["id"]
    bought = await client.post(
        "/api/v1/purchases", json=purchase_body(chen, ("A", 1, "120.00", "shoes")), headers=pos
    )
    assert bought.status_code in (200, 201), bought.text
    browser = await sign_in(make_client(), "mia")
    response = await browser.get("/console/scorecards")
    assert response.status_code == 200
    assert 'data-rep="ravi"' in response.text and 'data-rep="rosa"' in response.text
    assert 'data-rep="wei"' not in response.text  # another department
    assert 'type="month"' in response.text
    month = re.search(r'name="month" value="(\d{4}-\d{2})"', response.text).group(1)
    csv = await browser.get("/console/scorecards.csv", params={"month": month})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("rep,department,members")
    assert {line.split(",")[0] for line in lines[1:]} == {"ravi", "rosa"}
    zh = await browser.get("/console/scorecards", headers={"Accept-Language": "zh-CN"})
    assert "业绩" in zh.text or "记分" in zh.text
    bad = await browser.get("/console/scorecards", params={"month": "2026-13"})
    assert bad.status_code == 422


async def test_applying_a_rotation_through_the_pages_moves_the_members(
    make_client,
    team,
):
    browser = await sign_in(make_client(), "mia")
    form = (await browser.get("/console/rotations")).text
    assert 'value="east"' in form
    # A manager cannot rotate another department.
    other = await post_form(browser, "/console/rotations", {"department": "west"})
    assert other.status_code == 403
    proposed = await post_form(browser, "/console/rotations", {"department": "east"})
    assert proposed.status_code == 303, proposed.text
    url = proposed.headers["location"]
    plan = await browser.get(url)
    assert plan.status_code == 200 and 'data-status="proposed"' in plan.text
    rotation_id = url.rsplit("/", 1)[1]
    chen, lin = team["members"]["Chen Jie"]["id"], team["members"]["Lin Fang"]["id"]
    ravi, rosa = team["staff"]["ravi"].id, team["staff"]["rosa"].id

    # Giving Chen Jie back to ravi, who serves them already, is refused with the reason.
    refused = await post_form(
        browser, f"/console/rotations/{rotation_id}/moves/{chen}", {"rep_id": str(ravi)}, url
    )
    assert refused.status_code == 409 and "served the member before" in refused.text

    # Applying needs the confirmation box.
    unconfirmed = await post_form(browser, f"/console/rotations/{rotation_id}/apply", {}, url)
    assert unconfirmed.status_code == 422
    async with db.connection() as conn:
        assert (
            await conn.fetchval("SELECT assigned_rep FROM members WHERE id = $1::uuid", chen)
            == ravi
        )

    applied = await post_form(
        browser, f"/console/rotations/{rotation_id}/apply", {"confirm": "yes"}, url
    )
    assert applied.status_code == 303
    done = await browser.get(applied.headers["location"])
    assert 'data-status="applied"' in done.text
    async with db.connection() as conn:
        reps = dict(
            await conn.fetch(
                "SELECT id, assigned_rep FROM members WHERE id = ANY($1::uuid[])", [chen, lin]
            )
        )
    assert {str(k): v for k, v in reps.items()} == {chen: rosa, lin: ravi}

    # Another department's manager cannot see the rotation.
    wu = await sign_in(make_client("10.7.7.7"), "wu")
    assert (await wu.get(url)).status_code == 403


async def test_incomplete_archives_flags_and_the_member_page(
    make_client,
    team,
    client,
    pos,
):
    chen = team["members"]["Chen Jie"]["id"]
    lin = team["members"]["Lin Fang"]["id"]
    for member in (chen, lin):
        bought = await client.post(
            "/api/v1/purchases",
            json=purchase_body(member, ("A", 1, "50.00", "shoes")),
            headers=pos,
        )
        assert bought.status_code in (200, 201), bought.text
    rep = await sign_in(make_client(), "ravi")
    mine = (await rep.get("/console/archives")).text
    assert f"/console/members/{chen}" in mine and f"/console/members/{lin}" not in mine
    member_page = (await rep.get(f"/console/members/{chen}")).text
    assert 'data-stage="new_customer"' in member_page
    assert "Complete by" in member_page
    assert (
        'action="/console/members/'
        not in member_page.split('id="service-team"')[1].split("</section>")[0]
    )  # a rep cannot set the team

    manager = await sign_in(make_client("10.8.8.8"), "mia")
    theirs = (await manager.get("/console/archives")).text
    assert f"/console/members/{chen}" in theirs and f"/console/members/{lin}" in theirs
    assert (await manager.get("/console/flags")).status_code == 200

    page_url = f"/console/members/{chen}"
    saved = await post_form(
        manager,
        f"{page_url}/service-team",
        {
            "lead_id": str(team["staff"]["ravi"].id),
            "staff_0": str(team["staff"]["rosa"].id),
            "role_0": "settlement",
            "staff_1": "",
            "role_1": "service",
        },
        page_url,
    )
    assert saved.status_code == 303, saved.text
    shown = (await manager.get(page_url)).text
    assert 'data-team-role="lead"' in shown and 'data-team-role="settlement"' in shown
    twice = await post_form(
        manager,
        f"{page_url}/service-team",
        {"lead_id": str(team["staff"]["ravi"].id), "staff_0": str(team["staff"]["ravi"].id)},
        page_url,
    )
    assert twice.status_code == 422


async def test_an_admin_opens_every_account_page_in_both_languages(make_client, team):
    browser = await sign_in(make_client(), "ada")
    chen = team["members"]["Chen Jie"]["id"]
    pages = [*MANAGER_ONLY, "/console/flags", "/console/archives", f"/console/members/{chen}"]
    for language in ("en", "zh-CN"):
        for url in pages:
            response = await browser.get(url, headers={"Accept-Language": language})
            assert response.status_code == 200, (url, response.text[-500:])
    picker = (await browser.get("/console/rotations")).text
    assert '<option value="east">' in picker and '<option value="west">' in picker
    west = await browser.get("/console/scorecards", params={"department": "west"})
    assert 'data-rep="wei"' in west.text and 'data-rep="ravi"' not in west.text
