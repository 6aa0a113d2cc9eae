"""The exports page: every download in one place, through the browser session, with bad
dates and values shown beside their field."""

from __future__ import annotations

from tests.helpers.console import sign_in
from tests.helpers.purchases import purchase_body


async def test_the_downloads_and_the_liability_report(client, admin, pos, make_client, make_staff):
    member = (await client.post("/api/v1/members", json={"name": "陈杰"}, headers=admin)).json()
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    await make_staff("gm", "general_manager")
    browser = await sign_in(make_client(), "gm")
    page = await browser.get("/console/exports")
    assert page.status_code == 200 and "data-outstanding=" in page.text
    for link in ("/console/exports/members.csv", "/console/exports/liability.csv"):
        assert f'href="{link}' in page.text
    members = await browser.get("/console/exports/members.csv")
    assert members.status_code == 200 and "陈杰" in members.text
    ledger = await browser.get("/console/exports/ledger.csv?from=2020-01-01&to=")
    assert ledger.status_code == 200 and member["number"] in ledger.text
    liability = await browser.get("/console/exports/liability.csv?cost_per_point=0.02")
    assert liability.status_code == 200 and "tier,normal,1,100,2.00" in liability.text


async def test_bad_dates_and_values_are_named(make_client, make_staff):
    await make_staff("gm", "general_manager")
    browser = await sign_in(make_client(), "gm")
    backwards = await browser.get("/console/exports/ledger.csv?from=2026-05-02&to=2026-05-01")
    assert backwards.status_code == 422 and 'id="to-error"' in backwards.text
    assert 'value="2026-05-02"' in backwards.text
    broken = await browser.get("/console/exports/ledger.csv?from=someday")
    assert broken.status_code == 422 and 'id="from-error"' in broken.text
    cost = await browser.get("/console/exports?cost_per_point=-1")
    assert cost.status_code == 422 and 'id="cost_per_point-error"' in cost.text


async def test_a_rep_gets_only_the_members_export(make_client, make_staff):
    await make_staff("ravi", "rep", "east")
    browser = await sign_in(make_client(), "ravi")
    assert (await browser.get("/console/exports")).status_code == 403
    assert (await browser.get("/console/exports/ledger.csv")).status_code == 403
    assert (await browser.get("/console/exports/members.csv")).status_code == 200
