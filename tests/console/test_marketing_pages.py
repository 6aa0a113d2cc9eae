"""The marketing settings page, the movement report's actions as forms, and the marketing
part of the console home."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty.console.common import this_month
from loyalty.marketing import segments, service
from tests.helpers.console import post_form, sign_in
from tests.helpers.marketing import buy
from tests.helpers.pages import csrf_from

SETTINGS = {
    "frequency_cap": "3",
    "cap_days": "10",
    "max_attempts": "5",
    "retry_seconds": "600",
    "churn_days": "120",
    "at_risk_days": "45",
    "falling_ratio": "0.4",
}


async def test_a_marketing_manager_changes_the_settings_a_marketer_only_reads_them(
    make_client, make_staff
):
    await make_staff("mona", "manager", "marketing")
    await make_staff("mark", "marketing", "marketing")
    await make_staff("ravi", "rep", "east")
    manager = await sign_in(make_client(), "mona")
    saved = await post_form(
        manager, "/console/marketing-settings", SETTINGS, "/console/marketing-settings"
    )
    assert saved.status_code == 303, saved.text[-600:]
    current = await service.get_settings_row()
    assert (current.frequency_cap, current.churn_days, str(current.falling_ratio)) == (
        3,
        120,
        "0.400",
    ) or str(current.falling_ratio) == "0.4"
    page = await manager.get("/console/marketing-settings?saved=settings")
    assert "The marketing settings are saved." in page.text and 'value="120"' in page.text

    # At risk must come before lost: the error is beside its field, nothing is saved.
    bad = await post_form(
        manager,
        "/console/marketing-settings",
        {**SETTINGS, "at_risk_days": "200"},
        "/console/marketing-settings",
    )
    assert bad.status_code == 422
    assert '<p class="field-error" id="at_risk_days-error">' in bad.text
    assert 'value="200"' in bad.text  # what was typed
    assert (await service.get_settings_row()).at_risk_days == 45
    typo = await post_form(
        manager,
        "/console/marketing-settings",
        {**SETTINGS, "cap_days": "week"},
        "/console/marketing-settings",
    )
    assert typo.status_code == 422 and 'id="cap_days-error">' in typo.text

    marketer = await sign_in(make_client(), "mark")
    read = await marketer.get("/console/marketing-settings")
    assert read.status_code == 200 and "disabled" in read.text and "Save settings" not in read.text
    refused = await post_form(
        marketer, "/console/marketing-settings", SETTINGS, "/console/marketing-settings"
    )
    assert refused.status_code == 403
    rep = await sign_in(make_client(), "ravi")
    assert (await rep.get("/console/marketing-settings")).status_code == 403
    zh = await manager.get("/console/marketing-settings", headers={"Accept-Language": "zh-CN"})
    assert "营销设置" in zh.text and "Frequency cap" not in zh.text


async def test_the_movement_actions_from_the_report_page(
    make_client, make_staff, team, client, pos
):
    await make_staff("mona", "manager", "marketing")
    chen = team["members"]["Chen Jie"]["id"]
    await buy(client, pos, chen, "6000.00", days_ago=40)
    month = this_month()
    browser = await sign_in(make_client(), "mona")
    report = await browser.get("/console/movement")
    assert 'action="/console/movement/segment"' in report.text
    made = await post_form(
        browser, "/console/movement/segment", {"month": month}, "/console/movement"
    )
    assert made.status_code == 303, made.text[-500:]
    shown = await browser.get(made.headers["location"])
    assert "1 declining valuable members; 1 were added now" in shown.text
    [segment] = await segments.list_segments()
    assert f'href="/console/segments/{segment.id}"' in shown.text
    again = await post_form(
        browser, "/console/movement/segment", {"month": month}, "/console/movement"
    )
    assert "0 were added now" in (await browser.get(again.headers["location"])).text

    bad = await post_form(
        browser, "/console/movement/follow-ups", {"month": month, "days": "0"}, "/console/movement"
    )
    assert bad.status_code == 422 and '<p class="field-error" id="days-error">' in bad.text
    tasks = await post_form(
        browser, "/console/movement/follow-ups", {"month": month, "days": "3"}, "/console/movement"
    )
    assert tasks.status_code == 303
    assert "1 follow-up tasks were given" in (await browser.get(tasks.headers["location"])).text
    ravi = await sign_in(make_client(), "ravi")
    due = (datetime.now(UTC) + timedelta(days=3)).date()
    listed = (await ravi.get("/console/tasks")).text
    assert "Chen Jie" in listed and "Valuable member declining: call" in listed
    assert due.isoformat() in listed or str(due.day) in listed

    # A rep may not act on the report.
    page = await ravi.get("/console")
    for url in ("/console/movement/segment", "/console/movement/follow-ups"):
        refused = await ravi.post(
            url, data={"_csrf_token": csrf_from(page.text), "month": month, "days": "3"}
        )
        assert refused.status_code == 403


async def test_the_home_page_shows_a_marketer_offers_sends_and_movement(
    make_client, make_staff, team, client, pos, bearer
):
    await make_staff("mark", "marketing", "marketing")
    marketing = await bearer("marketing")
    now = datetime.now(UTC)
    for title in ("Spring sale", "Gold dinner"):
        response = await client.post(
            "/api/v1/offers",
            json={
                "title_en": title,
                "body_en": "Come and see.",
                "valid_from": now.isoformat(),
                "valid_until": (now + timedelta(days=30)).isoformat(),
            },
            headers=marketing,
        )
        assert response.status_code == 201, response.text
    await buy(client, pos, team["members"]["Chen Jie"]["id"], "6000.00", days_ago=0.01)
    browser = await sign_in(make_client(), "mark")
    home = await browser.get("/console")
    assert home.status_code == 200
    html = home.text
    assert 'data-figure="drafts"><strong>2</strong>' in html
    assert "Spring sale" in html and "Gold dinner" in html
    assert 'data-movement="up"><strong>1</strong>' in html
    assert "Chen Jie" not in html and "chen@example.com" not in html
    rep = await sign_in(make_client(), "ravi")
    assert 'id="marketing-home"' not in (await rep.get("/console")).text
    zh = await browser.get("/console", headers={"Accept-Language": "zh-CN"})
    assert "drafts awaiting approval" not in zh.text


async def test_a_marketer_reads_the_movement_report_without_names(
    make_client, make_staff, team, client, pos
):
    await make_staff("mark", "marketing", "marketing")
    chen = team["members"]["Chen Jie"]
    await buy(client, pos, chen["id"], "6000.00", days_ago=0.01)  # up a tier
    browser = await sign_in(make_client(), "mark")
    page = await browser.get("/console/movement")
    assert page.status_code == 200
    up = page.text.split('id="movement-up"')[1].split("</section>")[0]
    assert chen["number"] in up and "Chen Jie" not in page.text
    assert f"/console/members/{chen['id']}" not in page.text
    download = await browser.get("/console/movement.csv")
    assert chen["number"] in download.text and "Chen Jie" not in download.text
    assert "chen@example.com" not in page.text + download.text
