"""The audit trail in the console: a change made through the console is recorded with its
actor and before/after, the page filters by who, what, on what and when (both languages), the
CSV download follows the filter, and only admins and general managers may open it."""

from __future__ import annotations

import csv
import io

from tests.helpers.console import post_form, sign_in


async def change_rules_in_the_console(make_client) -> None:
    ada = await sign_in(make_client(), "ada")
    response = await post_form(
        ada,
        "/console/earning",
        {
            "points_per_unit": "2",
            "category_multipliers": "",
            "pending_days": "14",
            "expiry_months": "24",
        },
        "/console/earning",
    )
    assert response.status_code == 303, response.text[-500:]


async def test_a_console_change_is_recorded_and_found_with_filters(make_client, make_staff, admin):
    await make_staff("ada", "admin")
    await make_staff("gus", "general_manager")
    await change_rules_in_the_console(make_client)
    gus = await sign_in(make_client(), "gus")

    everything = await gus.get("/console/audit")
    assert everything.status_code == 200
    assert 'data-action="earning_rules.update"' in everything.text
    assert 'data-action="POST /console/earning"' not in everything.text  # one record, detailed

    found = await gus.get("/console/audit", params={"actor": "ada", "what": "earning_rules"})
    html = found.text
    assert html.count("data-entry=") == 1 and "Earning rules changed" in html
    assert '<th scope="row">points_per_unit</th><td>1.0000</td><td>2.0000</td>' in html or (
        "points_per_unit" in html and "2.0000" in html
    )
    assert 'href="/console/audit.csv?actor=ada&amp;what=earning_rules"' in html

    nobody = await gus.get("/console/audit", params={"actor": "gus", "what": "earning_rules"})
    assert "data-entry=" not in nobody.text and "No changes match." in nobody.text

    zh = await gus.get(
        "/console/audit", params={"what": "earning_rules"}, headers={"Accept-Language": "zh-CN"}
    )
    assert "审计记录" in zh.text and "积分规则已更改" in zh.text

    download = await gus.get("/console/audit.csv", params={"actor": "ada"})
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [(r["action"], r["actor_label"]) for r in rows] == [
        ("earning_rules.update", "staff:ada")
    ]


async def test_bad_dates_are_named_at_their_field(make_client, make_staff):
    await make_staff("ada", "admin")
    ada = await sign_in(make_client(), "ada")
    response = await ada.get("/console/audit", params={"from": "2026-13-45"})
    assert response.status_code == 422
    assert 'id="from-error"' in response.text
    backwards = await ada.get("/console/audit", params={"from": "2026-05-02", "to": "2026-05-01"})
    assert backwards.status_code == 422 and 'id="to-error"' in backwards.text


async def test_only_admins_and_general_managers_open_the_trail(make_client, make_staff):
    for username, role in (("mia", "manager"), ("ravi", "rep"), ("sam", "service")):
        await make_staff(username, role, "east")
        browser = await sign_in(make_client(), username)
        for url in ("/console/audit", "/console/audit.csv"):
            assert (await browser.get(url)).status_code == 403, (username, url)
        assert 'href="/console/audit"' not in (await browser.get("/console")).text
    assert (await make_client().get("/console/audit")).status_code in (302, 303)
